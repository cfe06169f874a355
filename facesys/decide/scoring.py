"""Person scores: how far a probe face is from an enrolled person who has several photos.

A face search finds the enrolled faces nearest the probe; their people are the candidates, and each
candidate is scored against all of their enrolled faces (``PERSON_SCORES``, in facesys/config.py):

- ``template`` (the default): distance to the person's template, the L2-normalised mean of their
  embeddings. Averaging cancels what differs between a person's photos (light, pose, expression)
  and keeps what they share: on LFW (2 photos enrolled per person) DIR at FPIR 1% rises from 75.1%
  (nearest photo) to 81.4%, on Yale from 71% to 85% (README "How decisions are made", measured with
  ``facesys eval identify --score``);
- ``nearest``: the single nearest enrolled photo (what facesys did before);
- ``nearest-2``: the mean of the two nearest photos (worse than both on LFW).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facesys.config import DEFAULT_PERSON_SCORE

CANDIDATE_PEOPLE = 10  # people re-scored per probe: those owning its nearest faces


@dataclass(frozen=True)
class Evidence:
    """One enrolled face of a candidate: its id, its distance to the probe, and its photo when known."""

    face_id: int
    distance: float
    source: str | None = None


def template(vectors: np.ndarray) -> np.ndarray:
    """(K, D) unit embeddings of one person -> (D,) float32 unit template (their normalised mean)."""
    mean = np.asarray(vectors, np.float64).mean(0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


def person_score(probe: np.ndarray, vectors: np.ndarray, method: str = DEFAULT_PERSON_SCORE) -> float:
    """The distance between a (D,) probe and a person's (K, D) enrolled embeddings under ``method``."""
    if method == "template":
        return float(np.linalg.norm(np.asarray(probe, np.float64) - template(vectors)))
    distances = np.sort(np.linalg.norm(np.asarray(vectors, np.float64) - probe, axis=1))
    return float(distances[0] if method == "nearest" else distances[:2].mean())


def score_candidates(
    probe: np.ndarray,
    found_ids: np.ndarray,
    owner: dict[int, str],
    faces_of: Callable[[str], tuple[np.ndarray, np.ndarray]],
    method: str = DEFAULT_PERSON_SCORE,
    exclude: str | None = None,
    limit: int = CANDIDATE_PEOPLE,
) -> list[tuple[str, float, tuple[Evidence, ...]]]:
    """The people owning a probe's nearest faces, best first: (name, score, their faces nearest first).

    ``probe`` (D,); ``found_ids`` (k,) face ids from a search, nearest first (-1 = none); ``owner``
    face id -> person; ``faces_of(name)`` -> (face ids (K,), embeddings (K, D)); ``exclude``: a person
    left out (calibration treats each enrolled person as a stranger to the others); at most ``limit``
    people are scored, in the order their nearest face was found.
    """
    names: list[str] = []
    for face_id in found_ids.tolist():
        name = owner.get(face_id)
        if name is not None and name != exclude and name not in names:
            names.append(name)
            if len(names) == limit:
                break
    scored = []
    for name in names:
        ids, vectors = faces_of(name)
        if not len(ids):
            continue  # removed meanwhile
        distances = np.linalg.norm(np.asarray(vectors, np.float64) - probe, axis=1)
        order = np.argsort(distances, kind="stable")
        evidence = tuple(Evidence(int(ids[i]), float(distances[i])) for i in order)
        scored.append((name, person_score(probe, vectors, method), evidence))
    return sorted(scored, key=lambda item: item[1])
