"""The LFW k-fold verification protocol on pair distances.

For each fold, the threshold is the one with the best accuracy on the other folds (pairs with
distance <= threshold are called "same"); the fold's accuracy is measured with it on the held-out
pairs. The reported accuracy is the mean (and standard deviation) of the held-out accuracies, as in
insightface's and facenet-pytorch's LFW evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoldResult:
    """One fold: the threshold chosen on the other folds and the accuracy it gets on this one."""

    fold: int
    threshold: float
    accuracy: float
    pairs: int


@dataclass(frozen=True)
class KFoldResult:
    """Held-out accuracy of every fold; ``mean`` and ``std`` (population std, as numpy's) over folds."""

    folds: list[FoldResult]

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([f.accuracy for f in self.folds])

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std())


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold with the highest accuracy on (distances, same).

    Candidates are the midpoints between consecutive sorted distances (plus both ends), so the
    optimum over all thresholds is found exactly; ties go to the smallest such threshold.
    """
    d = np.asarray(distances, np.float64)
    y = np.asarray(same, bool)
    order = np.argsort(d, kind="stable")
    d, y = d[order], y[order]
    # Calling the first k pairs (smallest distances) "same": correct = same among them + different after.
    correct = np.concatenate([[0], np.cumsum(y)]) + np.concatenate([[(~y).sum()], (~y).sum() - np.cumsum(~y)])
    # Only cut between distinct distances.
    valid = np.concatenate([[True], d[1:] != d[:-1], [True]])
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        return float(d[0] - 1e-6) if len(d) else 0.0
    if k == len(d):
        return float(d[-1])
    return float((d[k - 1] + d[k]) / 2)


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly by ``distance <= threshold`` means same."""
    return float(np.mean((np.asarray(distances) <= threshold) == np.asarray(same, bool)))


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> KFoldResult:
    """The k-fold protocol: per fold, threshold from the other folds, accuracy on this one.

    ``distances``, ``same`` and ``folds`` are (P,) arrays over the pairs; ``folds`` holds fold ids.
    """
    distances, same, folds = np.asarray(distances, np.float64), np.asarray(same, bool), np.asarray(folds)
    results = []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(distances[~test], same[~test])
        results.append(FoldResult(int(fold), threshold, accuracy_at(distances[test], same[test], threshold), int(test.sum())))
    return KFoldResult(results)
