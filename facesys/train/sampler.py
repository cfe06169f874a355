"""P x K sampling: every effective batch holds P people with K photos each.

Triplet losses need positives and negatives in the batch; a P x K batch guarantees both.
People with fewer than K photos are drawn with replacement (their photos repeat); people with a
single photo can never form a positive pair and are left out. Batches are person-major (the K
photos of a person are adjacent), so a micro-batch whose size is a multiple of K holds whole people.
"""

from __future__ import annotations

import numpy as np

from facesys.errors import FacesysError


class PKSampler:
    """Deterministic infinite stream of (P*K,) index arrays over ``labels`` (N,) ints.

    ``state_dict()`` / ``load_state_dict()`` record the epoch and position, so a resumed run draws
    exactly the batches an uninterrupted one would have.
    """

    def __init__(self, labels: np.ndarray, people: int, per_person: int, seed: int = 0):
        labels = np.asarray(labels)
        self.by_person = {int(p): np.flatnonzero(labels == p) for p in np.unique(labels)}
        self.by_person = {p: idx for p, idx in self.by_person.items() if len(idx) >= 2}
        if len(self.by_person) < people:
            raise FacesysError(f"P x K sampling needs {people} people with at least 2 photos; the data has {len(self.by_person)}")
        self.people, self.per_person, self.seed = people, per_person, seed
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order()

    @property
    def batch_size(self) -> int:
        return self.people * self.per_person

    def _epoch_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(sorted(self.by_person))

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self.position + self.people > len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._epoch_order()
        chosen = self._order[self.position : self.position + self.people]
        rng = np.random.default_rng([self.seed, self.epoch, self.position])
        self.position += self.people
        batch = []
        for person in chosen:
            photos = self.by_person[int(person)]
            batch.append(rng.choice(photos, self.per_person, replace=len(photos) < self.per_person))
        return np.concatenate(batch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._epoch_order()
