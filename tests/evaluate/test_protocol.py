"""The k-fold protocol on synthetic distances with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facesys.evaluate.protocol import accuracy_at, best_threshold, kfold_accuracy


def separable(folds: int = 10, per_fold: int = 600):
    rng = np.random.default_rng(1)
    same = np.tile(np.r_[np.ones(per_fold // 2, bool), np.zeros(per_fold // 2, bool)], folds)
    distances = np.where(same, rng.uniform(0.1, 0.5, same.size), rng.uniform(0.6, 1.2, same.size))
    return distances, same, np.repeat(np.arange(folds), per_fold)


def test_perfectly_separable_is_100_percent():
    distances, same, folds = separable()
    result = kfold_accuracy(distances, same, folds)
    assert result.mean == 1.0 and result.std == 0.0 and len(result.folds) == 10
    assert all(0.5 <= f.threshold <= 0.6 for f in result.folds)


def test_one_error_per_fold_gives_a_known_accuracy():
    distances, same, folds = separable()
    # In every fold one "same" pair gets a huge distance: no threshold can save it.
    for fold in range(10):
        distances[np.flatnonzero((folds == fold) & same)[0]] = 5.0
    result = kfold_accuracy(distances, same, folds)
    assert result.mean == pytest.approx(599 / 600)
    assert result.std == pytest.approx(0.0)


def test_threshold_comes_from_the_other_folds_only():
    # Fold 0 alone would want threshold ~1.0; the other folds agree on ~0.55.
    distances, same, folds = separable(folds=3, per_fold=4)
    distances[folds == 0] = np.where(same[folds == 0], 0.9, 1.1)
    result = kfold_accuracy(distances, same, folds)
    assert 0.5 <= result.folds[0].threshold <= 0.6
    assert result.folds[0].accuracy == 0.5  # every "same" pair in fold 0 is called different


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=40))
def test_best_threshold_is_optimal(pairs):
    distances = np.array([d / 10 for d, _ in pairs])
    same = np.array([s for _, s in pairs])
    chosen = accuracy_at(distances, same, best_threshold(distances, same))
    candidates = np.concatenate([[-1.0], distances])
    assert chosen == max(accuracy_at(distances, same, t) for t in candidates)
