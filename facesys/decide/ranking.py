"""Ranking enrolled people for probe faces, and the gallery's own stranger calibration, over a store.

``PersonFaces`` caches each person's enrolled face ids, embeddings and photos (one store read per
person, kept until the store's generation changes; at most ``CACHED_PEOPLE`` people) so a person
score over all of a candidate's photos costs no extra query on a warm gallery.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from facesys.decide.calibration import MIN_PEOPLE, Calibration, fit, sample_faces
from facesys.decide.match import Candidate
from facesys.decide.scoring import DEFAULT_PERSON_SCORE, Evidence, score_candidates
from facesys.gallery.store import TruthStore

CACHED_PEOPLE = 4096
SEARCHED_FACES = 64  # nearest faces whose people become candidates


class PersonFaces:
    """Per-person (face ids (K,), embeddings (K, D), photo of each face id), cached per store generation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._people: OrderedDict[str, tuple[np.ndarray, np.ndarray, dict[int, str]]] = OrderedDict()

    def reader(self, store: TruthStore) -> Callable[[str], tuple[np.ndarray, np.ndarray, dict[int, str]]]:
        """A lookup of one person's faces through ``store`` (the cache is emptied if the store changed)."""
        generation = store.generation
        with self._lock:
            if generation != self._generation:
                self._people.clear()
                self._generation = generation

        def faces_of(name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
            with self._lock:
                hit = self._people.get(name)
                if hit is not None:
                    self._people.move_to_end(name)
                    return hit
            records = store.faces(name)
            ids = np.array([r.id for r in records], np.int64)
            vectors = store.vectors(ids) if len(ids) else np.zeros((0, store.dim), np.float32)
            entry = (ids, vectors, {r.id: r.source for r in records})
            with self._lock:
                self._people[name] = entry
                while len(self._people) > CACHED_PEOPLE:
                    self._people.popitem(last=False)
            return entry

        return faces_of


def rank(
    probes: np.ndarray,
    found_ids: np.ndarray,
    owner: dict[int, str],
    faces_of: Callable[[str], tuple[np.ndarray, np.ndarray, dict[int, str]]],
    top_k: int,
    method: str = DEFAULT_PERSON_SCORE,
    exclude: list[str | None] | None = None,
) -> list[list[Candidate]]:
    """The ``top_k`` candidates of each of (Q, D) ``probes``, their faces carrying their photos."""
    answers = []
    for row, probe in enumerate(probes):
        scored = score_candidates(
            probe, found_ids[row], owner, lambda name: faces_of(name)[:2], method, exclude[row] if exclude else None
        )
        candidates = []
        for name, score, evidence in scored[:top_k]:
            sources = faces_of(name)[2]
            faces = tuple(Evidence(e.face_id, e.distance, sources.get(e.face_id)) for e in evidence)
            candidates.append(Candidate(name, score, faces[0].face_id, faces))
        answers.append(candidates)
    return answers


def calibrate(
    probes: np.ndarray,
    owners: list[str],
    people: int,
    search: Callable[[np.ndarray], tuple[np.ndarray, dict[int, str]]],
    faces_of,
    method: str = DEFAULT_PERSON_SCORE,
) -> Calibration | None:
    """A gallery's stranger calibration (facesys/decide/calibration.py; None: too small to tell): each of the
    (S, D) enrolled ``probes`` (faces of ``owners``) identified against everyone but its own person,
    in a gallery of ``people``. ``search(vectors)`` -> (found face ids (S, k), owner of each id)."""
    if people < MIN_PEOPLE or not len(probes):
        return None
    found, owner = search(probes)
    ranked = rank(probes, found, owner, faces_of, 1, method, owners)
    return fit(np.array([c[0].distance if c else np.inf for c in ranked]), people)


def calibrate_store(store: TruthStore, people: int, search, faces_of, method: str = DEFAULT_PERSON_SCORE) -> Calibration | None:
    """:func:`calibrate` over (up to SAMPLE_FACES, seeded) enrolled faces of ``store``."""
    if people < MIN_PEOPLE:
        return None
    ids = store.face_ids()
    sample = ids[sample_faces(len(ids))]
    owners = store.names_of(sample)
    sample = np.array([i for i in sample.tolist() if i in owners], np.int64)
    return calibrate(store.vectors(sample), [owners[int(i)] for i in sample], people, search, faces_of, method)
