"""ROC, AUC, EER and TAR@FAR on synthetic distances with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import FacesysError
from facesys.evaluate.roc import roc_curve


def test_perfect_separation():
    roc = roc_curve(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), np.array([1, 1, 1, 0, 0, 0], bool))
    assert roc.auc == pytest.approx(1.0)
    assert roc.eer == pytest.approx(0.0)
    assert roc.tar_at_far(1e-3) == (1.0, 0.3)


def test_known_small_example():
    # Sorted: s0.1 d0.2 s0.3 d0.4 -> points (FAR, TAR): (0, .5) (.5, .5) (.5, 1) (1, 1)
    roc = roc_curve(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 1, 0], bool))
    np.testing.assert_allclose(roc.far, [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.tar, [0.5, 0.5, 1, 1])
    assert roc.auc == pytest.approx(0.75)
    assert roc.eer == pytest.approx(0.5)
    assert roc.tar_at_far(0.0) == (0.5, 0.1)
    assert roc.tar_at_far(0.5) == (1.0, 0.3)


def test_ties_move_together():
    roc = roc_curve(np.array([0.5, 0.5, 0.5, 0.9]), np.array([1, 0, 1, 0], bool))
    np.testing.assert_allclose(roc.far, [0.5, 1.0])
    np.testing.assert_allclose(roc.tar, [1.0, 1.0])
    assert roc.tar_at_far(0.1) == (0.0, float("-inf"))


def test_random_scores_give_auc_near_half_and_far_is_respected():
    rng = np.random.default_rng(0)
    distances = rng.uniform(size=20000)
    same = rng.uniform(size=20000) < 0.5
    roc = roc_curve(distances, same)
    assert abs(roc.auc - 0.5) < 0.02 and abs(roc.eer - 0.5) < 0.02
    tar, threshold = roc.tar_at_far(0.01)
    assert np.mean(distances[~same] <= threshold) <= 0.01
    assert np.mean(distances[same] <= threshold) == pytest.approx(tar)


def test_one_class_is_refused():
    with pytest.raises(FacesysError, match="both"):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))
