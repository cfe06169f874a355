"""The PyTorch port against dlib itself (dlib-bin) on the same aligned 150x150 chips of real faces."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def dlib_chips(dlib_files):
    """dlib's own chips (HOG detector, 5-point predictor, get_face_chip 150/0.25) of 12 LFW faces."""
    from facesys.vision.images import load_image

    lfw = data_path("lfw")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::400][:12]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_files[1]))
    chips = []
    for person in people:
        image = load_image(sorted(person.glob("*.jpg"))[0])
        rects = detector(image, 1)
        if rects:
            chips.append(dlib.get_face_chip(image, predictor(image, rects[0]), 150, 0.25))
    assert len(chips) >= 8
    return np.stack(chips)


def test_port_matches_dlib_per_face(dlib_chips, dlib_files):
    import torch

    from facesys.models import create_model

    reference = dlib.face_recognition_model_v1(str(dlib_files[0]))
    expected = np.array([reference.compute_face_descriptor(chip) for chip in dlib_chips])
    model = create_model("dlib-resnet")
    with torch.no_grad():
        raw = model.backbone(torch.from_numpy(dlib_chips).permute(0, 3, 1, 2).float() / 255.0).numpy()
    cosine = (raw * expected).sum(1) / np.linalg.norm(raw, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(raw, expected, atol=1e-4)
