"""Clustering the library: two faces of one photo (one frame of a video) are two people, on
synthetic faces in every store backend."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

from facesys.library.clusters import cluster_library
from tests.gallery.conftest import MODEL
from tests.library.conftest import library_face, photo

FRONTAL = np.array([[40.0, 60], [80, 60], [60, 80], [45, 110], [75, 110]])  # clear enough to cluster


class OpenStore:
    """What cluster_library needs of a Gallery: ``open()`` handing over the test's store."""

    def __init__(self, store):
        self.store = store

    def open(self):
        return contextlib.nullcontext(self.store)


def face(seed: int, vector: np.ndarray, frame: int | None = None):
    return replace(library_face(seed, frame=frame), embedding=vector, landmarks=FRONTAL, score=0.999)


def test_two_faces_of_one_photo_or_frame_are_never_one_cluster(store):
    rng = np.random.default_rng(3)
    centre = rng.normal(size=8)
    same = [(centre + 0.001 * rng.normal(size=8)) / np.linalg.norm(centre) for _ in range(6)]
    same = [(v / np.linalg.norm(v)).astype(np.float32) for v in same]
    together = store.record_photo(photo(1), [face(1, same[0]), face(2, same[1])], MODEL)  # one photo, two faces
    alone = store.record_photo(photo(2), [face(3, same[2])], MODEL)
    video = store.record_photo(photo(3), [face(4, same[3], 0), face(5, same[4], 0), face(6, same[5], 25)], MODEL)
    run = cluster_library(OpenStore(store))
    cluster = {f.id: f.cluster for f in store.library_faces()}
    assert run.faces == 6 and run.clusters == 2
    assert cluster[together[0]] != cluster[together[1]]
    assert cluster[video[0]] != cluster[video[1]]  # one frame: two people
    assert cluster[video[2]] in (cluster[video[0]], cluster[video[1]])  # another frame: may be either
    assert cluster[alone[0]] in (cluster[together[0]], cluster[together[1]])
    more = store.record_photo(photo(4), [face(7, same[0]), face(8, same[1])], MODEL)  # a second run
    cluster_library(OpenStore(store))
    after = {f.id: f.cluster for f in store.library_faces()}
    assert after[more[0]] != after[more[1]]
    assert all(after[i] == cluster[i] for i in together + alone + video)  # the clusters keep their ids
