"""A scan killed with SIGKILL and run again stores the same faces as a scan never interrupted:
each file is recorded whole (with all its faces) or not at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesys.gallery.gallery import Gallery
from tests.conftest import ROOT, data_path

PHOTOS = 40  # LFW photos: several batches of 16, so the kill lands while some files are not recorded yet


def stored_faces(gallery) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """path -> (box, embedding) of each of its library faces, ordered by box; checks that every
    recorded file has all its faces (none half recorded)."""
    with Gallery(gallery).open() as store:
        photos = store.library_photos()
        faces = store.library_faces()
        vectors = store.library_vectors([face.id for face in faces])
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {photo.path: [] for photo in photos}
    for face, vector in zip(faces, vectors, strict=True):
        out[face.path].append((np.array(face.box), vector))
    assert all(len(out[photo.path]) == photo.faces for photo in photos)
    return {path: sorted(found, key=lambda item: tuple(item[0])) for path, found in out.items()}


def same_faces(a: list, b: list) -> bool:
    """Whether two files' faces agree: boxes within 1 px, embeddings within 1e-4 (two processes
    may compute with different thread counts)."""
    if len(a) != len(b):
        return False
    pairs = zip(a, b, strict=True)
    return all(np.allclose(box_a, box_b, atol=1.0) and np.allclose(v_a, v_b, atol=1e-4) for (box_a, v_a), (box_b, v_b) in pairs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    lfw = data_path("lfw")
    root = tmp_path_factory.mktemp("kill") / "photos"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and p.name.startswith("B"))
    photos = [photo for person in people for photo in sorted(person.glob("*.jpg"))[:2]][:PHOTOS]
    for number, photo in enumerate(photos):
        target = root / f"{number // 10}" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photo.read_bytes())
    return root


def scan_killed_after(gallery: Path, folder: Path, key: str, value: str) -> None:
    """Run ``facesys scan --json folder`` and SIGKILL it once it printed a line whose ``key`` is
    ``value`` (each line is printed after what it reports was committed)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # the model and detector of the `embedder` fixture, which the tests compare against
    model = ["--model", "dlib-resnet", "--detector", "mtcnn"]
    command = [sys.executable, "-m", "facesys.cli", *model, "--gallery", str(gallery), "scan", "--json", str(folder)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if json.loads(line).get(key) == value:
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()


def test_a_killed_scan_run_again_stores_what_an_uninterrupted_one_does(folder, tmp_path, embedder):
    from facesys.system import FaceSystem

    killed = tmp_path / "killed"
    scan_killed_after(killed, folder, "event", "file")
    partial = stored_faces(killed)
    recorded = len(partial)
    assert 1 <= recorded < PHOTOS, recorded  # killed in the middle

    again = FaceSystem(killed, embedder=embedder).scan([folder])
    assert again.files["new"] == PHOTOS - recorded and again.files["unchanged"] == recorded
    whole = FaceSystem(tmp_path / "whole", embedder=embedder).scan([folder])
    assert whole.files["new"] == PHOTOS

    resumed, uninterrupted = stored_faces(killed), stored_faces(tmp_path / "whole")
    assert set(resumed) == set(uninterrupted) and len(resumed) == PHOTOS
    assert sum(len(faces) for faces in uninterrupted.values()) >= PHOTOS
    different = [path for path in uninterrupted if not same_faces(resumed[path], uninterrupted[path])]
    assert different == []
    assert all(same_faces(resumed[path], faces) for path, faces in partial.items())  # what was recorded stayed


def library_ids(gallery) -> dict[str, list[int]]:
    """file name -> its library face ids (names are unique in the folder)."""
    with Gallery(gallery).open() as store:
        faces = store.library_faces()
    out: dict[str, list[int]] = {}
    for face in faces:
        out.setdefault(os.path.basename(face.path), []).append(face.id)
    return out


def test_a_scan_killed_while_recording_moves_run_again_keeps_every_face(folder, tmp_path, embedder):
    """Every sub-folder renamed, the scan that records the moves killed after its first one: the
    next scan records the rest as moves too, and every file keeps its faces (ids and names)."""
    import shutil

    from facesys.system import FaceSystem

    root = shutil.copytree(folder, tmp_path / "photos")
    gallery = tmp_path / "gallery"
    system = FaceSystem(gallery, embedder=embedder)
    assert system.scan([root]).files["new"] == PHOTOS
    before = library_ids(gallery)
    with Gallery(gallery).open() as store:
        first = store.library_faces()[0]
    system.name_faces([first.id], "Named Before")
    for sub in sorted(root.iterdir()):
        sub.rename(root / f"renamed-{sub.name}")

    scan_killed_after(gallery, root, "status", "moved")
    with Gallery(gallery).open() as store:
        done = sum("/renamed-" in photo.path for photo in store.library_photos())
        assert len(store.library_photos()) == PHOTOS  # nothing forgotten, nothing twice
    assert 1 <= done <= PHOTOS, done

    again = system.scan([root])
    assert (again.files["moved"], again.files["forgotten"], again.files["new"], again.processed) == (PHOTOS - done, 0, 0, 0)
    assert library_ids(gallery) == before
    with Gallery(gallery).open() as store:
        (named,) = store.library_faces([first.id])
        assert (named.person, named.assigned, named.enrolled_face_id is not None) == ("Named Before", "user", True)
        assert all("/renamed-" in photo.path for photo in store.library_photos())
