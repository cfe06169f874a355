"""The real ``scan`` on a two-node cluster with the worker node killed mid-scan (issue 27): afterwards
every photo is in the gallery exactly once with the faces a single-process scan finds (embeddings
within 1e-4), no face twice, and a re-run (on Ray or here) writes nothing. On a folder gallery and on
PostgreSQL. Only the public API: ``FaceSystem.scan(..., ray=ADDRESS)`` and the gallery's store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facesys.gallery.gallery import Gallery
from facesys.system import FaceSystem
from tests.conftest import data_path

pytest.importorskip("ray", reason='Ray not installed (in the facesys checkout, pip install -e ".[ray]")')

PHOTOS = 60  # four batches of 16 on two actors: when the first answer comes, each actor holds another batch
DEADLINE_S = 120  # the whole scan, killed node included (a hung scan fails the test, never the session)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """PHOTOS real LFW photos, one sub-folder per person as in LFW."""
    chosen = sorted(data_path("lfw").glob("*/*.jpg"))[:PHOTOS]
    if len(chosen) < PHOTOS:
        pytest.skip(f"LFW holds {len(chosen)} photos here, {PHOTOS} needed")
    root = tmp_path_factory.mktemp("node-kill-scan") / "photos"
    for photo in chosen:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / photo.parent.name / photo.name)
    return root


def library(location) -> dict[str, list[np.ndarray]]:
    """Photo path -> the embeddings of its faces in stored order; FAILS when a path is recorded twice."""
    with Gallery(location).open() as store:
        photos = [photo.path for photo in store.library_photos()]
        assert len(photos) == len(set(photos)), "a photo recorded twice"
        faces = store.library_faces()
        vectors = store.library_vectors([face.id for face in faces]) if faces else []
        out: dict[str, list[np.ndarray]] = {path: [] for path in photos}
        for face, vector in zip(faces, vectors, strict=True):
            out[face.path].append(np.asarray(vector))
        return out


def state(location) -> tuple:
    """What a scan could change: the generation, the photos recorded and the library face ids."""
    with Gallery(location).open() as store:
        return store.generation, store.library_photos(), [face.id for face in store.library_faces()]


@pytest.fixture(scope="module")
def single(tmp_path_factory, folder):
    """The folder scanned in this process: (report, photo -> embeddings)."""
    location = tmp_path_factory.mktemp("single") / "g"
    report = FaceSystem(location).scan([folder])
    return report, library(location)


@contextlib.contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """A KeyboardInterrupt in this (main) thread after ``seconds`` unless the block ended before: a
    scan waiting forever on Ray (an actor that cannot be restarted anywhere) becomes a failure."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(seconds):
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


class KillWorkerAfter:
    """``on_result``: the worker node killed (SIGKILL, every process of it) as the ``after``-th
    result of the scan arrives, while the other batches are still with the actors."""

    def __init__(self, nodes, after: int = 1):
        self.nodes, self.after = nodes, after
        self.results: list = []

    def __call__(self, result) -> None:
        self.results.append(result)
        if len(self.results) == self.after:
            self.nodes.kill_worker()


def new_gallery(backend: str, tmp_path: Path, request) -> str:
    """A new gallery's location: a folder, or a new database of the session's PostgreSQL server."""
    if backend == "sqlite":
        return str(tmp_path / "g")
    return request.getfixturevalue("postgres_cluster").create_database()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_node_killed_mid_scan_leaves_every_photo_once_with_its_faces(two_nodes, folder, single, tmp_path, backend, request):
    location = new_gallery(backend, tmp_path, request)
    system = FaceSystem(location)
    kill = KillWorkerAfter(two_nodes)
    try:
        with interrupted_after(DEADLINE_S):
            report = system.scan([folder], on_result=kill, ray=two_nodes.address)
    except KeyboardInterrupt:
        pytest.fail(f"the scan did not end within {DEADLINE_S} s; the worker node was killed ({len(kill.results)} results)")

    # The kill came while the scan was under way, and the scan went on to the end.
    assert len(kill.results) == PHOTOS and kill.after < PHOTOS
    reference, expected = single
    assert report.to_dict() == reference.to_dict()

    # Every photo once, each with the faces a single-process scan finds; no face twice.
    found = library(location)
    assert found.keys() == expected.keys()
    for path, vectors in expected.items():
        assert len(found[path]) == len(vectors), path
        for got, want in zip(found[path], vectors, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4, err_msg=path)
    assert sum(map(len, found.values())) == sum(map(len, expected.values()))

    # A re-run, on what is left of the cluster or in this process, writes nothing.
    before = state(location)
    again = system.scan([folder], ray=two_nodes.address)
    assert again.processed == 0 and again.files["unchanged"] == PHOTOS
    here = system.scan([folder])
    assert here.processed == 0 and here.files["unchanged"] == PHOTOS
    assert state(location) == before
