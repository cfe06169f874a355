"""Enrollment quality gates: is this detection a usable reference photo of one person?

Each rule gives a reason a user can act on. Defaults were chosen so that ordinary photos (every
LFW image we tried) pass and clearly unusable ones do not:

- ``min_face_size``: the face box's shorter side in pixels (40: below that, chips are up-scaled mush);
- ``min_score``: MTCNN's detection probability (0.95; the detector already drops faces below 0.90);
- ``min_sharpness``: variance of the Laplacian of the grayscale aligned chip (10; LFW faces:
  1st percentile 18, median 48; the same photos blurred with a Gaussian of sigma 1.5: median 10);
- ``crowd_ratio``: a second confident face (score >= min_score) at least this fraction of the
  largest face's size makes the photo ambiguous (0.5); smaller bystanders are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facesys.detect import Detection


@dataclass(frozen=True)
class QualityRules:
    min_face_size: float = 40.0
    min_score: float = 0.95
    min_sharpness: float = 10.0
    crowd_ratio: float = 0.5


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of a (S, S, 3) uint8 RGB chip: low means blurred."""
    return float(cv2.Laplacian(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def pick_enrollment_face(faces: list[Detection], rules: QualityRules) -> tuple[Detection | None, str | None]:
    """(the face to enroll, None) or (None, reason) from an enrollment photo's detections (largest first)."""
    if not faces:
        return None, "no face found"
    largest = faces[0]
    rivals = [f for f in faces[1:] if f.score >= rules.min_score and f.size >= rules.crowd_ratio * largest.size]
    if rivals:
        return None, f"{len(rivals) + 1} faces of similar size; use a photo of this person alone"
    if largest.size < rules.min_face_size:
        return None, f"face too small ({largest.size:.0f} px < {rules.min_face_size:.0f} px)"
    if largest.score < rules.min_score:
        return None, f"uncertain detection (score {largest.score:.2f} < {rules.min_score:.2f})"
    return largest, None


def check_chip(chip: np.ndarray, rules: QualityRules) -> str | None:
    """A reason to refuse the aligned chip, or None."""
    value = sharpness(chip)
    if value < rules.min_sharpness:
        return f"too blurred (sharpness {value:.1f} < {rules.min_sharpness:.0f})"
    return None
