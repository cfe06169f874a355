"""The demographic false-match differential on vectors whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.evaluate.demographics import false_match_differential, impostor_distances


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def people(rng: np.random.Generator, count: int, spread: float, centre: np.ndarray) -> dict[str, np.ndarray]:
    """``count`` people, 3 photos each, identities scattered by ``spread`` around ``centre``."""
    result = {}
    for i in range(count):
        identity = centre + spread * rng.normal(size=centre.shape)
        result[f"p{i}"] = unit(identity + 0.05 * rng.normal(size=(3, len(centre))))
    return result


def test_impostor_distances_leave_out_pairs_of_one_person():
    same = unit(np.array([[1.0, 0.0], [1.0, 0.01]]))
    other = unit(np.array([[0.0, 1.0]]))
    distances = impostor_distances({"a": same, "b": other})
    assert len(distances) == 2 and np.all(distances > 1.0)


def test_a_group_of_look_alikes_matches_more_often_than_the_references():
    rng = np.random.default_rng(0)
    centre = np.zeros(16)
    references = [people(rng, 60, 1.0, centre) for _ in range(3)]
    look_alikes = people(rng, 60, 0.3, centre + 1.0)  # identities packed together
    like_the_rest = people(rng, 60, 1.0, centre)
    packed = false_match_differential(look_alikes, references)
    parity = false_match_differential(like_the_rest, references)
    assert [d.rate for d in packed] == [1e-3, 5e-3]
    assert all(d.ratio > 10 for d in packed)
    assert all(d.ratio < 3 for d in parity)
    assert packed[0].threshold < packed[1].threshold


def test_one_person_is_not_a_group():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="two people"):
        false_match_differential({"a": unit(rng.normal(size=(3, 4)))}, [people(rng, 5, 1.0, np.zeros(4))])
