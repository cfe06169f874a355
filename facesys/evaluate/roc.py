"""ROC of a verification experiment: TAR against FAR over all thresholds, AUC, EER, TAR@FAR.

TAR (true-accept rate) = same-person pairs with ``distance <= t`` / same-person pairs;
FAR (false-accept rate) = different-person pairs with ``distance <= t`` / different-person pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesys.errors import FacesysError


@dataclass(frozen=True)
class Roc:
    """(K,) arrays over the distinct thresholds, FAR and TAR increasing with the threshold."""

    thresholds: np.ndarray
    far: np.ndarray
    tar: np.ndarray

    @property
    def auc(self) -> float:
        """Area under TAR(FAR), from (0, 0) to (1, 1)."""
        far = np.concatenate([[0.0], self.far, [1.0]])
        tar = np.concatenate([[0.0], self.tar, [1.0]])
        return float(np.trapezoid(tar, far))

    @property
    def eer(self) -> float:
        """Equal error rate: where FAR equals the false-reject rate 1 - TAR (interpolated)."""
        frr = 1.0 - self.tar
        i = int(np.argmax(self.far >= frr))
        if i == 0:
            return float((self.far[0] + frr[0]) / 2)
        # Between points i-1 and i, FAR - FRR changes sign: interpolate linearly.
        d0, d1 = self.far[i - 1] - frr[i - 1], self.far[i] - frr[i]
        w = d0 / (d0 - d1) if d0 != d1 else 0.0
        return float(self.far[i - 1] + w * (self.far[i] - self.far[i - 1]))

    def tar_at_far(self, target: float) -> tuple[float, float]:
        """(TAR, threshold) at the largest threshold whose FAR does not exceed ``target``.

        With no such threshold (FAR already above target at the smallest), (0.0, -inf).
        """
        allowed = np.flatnonzero(self.far <= target)
        if not len(allowed):
            return 0.0, float("-inf")
        i = allowed[-1]
        return float(self.tar[i]), float(self.thresholds[i])


def roc_curve(distances: np.ndarray, same: np.ndarray) -> Roc:
    """The ROC of (P,) pair ``distances`` with (P,) boolean ``same`` labels (both classes needed)."""
    d = np.asarray(distances, np.float64)
    y = np.asarray(same, bool)
    if y.all() or not y.any():
        raise FacesysError("pairs: a ROC needs both same-person and different-person pairs")
    order = np.argsort(d, kind="stable")
    d, y = d[order], y[order]
    last = np.concatenate([d[1:] != d[:-1], [True]])  # the last pair of each distinct distance
    tar = np.cumsum(y)[last] / y.sum()
    far = np.cumsum(~y)[last] / (~y).sum()
    return Roc(d[last], far, tar)
