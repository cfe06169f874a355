"""Face detection: MTCNN (facenet-pytorch's weights, our batched driver) -> boxes, scores and 5 landmarks
per face, batched; ``create_detector`` picks MTCNN or YuNet (facesys/vision/yunet.py) by name.

Images of equal size are detected together in one batch; large photos are down-scaled for
detection (``max_side``) and the results mapped back to the original pixels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from facesys.config import DEFAULT_DETECTOR, DETECTORS, FACE_SELECTIONS, PHOTO_BATCH
from facesys.errors import FacesysError


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` (4,) x1, y1, x2, y2 in pixels; ``score`` in [0, 1], on the detector's own scale
    (facesys/vision/quality.py); ``landmarks`` (5, 2) x, y pixels in the order left eye, right eye, nose,
    left and right mouth corner (as seen in the image).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """Face size in pixels: the shorter side of the box."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class Detector(Protocol):
    """What the pipeline needs of a face detector: its ``name`` (one of config.DETECTORS) and ``detect``."""

    name: str

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each (H, W, 3) uint8 RGB image, largest first; an empty list where there is none."""
        ...


def detector_name(name: str | None) -> str:
    """``name`` if it is one of config.DETECTORS (None: DEFAULT_DETECTOR); FacesysError otherwise."""
    if name is None:
        return DEFAULT_DETECTOR
    if name not in DETECTORS:
        raise FacesysError(f"detector {name!r}: choose from {', '.join(DETECTORS)}", parameter="detector")
    return name


def create_detector(name: str | None = None, device: str = "cpu") -> Detector:
    """The detector called ``name`` (None: DEFAULT_DETECTOR): ``mtcnn`` (FaceDetector, on ``device``) or
    ``yunet`` (YuNetDetector, OpenCV on the CPU whatever ``device`` says). FacesysError for another name."""
    if detector_name(name) == "yunet":
        from facesys.vision.yunet import YuNetDetector

        return YuNetDetector()
    return FaceDetector(device=device)


class FaceDetector:
    """MTCNN over facenet-pytorch's weights (they ship in its wheel; nothing is downloaded), run by
    ``facesys.vision.mtcnn.BatchedMTCNN``, which gives facenet-pytorch's results with the whole batch on the device.

    ``min_face_size`` in pixels of the (possibly down-scaled) detection image; ``thresholds`` are
    MTCNN's three stage thresholds; detections below ``min_score`` (MTCNN's final probability) are
    dropped (MTCNN's own 0.7 lets through false faces in textured backgrounds); photos whose longer
    side exceeds ``max_side`` pixels are down-scaled for detection. ``batch_size`` images of equal
    size go through MTCNN together.
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str = "cpu",
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        min_score: float = 0.9,
        max_side: int = 1600,
        batch_size: int = PHOTO_BATCH,
    ):
        from facesys.vision.mtcnn import BatchedMTCNN

        self.mtcnn = BatchedMTCNN(device=device, min_face_size=min_face_size, thresholds=thresholds)
        self.min_score = min_score
        self.max_side = max_side
        self.batch_size = batch_size

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each (H, W, 3) uint8 RGB image, largest first; an empty list where there is none."""
        scaled = [downscale(image, self.max_side) for image in images]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, (small, _) in enumerate(scaled):
            by_shape[small.shape].append(index)
        results: list[list[Detection]] = [[] for _ in images]
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.stack([scaled[i][0] for i in chunk])
                for i, (b, s, p) in zip(chunk, self.mtcnn.detect(batch), strict=True):
                    results[i] = to_detections(b, s, p, scaled[i][1], self.min_score)
        return results


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image to run detection on (its longer side at most ``max_side``) and the factor mapping its
    pixels back to the original."""
    longest = max(image.shape[:2])
    if longest <= max_side:
        return image, 1.0
    factor = longest / max_side
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))  # a 1 x 4000 strip stays >= 1 px
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def to_detections(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, factor: float, min_score: float) -> list[Detection]:
    """Detections scoring at least ``min_score``, boxes (x1, y1, x2, y2) and points scaled by ``factor``,
    largest first."""
    faces = [
        Detection(np.asarray(b, np.float32) * factor, float(s), np.asarray(p, np.float32) * factor)
        for b, s, p in zip(boxes, scores, points, strict=True)
        if s >= min_score
    ]
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def nearest_to_centre(boxes, shape) -> int:
    """Index of the box (x1, y1, x2, y2) whose centre is nearest the centre of an image of ``shape``.

    LFW's labelled person is the centred face; other faces in the photo are bystanders.
    """
    h, w = shape[:2]
    return min(
        range(len(boxes)),
        key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - w / 2) ** 2 + ((boxes[i][1] + boxes[i][3]) / 2 - h / 2) ** 2,
    )


def pick_faces(faces: list[Detection], shape, select: str) -> list[Detection]:
    """The faces to use among ``faces`` (largest first) of an image of ``shape``: ``all`` of them,
    the ``largest``, or the one nearest the image ``center`` (LFW's convention); [] when none.
    FacesysError for another ``select``, even when there are no faces."""
    if select not in FACE_SELECTIONS:
        raise FacesysError(f"select={select!r}: choose from {', '.join(FACE_SELECTIONS)}")
    if select == "all" or not faces:
        return list(faces)
    if select == "largest":
        return [faces[0]]
    return [faces[nearest_to_centre([f.box for f in faces], shape)]]
