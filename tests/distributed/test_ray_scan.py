"""``scan`` on a local Ray gives the single-process answers, and a second run writes nothing."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.gallery.gallery import Gallery
from facesys.system import FaceSystem
from tests.distributed.conftest import ENROLLED

pytest.importorskip("ray")


def library(location) -> dict[str, list[tuple]]:
    """Photo path -> its faces as (box, embedding, person), in stored order."""
    with Gallery(location).open() as store:
        faces = store.library_faces()
        vectors = store.library_vectors([face.id for face in faces]) if faces else []
        out: dict[str, list[tuple]] = {photo.path: [] for photo in store.library_photos()}
        for face, vector in zip(faces, vectors, strict=True):
            out[face.path].append((np.asarray(face.box), vector, face.person))
        return out


def scanned(tmp_path, photos, enrolled_photo, name: str, ray: str | None):
    """A gallery with ENROLLED enrolled, then ``photos`` scanned (on ``ray`` or here): (system, report, results)."""
    system = FaceSystem(tmp_path / name)
    system.enroll(ENROLLED, [enrolled_photo])
    results = []
    report = system.scan([photos], on_result=results.append, ray=ray)
    return system, report, results


@pytest.fixture(scope="module")
def both(tmp_path_factory, local_ray, photos, enrolled_photo):
    """The same folder scanned in one process and on the session's local Ray."""
    tmp = tmp_path_factory.mktemp("ray-scan")
    here = scanned(tmp, photos, enrolled_photo, "here", None)
    on_ray = scanned(tmp, photos, enrolled_photo, "ray", "local")
    return tmp, here, on_ray


def test_a_ray_scan_finds_the_same_faces_embeddings_and_names(both):
    tmp, (_, here, _), (_, on_ray, ray_results) = both
    assert on_ray.to_dict() == here.to_dict()
    assert here.files["new"] >= 18 and here.files["error"] == 1 and here.automatic >= 3
    assert [r.error for r in ray_results if r.status == "error"] == [
        next(r.error for r in ray_results if r.path.endswith("broken.jpg"))
    ]
    single, distributed = library(tmp / "here"), library(tmp / "ray")
    assert single.keys() == distributed.keys()
    for path in single:
        assert len(single[path]) == len(distributed[path]), path
        for (box, vector, person), (box2, vector2, person2) in zip(single[path], distributed[path], strict=True):
            assert np.abs(box - box2).max() <= 1.0, path
            np.testing.assert_allclose(vector, vector2, atol=1e-4, err_msg=path)
            assert person == person2, path


def state(location) -> tuple:
    """What a scan could change: the generation, the photos recorded and the library face ids."""
    with Gallery(location).open() as store:
        return store.generation, store.library_photos(), [face.id for face in store.library_faces()]


def test_a_second_ray_scan_writes_nothing(both, photos):
    tmp, _, (system, first, _) = both
    before = state(tmp / "ray")
    again = system.scan([photos], ray="local")
    assert again.processed == 0 and again.files["unchanged"] == first.files["new"]
    assert again.files["error"] == 1  # the broken file's recorded error, reported again without reading it
    assert state(tmp / "ray") == before


def test_a_touched_photo_is_known_by_its_content_and_nothing_is_written(both, photos, tmp_path):
    tmp, _, (_, first, _) = both
    copy = shutil.copytree(tmp / "ray", tmp_path / "gallery")
    touched = sorted(photos.glob("Tony_Blair/*.jpg"))[0]
    times = touched.stat()
    _, _, faces = state(copy)
    try:
        os.utime(touched, ns=(times.st_atime_ns, times.st_mtime_ns + 10**9))  # same bytes, another time
        report = FaceSystem(copy).scan([photos], ray="local")
    finally:
        os.utime(touched, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert report.processed == 0 and report.files["unchanged"] == first.files["new"]
    assert state(copy)[2] == faces  # the same faces, none written again


def test_the_cli_scans_on_ray_and_says_what_it_read(local_ray, photos, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for photo in sorted(photos.glob("Gerhard_Schroeder/*.jpg"))[:2]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    result = CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "scan", str(folder), "--ray"])
    assert result.exit_code == 0, result.output
    assert "read 2 files (2 new, 0 changed)" in result.output


@pytest.mark.parametrize("address", ["not an address", "photos"])
def test_a_bad_ray_address_is_one_line_and_changes_nothing(tmp_path, photos, address):
    result = CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "scan", str(photos), "--ray", address])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"ray address {address!r}: not an address" in lines[0], result.output
    assert not (tmp_path / "g").exists()


def test_without_ray_installed_a_ray_scan_is_one_line(tmp_path, photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "scan", str(photos), "--ray"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and 'Ray is not installed: pip install "facesys[ray]"' in lines[0], result.output
