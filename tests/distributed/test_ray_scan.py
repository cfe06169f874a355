"""``scan`` on a local Ray gives the single-process answers, and a second run writes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import FacesysError
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
def both(tmp_path_factory, scan_ray, photos, enrolled_photo):
    """The same folder scanned in one process and on the session's local Ray."""
    tmp = tmp_path_factory.mktemp("ray-scan")
    here = scanned(tmp, photos, enrolled_photo, "here", None)
    on_ray = scanned(tmp, photos, enrolled_photo, "ray", "local")
    return tmp, here, on_ray


def test_a_ray_scan_finds_the_same_faces_embeddings_and_names(both):
    tmp, (_, here, here_results), (_, on_ray, ray_results) = both
    assert on_ray.to_dict() == here.to_dict()
    assert here.files["new"] >= 18 and here.files["error"] == 1 and here.automatic >= 3
    outcome = lambda results: sorted((r.path, r.status, r.faces, r.automatic, r.error) for r in results)  # noqa: E731
    assert outcome(ray_results) == outcome(here_results)  # the broken file's one-line error too
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


def test_the_cli_scans_on_ray_and_says_what_it_read(scan_ray, photos, tmp_path):
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
    assert len(lines) == 1 and 'Ray is not installed: in the facesys checkout, pip install -e ".[ray]"' in lines[0], result.output


def test_ctrl_c_stops_a_ray_scan_its_actors_go_and_a_rerun_completes_it(scan_ray, photos, enrolled_photo, tmp_path):
    system = FaceSystem(tmp_path / "g")
    seen = []

    def interrupt(result) -> None:
        seen.append(result)
        if result.status == "new":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        system.scan([photos], on_result=interrupt, ray="local")
    deadline = time.monotonic() + 30
    while scan_ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the killed actors give their CPUs back
    assert scan_ray.available_resources().get("CPU", 0) == 2
    with Gallery(tmp_path / "g").open() as store:
        recorded = {photo.path for photo in store.library_photos()}
    assert recorded and len(recorded) < 21  # stopped part-way; what was recorded is whole
    rest = system.scan([photos], ray="local")
    assert rest.files["new"] + rest.files["error"] == 21 - len(recorded) and rest.files["unchanged"] == len(recorded)


def test_every_ray_process_listens_on_the_loopback_address_only(scan_ray):
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    ours = {"gcs_server", "raylet"}
    lines = subprocess.run([ss, "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    listening = [line.split()[3] for line in lines if any(f'(("{name}"' in line for name in ours) or '(("ray::' in line]
    assert listening, lines  # ss shows the processes (it runs as their user)
    assert all(address.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]") for address in listening), listening


def test_nothing_answering_at_a_ray_address_is_one_line_within_seconds(tmp_path, photos):
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(tmp_path / "g"), "scan", str(photos), "--ray", "127.0.0.1:1"]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)  # a process that has not joined Ray
    assert result.returncode == 2 and time.monotonic() - start < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ray address 127.0.0.1:1: cannot join (nothing answers there" in lines[0], result.stderr
    assert not (tmp_path / "g").exists()


def test_another_address_than_the_ray_this_process_joined_is_one_line(scan_ray, tmp_path, photos):
    result = CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "scan", str(photos), "--ray", "127.0.0.1:1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ray address 127.0.0.1:1: this process has already joined the Ray at 127.0.0.1:" in lines[0]


def test_pipeline_actors_that_cannot_start_stop_the_scan_with_one_line(scan_ray, photos, tmp_path, monkeypatch):
    from facesys.distributed import shipping

    packed = shipping.pack
    monkeypatch.setattr(shipping, "pack", lambda embedder: (replace(packed(embedder)[0], base="no-such-model"), b""))
    with pytest.raises(FacesysError, match=r"^ray: the pipeline actors failed \(.*no-such-model") as failure:
        FaceSystem(tmp_path / "g").scan([photos], ray="local")
    assert "\n" not in str(failure.value)
    with Gallery(tmp_path / "g").open() as store:
        assert not [photo for photo in store.library_photos() if photo.faces]  # no face written


def test_a_killed_driver_leaves_a_gallery_that_a_rerun_completes(scan_ray, photos, enrolled_photo, tmp_path):
    """``scan --ray`` killed with SIGKILL after its first recorded file (its own local Ray dies with
    it): every recorded file is whole, and a re-run on Ray records the rest, each photo once, with
    the faces of a scan never interrupted."""
    import signal

    from tests.distributed.conftest import ENROLLED

    location = tmp_path / "g"
    FaceSystem(location).enroll(ENROLLED, [enrolled_photo])
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(location), "scan", str(photos), "--json", "--ray"]
    driver = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ | {"FACESYS_THREADS": "1"}
    )
    try:
        for line in driver.stdout:  # the first file recorded: the scan is under way
            if '"event": "file"' in line:
                break
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=60)
    with Gallery(location).open() as store:
        recorded = {photo.path: photo.faces for photo in store.library_photos()}
        assert all(len([f for f in store.library_faces() if f.path == path]) == count for path, count in recorded.items())
    assert 1 <= len(recorded) < 21
    rest = FaceSystem(location).scan([photos], ray="local")
    assert rest.files["unchanged"] == len(recorded) and rest.files["new"] + rest.files["error"] == 21 - len(recorded)
    scanned(tmp_path, photos, enrolled_photo, "here", None)  # the same photos, never interrupted
    killed, whole = library(location), library(tmp_path / "here")
    assert killed.keys() == whole.keys()
    for path, faces in whole.items():
        assert len(killed[path]) == len(faces), path
        for (_, vector, person), (_, vector2, person2) in zip(
            sorted(faces, key=lambda f: tuple(f[0])), sorted(killed[path], key=lambda f: tuple(f[0])), strict=True
        ):
            np.testing.assert_allclose(vector, vector2, atol=1e-4, err_msg=path)
            assert person == person2, path
