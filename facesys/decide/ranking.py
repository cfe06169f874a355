"""Ranking enrolled people for probe faces, the open-set decision on them, and the gallery's own
stranger calibration: over plain data and callables, so the gallery (from its store) and evaluation
(from an in-memory index) make the same decision.

``search(probes, k)`` -> their ``k`` nearest enrolled faces (``Neighbours``); ``faces_of(name)`` ->
(face ids (K,), embeddings (K, D), photo of each face id). ``PersonFaces`` caches the latter per
gallery generation (at most ``CACHED_PEOPLE`` people), so a person score over all of a candidate's
photos costs no extra query on a warm gallery.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facesys.decide.calibration import MIN_PEOPLE, Calibration, fit, sample_faces
from facesys.decide.match import Candidate, OpenSetThreshold, ThresholdPolicy
from facesys.decide.scoring import DEFAULT_PERSON_SCORE, Evidence, score_candidates

CACHED_PEOPLE = 4096
SEARCHED_FACES = 64  # nearest faces whose people become candidates


@dataclass(frozen=True)
class Neighbours:
    """Search results for Q queries: ``distances`` and ``ids`` (Q, k) (id -1 = none), person
    ``names`` of the ids found, and the number of faces searched."""

    distances: np.ndarray
    ids: np.ndarray
    names: dict[int, str]
    size: int


Search = Callable[[np.ndarray, int], Neighbours]
PersonFacesT = tuple[np.ndarray, np.ndarray, dict[int, str]]
FacesOf = Callable[[str], PersonFacesT]


class PersonFaces:
    """Per-person (face ids (K,), embeddings (K, D), photo of each face id), cached per gallery generation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._people: OrderedDict[str, PersonFacesT] = OrderedDict()

    def reader(self, generation: int, load: FacesOf) -> FacesOf:
        """``load`` (one person's faces read from the gallery at ``generation``) behind the cache,
        which is emptied when the generation changed."""
        with self._lock:
            if generation != self._generation:
                self._people.clear()
                self._generation = generation

        def faces_of(name: str) -> PersonFacesT:
            with self._lock:
                hit = self._people.get(name)
                if hit is not None:
                    self._people.move_to_end(name)
                    return hit
            entry = load(name)
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
    faces_of: FacesOf,
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


def identify(
    probes: np.ndarray,
    search: Search,
    faces_of: FacesOf,
    top_k: int,
    policy: ThresholdPolicy,
    calibration: Callable[[], Calibration | None] = lambda: None,
    method: str = DEFAULT_PERSON_SCORE,
) -> tuple[list[list[Candidate]], OpenSetThreshold]:
    """The ``top_k`` people of each of (Q, D) ``probes`` and the open-set threshold that names them
    (``policy`` over the faces searched and, when it uses one, the gallery's ``calibration()``)."""
    found = search(probes, SEARCHED_FACES)
    ranked = rank(probes, found.ids, found.names, faces_of, top_k, method)
    return ranked, policy.identify(found.size, calibration() if policy.uses_calibration else None)


def calibrate(
    face_ids: np.ndarray,
    faces: Callable[[np.ndarray], tuple[np.ndarray, list[str]]],
    people: int,
    search: Search,
    faces_of: FacesOf,
    method: str = DEFAULT_PERSON_SCORE,
) -> Calibration | None:
    """A gallery's stranger calibration (facesys/decide/calibration.py; None: too small to tell): up to
    SAMPLE_FACES (seeded) of its (N,) ``face_ids``, read with ``faces(ids)`` -> (embeddings, owners),
    each identified against everyone but its own person, in a gallery of ``people``."""
    if people < MIN_PEOPLE or not len(face_ids):
        return None
    probes, owners = faces(face_ids[sample_faces(len(face_ids))])
    found = search(probes, SEARCHED_FACES)
    ranked = rank(probes, found.ids, found.names, faces_of, 1, method, owners)
    return fit(np.array([c[0].distance if c else np.inf for c in ranked]), people)
