"""Alignment: the least-squares similarity and the chips it produces."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import NoFaceError
from facesys.vision.align import align_face, align_faces, similarity_matrix

TEMPLATE = np.array([[50.0, 60.0], [100.0, 60.0], [75.0, 85.0], [55.0, 110.0], [95.0, 110.0]])


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(("angle", "scale"), [(0.0, 1.0), (0.3, 2.5), (-0.7, 0.4)])
def test_exact_similarity_is_recovered(angle, scale):
    truth = similarity(angle, scale, 12.0, -7.0)
    landmarks = apply(np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2], TEMPLATE)
    np.testing.assert_allclose(similarity_matrix(landmarks, TEMPLATE), truth, atol=1e-4)


def test_noisy_points_give_the_least_squares_fit():
    rng = np.random.default_rng(0)
    landmarks = TEMPLATE * 0.5 + rng.normal(0, 2.0, TEMPLATE.shape)
    fit = similarity_matrix(landmarks, TEMPLATE)
    residual = ((apply(fit, landmarks) - TEMPLATE) ** 2).sum()
    # No small change of the four parameters lowers the squared error.
    a, b, tx, ty = fit[0, 0], fit[1, 0], fit[0, 2], fit[1, 2]
    for delta in np.eye(4) * 1e-3:
        for sign in (1, -1):
            p = np.array([a, b, tx, ty]) + sign * delta
            other = np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]]])
            assert ((apply(other, landmarks) - TEMPLATE) ** 2).sum() >= residual - 1e-9


def dots_image(points: np.ndarray, shape=(400, 500)) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
    return image


def centroid_near(chip: np.ndarray, x: float, y: float, radius: int = 8) -> np.ndarray:
    x0, y0 = round(x), round(y)
    window = chip[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0].astype(float)
    ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()


@pytest.mark.parametrize("scale", [0.8, 3.0, 6.0])  # 3x and 6x shrink go through the pyramid
def test_chip_puts_landmarks_on_the_template(scale):
    truth = similarity(0.2, 1.0 / scale, -30.0 / scale, 10.0)
    landmarks = apply(np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2], TEMPLATE)
    landmarks += np.array([400, 500]) * 0.5 - landmarks.mean(0)
    shape = (int(1000 * max(1, scale / 2)), int(1000 * max(1, scale / 2)))
    chip = align_face(dots_image(landmarks, shape), landmarks, TEMPLATE, 150)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    for x, y in TEMPLATE:
        np.testing.assert_allclose(centroid_near(chip, x, y), [x, y], atol=1.0)


def test_align_faces_batches_and_handles_none():
    assert align_faces(np.zeros((50, 50, 3), np.uint8), [], TEMPLATE, 150).shape == (0, 150, 150, 3)
    chips = align_faces(dots_image(TEMPLATE), [TEMPLATE, TEMPLATE + 5], TEMPLATE, 150)
    assert chips.shape == (2, 150, 150, 3)


def test_landmarks_that_coincide_are_no_usable_face():
    """They were a ValueError; reindexing a stored face with such landmarks showed its traceback
    (tests/cli/test_typed_errors.py)."""
    with pytest.raises(NoFaceError, match="landmarks: all points coincide"):
        align_face(np.zeros((50, 50, 3), np.uint8), np.full((5, 2), 20.0), TEMPLATE, 150)
