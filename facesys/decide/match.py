"""Decisions on embeddings: verify (same person?) and identify (who, or unknown?).

Metric: Euclidean distance between unit embeddings (0 = identical, 2 = opposite); a pair is the
same person when ``distance <= threshold``.

Identification is open-set: each probe meets every enrolled face, so a per-comparison false-accept
rate (FAR) becomes, over a gallery of N faces, a false-identification rate of about N x FAR. Its
threshold is therefore stricter than verify's: the model's impostor table (measured on LFW's
pairsDevTrain people, see benchmarks/calibrate_default_threshold.py) gives the threshold whose
FAR is ``target_fpir / N``; it is never looser than the verification threshold. The gallery's
own estimate (facesys/decide/calibration.py) replaces it when stricter. People are ranked by their person
score (facesys/decide/scoring.py: distance to their template by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from facesys.config import CANDIDATE_PHOTOS, DEFAULT_TARGET_FPIR
from facesys.decide.calibration import Calibration
from facesys.decide.scoring import Evidence


class ThresholdSource(StrEnum):
    """Where a threshold came from (its value is what answers show)."""

    ARGUMENT = "argument"
    GALLERY = "gallery"  # verify's, calibrated into the gallery
    MODEL_DEFAULT = "model default"
    GALLERY_SETTING = "gallery setting"  # identify's, calibrated into the gallery
    GALLERY_STRANGERS = "gallery's own strangers"  # facesys/decide/calibration.py
    MODEL_TABLE = "model table"


@dataclass(frozen=True)
class OpenSetThreshold:
    """identify's threshold: its ``value``, its ``source`` and the share of strangers it is expected
    to name (None when not known: an argument, a gallery setting, the table capped at verify's)."""

    value: float
    source: ThresholdSource
    expected_fpir: float | None = None


@dataclass(frozen=True)
class Verification:
    """The outcome of comparing two faces."""

    distance: float
    threshold: float
    same: bool
    threshold_source: ThresholdSource


@dataclass(frozen=True)
class Candidate:
    """An enrolled person: their person score (``distance``) to the probe, the id of their enrolled
    face nearest the probe, and their enrolled faces nearest first (``faces``: the photos behind
    the score)."""

    name: str
    distance: float
    face_id: int
    faces: tuple[Evidence, ...] = ()

    def to_dict(self, photos: int | None = None) -> dict:
        """JSON-ready; ``photos``: how many of the person's nearest faces to list (all by default)."""
        return {
            "name": self.name,
            "distance": round(self.distance, 4),
            "face_id": self.face_id,
            "faces": [{"face_id": e.face_id, "source": e.source, "distance": round(e.distance, 4)} for e in self.faces[:photos]],
        }


@dataclass(frozen=True)
class Identification:
    """One face of a probe photo: ``box`` x1, y1, x2, y2 pixels, detection ``score``; ``name`` is
    None for unknown; ``candidates`` are the nearest people, best first; ``face_id`` the enrolled
    face nearest the probe (the photo that matched when it is named), None for an empty gallery;
    ``quality``: why the face is too poor to name anyone (then ``name`` is None), else None;
    ``threshold_source``: where the threshold came from."""

    box: list[float]
    score: float
    name: str | None
    distance: float | None
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)
    quality: str | None = None
    threshold_source: str = ""

    @property
    def face_id(self) -> int | None:
        return self.candidates[0].face_id if self.candidates else None

    @property
    def matched(self) -> Evidence | None:
        """The enrolled photo that decided the name (the named person's face nearest the probe)."""
        if self.name is None or not self.candidates[0].faces:
            return None
        return self.candidates[0].faces[0]

    def to_dict(self, photos: int | None = CANDIDATE_PHOTOS) -> dict:
        """JSON-ready; each candidate lists its ``photos`` nearest enrolled faces."""
        matched = self.matched
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "name": self.name,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": round(self.threshold, 4),
            "threshold_source": self.threshold_source,
            "quality": self.quality,
            "face_id": self.face_id,
            "matched": None if matched is None else {"face_id": matched.face_id, "source": matched.source},
            "candidates": [c.to_dict(photos) for c in self.candidates],
        }


@dataclass(frozen=True)
class VerifyResult:
    """``verify``'s answer, with the face used in each photo and how many each photo had."""

    verification: Verification
    boxes: tuple[list[float], list[float]]
    faces_found: tuple[int, int]

    def to_dict(self, files: tuple[str, str]) -> dict:
        v = self.verification
        return {
            "same": v.same,
            "distance": round(v.distance, 4),
            "threshold": round(v.threshold, 4),
            "threshold_source": v.threshold_source,
            "a": {"file": files[0], "box": [round(x, 1) for x in self.boxes[0]], "faces_found": self.faces_found[0]},
            "b": {"file": files[1], "box": [round(x, 1) for x in self.boxes[1]], "faces_found": self.faces_found[1]},
        }


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two (D,) embeddings."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def verify(a: np.ndarray, b: np.ndarray, threshold: float, threshold_source: ThresholdSource) -> Verification:
    d = distance(a, b)
    return Verification(d, threshold, d <= threshold, threshold_source)


def confused_with(name: str, nearest: list[tuple[float, str]], threshold: float) -> tuple[str, float] | None:
    """(the other person, distance) when a face of ``name`` is nearer someone else than any photo of
    ``name`` among its ``nearest`` enrolled faces ((distance, person) pairs), within ``threshold``."""
    others = [(d, n) for d, n in nearest if n != name]
    if not others:
        return None
    best_other, other_name = min(others)
    own = [d for d, n in nearest if n == name]
    return (other_name, best_other) if best_other <= threshold and (not own or best_other < min(own)) else None


def identify_threshold(
    far_table: tuple[tuple[float, float], ...],
    faces_in_gallery: int,
    verify_threshold: float,
    target_fpir: float = DEFAULT_TARGET_FPIR,
) -> float:
    """The open-set threshold for a gallery of ``faces_in_gallery`` faces.

    ``far_table``: ((FAR, threshold), ...) of the model, FAR decreasing. The FAR wanted per
    comparison is ``target_fpir / faces_in_gallery``; the threshold is interpolated in log(FAR)
    (clamped to the table) and never above ``verify_threshold``. Without a table, verify's.
    """
    if not far_table:
        return verify_threshold
    return min(verify_threshold, threshold_at_far(far_table, target_fpir / max(1, faces_in_gallery)))


def threshold_at_far(far_table: tuple[tuple[float, float], ...], far: float) -> float:
    """The distance at false-accept rate ``far`` per comparison in a model's ``far_table`` ((FAR,
    threshold), ... FAR decreasing): interpolated in log(FAR), clamped to the table's ends."""
    rates = np.log10([rate for rate, _ in far_table])[::-1]
    thresholds = np.array([t for _, t in far_table])[::-1]
    return float(np.interp(math.log10(far), rates, thresholds))


@dataclass(frozen=True)
class ThresholdPolicy:
    """Where thresholds come from, strongest first: an ``override`` (a caller's argument), the
    gallery's ``calibrated`` values ({"verify": t | None, "identify": t | None}), the model's
    default ``model_threshold`` and its ``far_table``; ``target_fpir`` for the open-set one."""

    override: float | None
    calibrated: dict[str, float | None]
    model_threshold: float
    far_table: tuple[tuple[float, float], ...]
    target_fpir: float = DEFAULT_TARGET_FPIR

    def verify(self) -> tuple[float, ThresholdSource]:
        """(threshold, where it came from: argument, gallery or model default)."""
        if self.override is not None:
            return self.override, ThresholdSource.ARGUMENT
        if self.calibrated.get("verify") is not None:
            return float(self.calibrated["verify"]), ThresholdSource.GALLERY
        return self.model_threshold, ThresholdSource.MODEL_DEFAULT

    @property
    def uses_calibration(self) -> bool:
        """Whether :meth:`identify` would consult the gallery's own calibration."""
        return self.override is None and self.calibrated.get("identify") is None

    def identify(self, faces_in_gallery: int, calibration: Calibration | None = None) -> OpenSetThreshold:
        """The open-set threshold for a gallery of ``faces_in_gallery`` faces: the argument, the
        gallery's stored value, or the stricter of the model's table and the gallery's own
        ``calibration`` (facesys/decide/calibration.py)."""
        if self.override is not None:
            return OpenSetThreshold(self.override, ThresholdSource.ARGUMENT)
        if self.calibrated.get("identify") is not None:
            return OpenSetThreshold(float(self.calibrated["identify"]), ThresholdSource.GALLERY_SETTING)
        cap = self.verify()[0]
        table = identify_threshold(self.far_table, faces_in_gallery, cap, self.target_fpir)
        if calibration is not None and (own := calibration.threshold(self.target_fpir)) < table:
            return OpenSetThreshold(own, ThresholdSource.GALLERY_STRANGERS, calibration.expected_fpir(own))
        return OpenSetThreshold(table, ThresholdSource.MODEL_TABLE, self.target_fpir if table < cap else None)
