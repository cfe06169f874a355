"""The fitted dlib template: MTCNN landmarks + our alignment reproduce dlib's own face chips.

On LFW people who appear in no pair of pairs.txt, the port's embedding of our chip is compared
with its embedding of dlib's chip (HOG + 5-point predictor + get_face_chip(150, 0.25)): they must
agree closely, and better than with templates moved by a few pixels or scaled by 10%.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces_and_dlib_embeddings(embedder, dlib_files):
    from facesys.evaluate.pairs import people_in_pairs, read_lfw_pairs
    from facesys.vision.images import load_image

    lfw = data_path("lfw")
    excluded = people_in_pairs(read_lfw_pairs(lfw / "pairs.txt"))
    people = [p for p in sorted(lfw.iterdir()) if p.is_dir() and p.name not in excluded][::100][:15]
    images = [load_image(sorted(p.glob("*.jpg"))[-1]) for p in people]
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_files[1]))
    rows = []
    for image, faces in zip(images, embedder.detector.detect(images), strict=True):
        rects = hog(image, 1)
        if rects and faces:
            chip = dlib.get_face_chip(image, predictor(image, rects[0]), 150, 0.25)
            rows.append((image, faces[0].landmarks, embedder.embed_chips(chip[None])[0]))
    assert len(rows) >= 12
    return rows


def agreement(embedder, rows, template: np.ndarray) -> np.ndarray:
    from facesys.vision.align import align_face

    ours = embedder.embed_chips(np.stack([align_face(image, points, template, 150) for image, points, _ in rows]))
    return np.array([a @ b for a, (_, _, b) in zip(ours, rows, strict=True)])


def test_fitted_template_reproduces_dlib_chips(embedder, faces_and_dlib_embeddings):
    template = np.asarray(embedder.spec.template)
    fitted = agreement(embedder, faces_and_dlib_embeddings, template)
    assert np.median(fitted) >= 0.99, fitted
    for moved in (
        template + np.array([4, 0]),
        template + np.array([0, 4]),
        template - np.array([0, 4]),
        (template - 75) * 1.1 + 75,
        (template - 75) * 0.9 + 75,
    ):
        assert fitted.mean() > agreement(embedder, faces_and_dlib_embeddings, moved).mean()
