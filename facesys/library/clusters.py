"""``facesys cluster`` and ``facesys clusters``: group the library's unnamed faces by person
(facesys/decide/clustering.py) and list the groups.

Clustering is incremental: each unnamed face's cluster from the last run is handed to
``cluster_faces`` as ``previous``, so clusters that persist keep their ids and new faces join them
or form new clusters. A new cluster's id is above every id the library ever gave (the store's
``last_cluster_id``), so an id seen in an old listing never names another group. Only faces of the
gallery's model are clustered; named faces belong to no cluster, and neither do faces too poor to
judge (``good_enough``). Two faces of one photo (one frame of a video) are two people: they never
share a cluster (``same_shot``, the cannot-link rule of ``cluster_faces``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesys.errors import FacesysError
from facesys.gallery.gallery import Gallery


@dataclass(frozen=True)
class ClusterRun:
    """What one clustering run did: unnamed ``faces`` clustered, ``clusters`` they form, how many
    of those are ``new``, faces ``placed`` now (never clustered before), the threshold used, and
    ``poor`` faces left out (too small, unsure or in profile: identify's probe rules)."""

    faces: int
    clusters: int
    new: int
    placed: int
    threshold: float | None
    poor: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Cluster:
    """A cluster of unnamed library faces: its id, its faces (library face ids, the face nearest
    the cluster's mean first, the farthest last) and how many files they come from."""

    id: int
    faces: list[int]
    photos: int

    @property
    def size(self) -> int:
        return len(self.faces)

    def to_dict(self) -> dict:
        return {"cluster": self.id, "size": self.size, "photos": self.photos, "faces": self.faces}


def default_threshold(model_name: str | None) -> float | None:
    """The clustering threshold for the embeddings of a registered model (None: clustering's own
    default, for a model known only by its checkpoint file)."""
    from facesys.decide.clustering import cluster_threshold
    from facesys.errors import ModelError
    from facesys.models import get_model_spec

    try:
        return cluster_threshold(get_model_spec(model_name)) if model_name else None
    except ModelError:
        return None


def cluster_library(gallery: Gallery, threshold: float | None = None, rules=None) -> ClusterRun:
    """Cluster the unnamed library faces of ``gallery`` and store their cluster ids (one
    transaction). ``threshold``: the distance under which two faces are linked (default: the
    model's clustering threshold); ``rules``: the ProbeRules that judge ``good_enough`` (default:
    the default detector's)."""
    from facesys.decide.clustering import cluster_faces

    if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold <= 2.0):
        raise FacesysError(f"threshold {threshold}: must be a distance in (0, 2]", parameter="threshold")
    with gallery.open() as store:
        with store.reading():
            meta = store.meta()
            faces = [face for face in store.library_faces(unnamed=True) if face.model_id == meta.get("model_id")]
            usable = [face for face in faces if good_enough(face, rules)]
            poor, faces = len(faces) - len(usable), usable
            vectors = store.library_vectors([face.id for face in faces])
        if threshold is None:
            threshold = default_threshold(meta.get("model_name"))
        previous = np.array([-1 if face.cluster is None else face.cluster for face in faces], np.int64)
        labels = cluster_faces(vectors, previous, threshold, same_shot(faces)) if faces else np.zeros(0, np.int64)
        labels = fresh_ids(labels, previous, int(meta.get("last_cluster_id", -1)))
        if faces:
            store.set_clusters([face.id for face in faces], labels.tolist())
    kept = set(previous[previous >= 0].tolist())
    made = set(labels.tolist())
    return ClusterRun(len(faces), len(made), len(made - kept), int((previous < 0).sum()), threshold, poor)


def same_shot(faces) -> np.ndarray:
    """(N,) int64 cannot-link keys of library faces: one per photo and video frame, so that two faces
    seen together (two people) never share a cluster."""
    keys: dict[tuple[int, int | None], int] = {}
    return np.array([keys.setdefault((face.photo_id, face.frame), len(keys)) for face in faces], np.int64)


def good_enough(face, rules=None) -> bool:
    """Whether a library face is clear enough to group: identify's probe rules on its box, detection
    score and landmarks (facesys/vision/quality.py; its sharpness is not stored). A tiny, unsure or profile
    face gives an embedding that lands near anyone and would chain different people together; such
    faces stay out of clusters (they can still be named one by one). ``rules``: default, the default detector's."""
    from facesys.vision.quality import probe_problem, rules_for

    return probe_problem(np.asarray(face.box), face.score, np.asarray(face.landmarks), None, rules or rules_for(None)[1]) is None


def fresh_ids(labels: np.ndarray, previous: np.ndarray, last: int) -> np.ndarray:
    """(N,) int64 ``labels`` with every id that is not a ``previous`` one renumbered above ``last``
    (the highest id ever given), in order of first appearance."""
    kept = set(previous[previous >= 0].tolist())
    start = max([last, -1, *kept]) + 1
    mapping: dict[int, int] = {}
    out = labels.astype(np.int64).copy()
    for row, label in enumerate(labels.tolist()):
        if label not in kept:
            out[row] = mapping.setdefault(label, start + len(mapping))
    return out


def list_clusters(gallery: Gallery, min_size: int = 1) -> list[Cluster]:
    """The clusters of unnamed faces with at least ``min_size`` faces, largest first (then by id)."""
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise FacesysError(f"min_size={min_size!r}: must be a whole number >= 1", parameter="min_size")
    if not gallery.exists():
        return []
    with gallery.open() as store, store.reading():
        model_id = store.model_id
        faces = [face for face in store.library_faces(unnamed=True) if face.cluster is not None and face.model_id == model_id]
        sizes: dict[int, int] = {}
        for face in faces:
            sizes[face.cluster] = sizes.get(face.cluster, 0) + 1
        faces = [face for face in faces if sizes[face.cluster] >= min_size]
        vectors = store.library_vectors([face.id for face in faces])
    members: dict[int, list[int]] = {}
    for row, face in enumerate(faces):
        members.setdefault(face.cluster, []).append(row)
    clusters = []
    for cluster, rows in members.items():
        centre = vectors[rows].mean(axis=0)
        order = np.argsort(np.linalg.norm(vectors[rows] - centre, axis=1), kind="stable")
        ids = [faces[rows[i]].id for i in order]
        clusters.append(Cluster(cluster, ids, len({faces[row].photo_id for row in rows})))
    return sorted(clusters, key=lambda c: (-c.size, c.id))


def write_cluster_sheet(gallery: Gallery, clusters: list[Cluster], path) -> Path:
    """Write the contact sheet of ``clusters`` (facesys/library/sheet.py) to the .png ``path``: one
    row per cluster, up to PER_ROW crops spread from its most typical face to its least; returns
    the path."""
    from facesys.library.sheet import MAX_ROWS, PER_ROW, write_sheet

    shown = clusters[:MAX_ROWS]
    picks = [[c.faces[i] for i in spread(c.size, PER_ROW)] for c in shown]
    crops: dict[int, bytes] = {}
    if gallery.exists():
        with gallery.open() as store:
            crops = store.library_crops([face for faces in picks for face in faces])
    rows = [
        (f"cluster {c.id}", f"{c.size} face{'s' if c.size != 1 else ''}, {c.photos} file{'s' if c.photos != 1 else ''}",
         [crops.get(face) for face in faces])
        for c, faces in zip(shown, picks, strict=True)
    ]  # fmt: skip
    return write_sheet(rows, path)


def spread(size: int, count: int) -> list[int]:
    """Up to ``count`` positions in range(size), evenly spread, first and last included."""
    return sorted({int(i) for i in np.linspace(0, size - 1, min(size, count)).round()}) if size else []
