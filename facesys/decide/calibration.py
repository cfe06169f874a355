"""A gallery's own open-set threshold, from how close its enrolled people come to each other.

The model's table (impostor distances measured on LFW) says how close strangers come in LFW's kind
of photos. A gallery of lab photos, webcams, grayscale scans or one family can be different, and it
holds the evidence: its people are strangers to each other. So each enrolled face (up to
``SAMPLE_FACES`` of them, seeded) is identified against the gallery *without its own person*, with
the person score identify uses; its best score is what a stranger of this gallery's kind scores.
With S such scores (mean m, standard deviation s), the threshold that names a fraction ``target``
of strangers is fitted as m + s * z(target) (z: the standard normal quantile; the fit extrapolates
below the smallest observed score, which the data alone cannot do for small galleries), and the
gallery uses the stricter of this and the model's table. A gallery with fewer than
``MIN_PEOPLE`` people or ``MIN_SAMPLES`` faces cannot tell: the model's table alone decides.

Measured (``facesys eval identify``, 2 photos enrolled per person, half the people never enrolled):
on LFW the gallery's estimate (0.332) is looser than the model's (0.319), which stays; on AT&T it is
stricter (0.324 vs 0.356) and rejects all strangers. Its limit: it sees only strangers *among the
enrolled*. On Yale, 2 of the 8 people never enrolled resemble an enrolled person more closely than
any two enrolled people resemble each other, and no statistic of the gallery shows it (README).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

MIN_PEOPLE = 5
MIN_SAMPLES = 10
SAMPLE_FACES = 1000


@dataclass(frozen=True)
class Calibration:
    """The gallery's fitted stranger scores: ``mean`` and ``std`` of ``samples`` best scores of enrolled
    faces against the other ``people - 1`` people."""

    mean: float
    std: float
    samples: int
    people: int

    def threshold(self, target_fpir: float) -> float:
        """The score under which a fraction ``target_fpir`` of this gallery's strangers would fall."""
        return self.mean + self.std * NormalDist().inv_cdf(target_fpir)

    def expected_fpir(self, threshold: float) -> float:
        """The fitted share of strangers named at ``threshold``."""
        if self.std <= 0:
            return float(threshold >= self.mean)
        return NormalDist(self.mean, self.std).cdf(threshold)

    def to_dict(self) -> dict:
        return {"mean": round(self.mean, 4), "std": round(self.std, 4), "samples": self.samples, "people": self.people}


def fit(stranger_scores: np.ndarray, people: int) -> Calibration | None:
    """The calibration of a gallery of ``people`` from (S,) stranger best scores (inf = no other
    person found); None when the gallery is too small to tell."""
    scores = np.asarray(stranger_scores, np.float64)
    scores = scores[np.isfinite(scores)]
    if people < MIN_PEOPLE or len(scores) < MIN_SAMPLES:
        return None
    return Calibration(float(scores.mean()), float(scores.std(ddof=1)), len(scores), people)


def sample_faces(face_count: int, seed: int = 0) -> np.ndarray:
    """Positions of the faces used as calibration probes: all of them up to SAMPLE_FACES, else a seeded sample."""
    if face_count <= SAMPLE_FACES:
        return np.arange(face_count)
    return np.sort(np.random.default_rng(seed).choice(face_count, SAMPLE_FACES, replace=False))


def describe(calibration: Calibration | None, people: int) -> str:
    """Why the gallery's estimate is or is not used, in words."""
    if calibration is None:
        return f"gallery too small to calibrate ({people} people; needs {MIN_PEOPLE})"
    return f"calibrated on {calibration.samples} faces of {calibration.people} people"
