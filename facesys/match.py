"""Decisions on embeddings: verify (same person?) and identify (who, or unknown?).

Metric: Euclidean distance between unit embeddings (0 = identical, 2 = opposite); a pair is the
same person when ``distance <= threshold``.

Identification is open-set: each probe meets every enrolled face, so a per-comparison false-accept
rate (FAR) becomes, over a gallery of N faces, a false-identification rate of about N x FAR. Its
threshold is therefore stricter than verify's: the model's impostor table (measured on LFW's
pairsDevTrain people, see benchmarks/calibrate_default_threshold.py) gives the threshold whose
FAR is ``target_fpir / N``; it is never looser than the verification threshold.
People are ranked by their best (smallest) distance over their enrolled faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facesys.config import DEFAULT_TARGET_FPIR


@dataclass(frozen=True)
class Verification:
    """The outcome of comparing two faces."""

    distance: float
    threshold: float
    same: bool
    threshold_source: str


@dataclass(frozen=True)
class Candidate:
    """An enrolled person, their best distance to the probe and the id of that nearest face."""

    name: str
    distance: float
    face_id: int


@dataclass(frozen=True)
class Identification:
    """One face of a probe photo: ``box`` x1, y1, x2, y2 pixels, detection ``score``; ``name`` is
    None for unknown; ``candidates`` are the nearest people, best first; ``face_id`` the enrolled
    face nearest the probe (the photo that matched when it is named), None for an empty gallery."""

    box: list[float]
    score: float
    name: str | None
    distance: float | None
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def face_id(self) -> int | None:
        return self.candidates[0].face_id if self.candidates else None

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "name": self.name,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": round(self.threshold, 4),
            "face_id": self.face_id,
            "candidates": [{"name": c.name, "distance": round(c.distance, 4), "face_id": c.face_id} for c in self.candidates],
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


def verify(a: np.ndarray, b: np.ndarray, threshold: float, threshold_source: str) -> Verification:
    d = distance(a, b)
    return Verification(d, threshold, d <= threshold, threshold_source)


def rank_people(distances: np.ndarray, face_ids: np.ndarray, names_by_id: dict[int, str], top_k: int) -> list[Candidate]:
    """The ``top_k`` people nearest a probe, each scored by their best face.

    ``distances`` and ``face_ids``: (k,) search results (face id -1 = no result); faces missing
    from ``names_by_id`` (removed meanwhile) are skipped.
    """
    best: dict[str, tuple[float, int]] = {}
    for d, face_id in zip(distances.tolist(), face_ids.tolist(), strict=True):
        name = names_by_id.get(face_id)
        if name is not None and d < best.get(name, (math.inf, -1))[0]:
            best[name] = (d, face_id)
    ranked = sorted(best.items(), key=lambda item: item[1][0])[:top_k]
    return [Candidate(name, d, face_id) for name, (d, face_id) in ranked]


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
    wanted = math.log10(target_fpir / max(1, faces_in_gallery))
    rates = np.log10([rate for rate, _ in far_table])[::-1]
    thresholds = np.array([t for _, t in far_table])[::-1]
    return float(min(verify_threshold, np.interp(wanted, rates, thresholds)))


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

    def verify(self) -> tuple[float, str]:
        """(threshold, where it came from: argument, gallery or model default)."""
        if self.override is not None:
            return self.override, "argument"
        if self.calibrated.get("verify") is not None:
            return float(self.calibrated["verify"]), "gallery"
        return self.model_threshold, "model default"

    def identify(self, faces_in_gallery: int) -> float:
        """The open-set threshold for a gallery of ``faces_in_gallery`` faces."""
        if self.override is not None:
            return self.override
        if self.calibrated.get("identify") is not None:
            return float(self.calibrated["identify"])
        return identify_threshold(self.far_table, faces_in_gallery, self.verify()[0], self.target_fpir)
