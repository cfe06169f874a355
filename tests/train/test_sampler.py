"""The P x K sampler's invariants and its exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import FacesysError
from facesys.train.sampler import PKSampler

LABELS = np.repeat(np.arange(10), [5, 4, 4, 3, 2, 6, 1, 4, 4, 5])


def test_every_batch_has_p_people_with_k_photos_each():
    sampler = PKSampler(LABELS, people=4, per_person=3, seed=1)
    for _ in range(20):
        batch = next(sampler)
        assert batch.shape == (12,)
        people = LABELS[batch].reshape(4, 3)
        assert (people == people[:, :1]).all()  # person-major: K photos of one person together
        assert len(set(people[:, 0].tolist())) == 4
        for row, idx in zip(people, batch.reshape(4, 3), strict=True):
            if (row[0] == LABELS).sum() >= 3:
                assert len(set(idx.tolist())) == 3  # no repeats when the person has enough photos


def test_single_photo_people_are_left_out_and_too_few_people_refused():
    sampler = PKSampler(LABELS, people=4, per_person=2)
    seen = {int(LABELS[i]) for _ in range(30) for i in next(sampler)}
    assert 6 not in seen and len(seen) == 9
    with pytest.raises(FacesysError, match="needs 12 people"):
        PKSampler(LABELS, people=12, per_person=2)


def test_resume_draws_the_same_batches():
    a = PKSampler(LABELS, people=3, per_person=2, seed=7)
    for _ in range(5):
        next(a)
    state = a.state_dict()
    expected = [next(a) for _ in range(6)]
    b = PKSampler(LABELS, people=3, per_person=2, seed=7)
    b.load_state_dict(state)
    assert all((x == y).all() for x, y in zip(expected, [next(b) for _ in range(6)], strict=True))
