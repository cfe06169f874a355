"""Quality gates: is this detection a usable reference photo of one person (enrollment), and is a
probe face good enough to name anyone (identify)?

Each rule gives a reason a user can act on. Defaults were chosen so that ordinary photos (every
LFW image we tried) pass and clearly unusable ones do not:

- ``min_face_size``: the face box's shorter side in pixels (40: below that, chips are up-scaled mush);
- ``min_score``: MTCNN's detection probability (0.95; the detector already drops faces below 0.90);
- ``min_sharpness``: variance of the Laplacian of the grayscale aligned chip (10; LFW faces:
  1st percentile 18, median 48; the same photos blurred with a Gaussian of sigma 1.5: median 10);
- ``crowd_ratio``: a second confident face (score >= min_score) at least this fraction of the
  largest face's size makes the photo ambiguous (0.5); smaller bystanders are ignored.

The score limits are MTCNN's; each detector scores on its own scale, so ``rules_for`` gives the
rules of the detector in use (``SCORE_LIMITS``). YuNet's scores separate less: the centre faces
of LFW's 7,701 pair images score 0.858 at least (1st percentile 0.897, median 0.929; MTCNN's:
0.966, 0.995, 1.000), false faces in the test data up to 0.82. Its detector drops faces below
0.85, and both its gates sit there (as MTCNN's enrollment gate, 0.95, sits below every LFW face
and its probe gate is its detector's floor, 0.90). benchmarks/results/detectors.json.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from facesys.vision.detect import Detection, detector_name


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


@dataclass(frozen=True)
class ProbeRules:
    """When identify answers "unknown (low quality)" instead of naming a face. A poor probe gives a poor
    embedding, and a poor embedding can land near anyone. Chosen on 800 LFW photos (every 13th) so
    that ordinary photos pass (their 1st percentiles: face 77 px, score 0.995, sharpness 13.9; 99th
    percentile of the pose measure 0.42; face shape between 0.71 and 1.13), and damaged ones do not:

    - ``min_face_size`` (px, the box's shorter side): below it the 150 px chip is up-scaled mush;
    - ``min_score``: MTCNN's probability that this is a face;
    - ``min_sharpness``: variance of the Laplacian of the aligned chip (the same photos blurred with a
      Gaussian of sigma 3: 99th percentile 8.0);
    - ``max_pose``: how far the nose sits from the line between the eyes' and the mouth's centres, in
      eye distances: above 0.5 it lies beyond an eye, a face in profile whose landmarks are guesses;
    - ``face_shape``: the range of eye distance / eyes-to-mouth distance; a frame squashed to 60% of
      its width scores 0.70 at the median, stretched (60% of its height) 1.20, so only strong
      distortion is caught here: videos are first shown at their true pixel shape (facesys/vision/media.py).
    """

    min_face_size: float = 32.0
    min_score: float = 0.90
    min_sharpness: float = 8.0
    max_pose: float = 0.55
    face_shape: tuple[float, float] = (0.6, 1.35)


def face_geometry(landmarks: np.ndarray) -> tuple[float, float]:
    """(pose, shape) of (5, 2) landmarks (eyes, nose, mouth corners): the nose's distance from the
    eyes-to-mouth centre line in eye distances, and eye distance / eyes-to-mouth distance."""
    points = np.asarray(landmarks, np.float64)
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    eye_distance = max(float(np.linalg.norm(points[1] - points[0])), 1e-6)
    axis = mouth - eyes
    length = max(float(np.linalg.norm(axis)), 1e-6)
    across = np.array([-axis[1], axis[0]]) / length
    pose = abs(float(np.dot(points[2] - (eyes + mouth) / 2, across))) / eye_distance
    return pose, eye_distance / length


def probe_problem(
    box: np.ndarray, score: float, landmarks: np.ndarray, chip_sharpness: float | None, rules: ProbeRules
) -> str | None:
    """Why a probe face is too poor to name anyone, or None. ``box`` x1, y1, x2, y2 pixels."""
    size = float(min(box[2] - box[0], box[3] - box[1]))
    if size < rules.min_face_size:
        return f"face too small ({size:.0f} px < {rules.min_face_size:.0f} px)"
    if score < rules.min_score:
        return f"uncertain detection (score {score:.2f} < {rules.min_score:.2f})"
    if chip_sharpness is not None and chip_sharpness < rules.min_sharpness:
        return f"too blurred (sharpness {chip_sharpness:.1f} < {rules.min_sharpness:.0f})"
    pose, shape = face_geometry(landmarks)
    if pose > rules.max_pose:
        return f"extreme pose (nose {pose:.2f} eye distances off-centre > {rules.max_pose})"
    low, high = rules.face_shape
    if not low <= shape <= high:
        return f"distorted face shape ({shape:.2f} outside {low}-{high}: a squashed or stretched image?)"
    return None


# Per detector: (QualityRules.min_score, ProbeRules.min_score) on its score scale (see the module docstring).
SCORE_LIMITS = {"mtcnn": (QualityRules.min_score, ProbeRules.min_score), "yunet": (0.85, 0.85)}


def rules_for(detector: str | None) -> tuple[QualityRules, ProbeRules]:
    """(enrollment gates, probe rules) with the score limits of ``detector`` (one of config.DETECTORS;
    None: the default); FacesysError for another name."""
    enroll, probe = SCORE_LIMITS[detector_name(detector)]
    return replace(QualityRules(), min_score=enroll), replace(ProbeRules(), min_score=probe)
