"""Enrollment quality gates on synthetic detections and chips."""

from __future__ import annotations

import cv2
import numpy as np

from facesys.vision.detect import Detection
from facesys.vision.quality import QualityRules, check_chip, pick_enrollment_face, sharpness

RULES = QualityRules()


def detection(size: float, score: float = 0.99, x: float = 0) -> Detection:
    return Detection(np.array([x, 0, x + size, size], np.float32), score, np.zeros((5, 2), np.float32))


def test_one_clear_face_is_picked_and_small_bystanders_ignored():
    face, reason = pick_enrollment_face([detection(120), detection(40, x=300)], RULES)
    assert reason is None and face.size == 120


def test_each_rule_gives_its_reason():
    assert pick_enrollment_face([], RULES) == (None, "no face found")
    assert "2 faces of similar size" in pick_enrollment_face([detection(120), detection(100, x=300)], RULES)[1]
    assert "too small (30 px < 40 px)" in pick_enrollment_face([detection(30)], RULES)[1]
    assert "uncertain detection" in pick_enrollment_face([detection(120, score=0.8)], RULES)[1]


def test_blurred_chips_are_refused():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    assert sharpness(sharp) > sharpness(blurred)
    assert check_chip(sharp, RULES) is None
    assert "too blurred" in check_chip(blurred, RULES)
