"""Open-set identification metrics (as in IJB-style evaluations).

Genuine probes show an enrolled person; impostor probes show someone never enrolled.

- rank-k: the share of genuine probes whose person is among the k nearest people (closed set);
- FPIR(t): the share of impostor probes whose nearest person lies within ``t`` (falsely named);
- DIR(t) (detection and identification rate, also TPIR): the share of genuine probes whose nearest
  person is the right one and lies within ``t``;
- DIR at FPIR f: DIR at the largest threshold whose FPIR does not exceed f.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenuineProbe:
    """A probe of an enrolled person: its true name and the ranked (name, distance) candidates."""

    name: str
    ranked: list[tuple[str, float]]


@dataclass(frozen=True)
class IdentificationMetrics:
    rank1: float
    rank5: float
    dir_at_fpir: dict[float, tuple[float, float]]  # fpir -> (DIR, threshold)
    genuine: int
    impostor: int


def rank_k(genuine: list[GenuineProbe], k: int) -> float:
    return float(np.mean([probe.name in [n for n, _ in probe.ranked[:k]] for probe in genuine])) if genuine else 0.0


def dir_at(genuine: list[GenuineProbe], threshold: float) -> float:
    """Share of genuine probes named correctly at ``threshold``."""
    hits = [bool(p.ranked) and p.ranked[0][0] == p.name and p.ranked[0][1] <= threshold for p in genuine]
    return float(np.mean(hits)) if genuine else 0.0


def rejection_rate(impostor_best: np.ndarray, threshold: float) -> float:
    """Share of impostor probes answered "unknown" at ``threshold``."""
    return float(np.mean(np.asarray(impostor_best) > threshold)) if len(impostor_best) else 1.0


def threshold_at_fpir(impostor_best: np.ndarray, fpir: float) -> float:
    """The largest threshold that names at most ``fpir`` of the impostor probes.

    ``impostor_best``: (M,) each impostor probe's nearest distance. Thresholds just below a probe's
    distance are used, so ties never push FPIR over the target.
    """
    d = np.sort(np.asarray(impostor_best, np.float64))
    allowed = int(np.floor(fpir * len(d) + 1e-9))  # impostors that may be named
    if allowed >= len(d):
        return float("inf")
    return float(np.nextafter(d[allowed], -np.inf))


def identification_metrics(genuine: list[GenuineProbe], impostor_best: np.ndarray, fpirs=(1e-1, 1e-2)) -> IdentificationMetrics:
    """rank-1, rank-5 and DIR at each FPIR of ``fpirs``."""
    dirs = {}
    for fpir in fpirs:
        threshold = threshold_at_fpir(impostor_best, fpir)
        dirs[fpir] = (dir_at(genuine, threshold), threshold)
    return IdentificationMetrics(rank_k(genuine, 1), rank_k(genuine, 5), dirs, len(genuine), len(impostor_best))
