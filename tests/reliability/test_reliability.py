"""Reliability on real processes: SIGKILL during enrollment, concurrent writers and readers,
failing disks, real erasure. (The 50-trial crash run is benchmarks/crash_enroll.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesys.errors import GalleryError
from tests.conftest import ROOT, data_path

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_killed_enrollments_lose_nothing(tmp_path):
    data_path("lfw")
    from crash_enroll import run

    result = run(trials=4, workdir=tmp_path, seed=1, photos_per_trial=8)
    assert result["killed"] >= 2, result  # the delays must actually interrupt runs
    assert result["lost_enrollments"] == 0 and result["corrupt_galleries"] == 0, [r["problems"] for r in result["rows"]]
    assert result["reported_enrollments"] > 0


def facesys(*args: str, gallery: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_writers_and_readers(tmp_path):
    lfw = data_path("lfw")
    people = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder"]
    gallery = tmp_path / "gallery"
    first = facesys("enroll", "--name", "Seed Person", str(lfw / "George_W_Bush" / "George_W_Bush_0001.jpg"), gallery=gallery)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    photos = {p: sorted((lfw / p).glob("*.jpg"))[:5] for p in people}
    writers = [facesys("enroll", "--json", "--name", p, *map(str, photos[p]), gallery=gallery) for p in people]
    probe = str(lfw / "Colin_Powell" / "Colin_Powell_0010.jpg")
    readers = [facesys("identify", "--json", probe, probe, probe, gallery=gallery) for _ in range(2)]
    known = {*people, "Seed Person", None}
    for process in writers + readers:
        out, err = process.communicate(timeout=600)
        assert process.returncode in (0, 3), err
        assert "locked" not in err and "Traceback" not in err, err
        if process in readers:  # every answer is a whole, valid result naming someone enrolled (or nobody)
            lines = [json.loads(line) for line in out.splitlines() if '"faces"' in line]
            assert len(lines) == 3 and all(face["name"] in known for line in lines for face in line["faces"])
    from facesys.gallery.index import sync
    from facesys.gallery.store.sqlite import SQLiteStore

    with SQLiteStore(gallery) as store:
        counts = dict(store.people())
        assert store.check() == []
        sources = [f.source for f in store.faces()]
        assert len(sources) == len(set(sources))  # nothing duplicated
        for person in people:
            enrolled = [f for f in store.faces(person)]
            assert len(enrolled) == counts[person] >= 4  # nobody lost (a photo may be rejected by the gates)
        sync.synced(store, store.folder)
        assert sync.problems(store, store.folder) == []


FULL_DISK = """
import resource, signal
from tests.gallery.conftest import MODEL, face
from facesys.gallery.store.sqlite import SQLiteStore as GalleryStore
from facesys.errors import GalleryError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
try:
    store = GalleryStore({folder!r})
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # from now on, no file may grow: the disk is full
    store.add_face("Bob", face(2), MODEL)
    print("ADDED")
except GalleryError as exc:
    print("ERROR", exc)
"""


@pytest.mark.parametrize("when", ["open", "write"])
def test_full_disk_gives_a_clear_error_and_changes_nothing(tmp_path, when):
    from facesys.gallery.store.sqlite import DB_NAME
    from facesys.gallery.store.sqlite import SQLiteStore as GalleryStore
    from tests.gallery.conftest import MODEL, face

    folder = tmp_path / "g"
    with GalleryStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_face("Ann", face(1), MODEL)
        store.erase_freed_pages()
    code = FULL_DISK.format(folder=str(folder))
    if when == "open":  # full before the gallery is even opened
        code = code.replace("try:\n    store", "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\ntry:\n    store")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.stdout.startswith("ERROR") and "gallery" in result.stdout and "Traceback" not in result.stderr, (
        result.stdout + result.stderr
    )
    assert (folder / DB_NAME).is_file()
    with GalleryStore(folder) as store:
        assert store.people() == [("Ann", 1)] and store.check() == []


def test_read_only_gallery_gives_a_clear_error(tmp_path, monkeypatch):
    import sqlite3

    from facesys.gallery.store import sqlite as store_module
    from tests.gallery.conftest import MODEL, face

    folder = tmp_path / "g"
    with store_module.SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_face("Ann", face(1), MODEL)
    real_connect = sqlite3.connect

    def read_only(path, **kw):
        return real_connect(str(path) if str(path).startswith("file:") else f"file:{path}?mode=ro", **(kw | {"uri": True}))

    monkeypatch.setattr(store_module.sqlite3, "connect", read_only)
    with store_module.SQLiteStore(folder) as store:
        assert store.people() == [("Ann", 1)]  # reading works
        with pytest.raises(GalleryError, match="cannot write to the gallery .*readonly"):
            store.add_face("Bob", face(2), MODEL)
    monkeypatch.undo()
    with store_module.SQLiteStore(folder) as store:
        assert store.people() == [("Ann", 1)]


def test_removed_person_is_erased_from_every_file(tmp_path, embedder):
    from facesys.system import FaceSystem

    fr = data_path("face_recognition")
    system = FaceSystem(tmp_path / "g", embedder=embedder)
    system.enroll("Joe Biden", sorted((fr / "joe_biden").glob("*.jpg")))
    system.enroll("Barack Obama", [fr / "barack_obama" / "obama.jpg"])
    from facesys.gallery.store.sqlite import SQLiteStore

    with SQLiteStore(system.gallery.location) as store:
        ids, vectors, names = store.embeddings()
        biden = [vectors[i].astype("<f4").tobytes() for i, n in enumerate(names) if n == "Joe Biden"]
        crops = [jpeg for face_id, jpeg, _, _ in store.crops() if names[list(ids).index(face_id)] == "Joe Biden"]
    system.gallery.remove("Joe Biden")
    blob = b"".join(p.read_bytes() for p in system.gallery.location.iterdir() if p.is_file())
    assert all(v not in blob for v in biden) and all(c[:4096] not in blob for c in crops)
    assert np.frombuffer(b"".join(biden), "<f4").size == 2 * 128
    assert [n for n, _ in system.gallery.people()] == ["Barack Obama"]
