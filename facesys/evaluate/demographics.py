"""Demographic false-match differential: how much more often one group's different people match
each other than people of reference groups do, at the same threshold.

The threshold is set where a share ``rate`` of the impostor pairs inside the reference groups
(pooled; pairs only within a group) fall below it; the group's own impostor pairs are then counted
at that threshold. The differential is the group's false-match rate over ``rate`` (1 = parity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Differential:
    """At false-match ``rate`` of the reference groups: the ``threshold`` (Euclidean distance between
    unit vectors), the group's false-match rate there and the ratio of the two."""

    rate: float
    threshold: float
    group_rate: float

    @property
    def ratio(self) -> float:
        return self.group_rate / self.rate


def impostor_distances(people: dict[str, np.ndarray]) -> np.ndarray:
    """Distances of every pair of faces of two different people of ``people`` (name -> (n, D) unit vectors)."""
    names = [name for name, vectors in people.items() for _ in range(len(vectors))]
    if not names:
        return np.zeros(0)
    matrix = np.concatenate([np.asarray(v, np.float64) for v in people.values()])
    owner = np.array(names)
    upper = np.triu_indices(len(matrix), k=1)
    distances = np.linalg.norm(matrix[upper[0]] - matrix[upper[1]], axis=1)
    return distances[owner[upper[0]] != owner[upper[1]]]


def false_match_differential(
    group: dict[str, np.ndarray], references: list[dict[str, np.ndarray]], rates: tuple[float, ...] = (1e-3, 5e-3)
) -> list[Differential]:
    """One Differential per rate of ``rates`` for ``group`` against ``references`` (see the module docstring)."""
    reference = np.sort(np.concatenate([impostor_distances(people) for people in references]))
    inside = impostor_distances(group)
    if len(reference) == 0 or len(inside) == 0:
        raise ValueError("each side needs at least two people")
    result = []
    for rate in rates:
        threshold = float(np.quantile(reference, rate))
        result.append(Differential(rate, threshold, float(np.mean(inside <= threshold))))
    return result
