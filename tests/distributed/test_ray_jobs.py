"""``enroll DIR``, ``identify DIR --json``, ``gallery reindex`` and ``eval pairs|identify|cluster``
with ``--ray`` give the single-process answers (same photos, faces, names; embeddings within float
tolerance), and a second ``enroll --ray`` writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.gallery.gallery import Gallery
from tests.distributed.conftest import PEOPLE

pytest.importorskip("ray")

TIMINGS = ("embed_seconds", "cluster_seconds")


ANSWERED: list[str] = []  # the actor method of every batch answered (the spy below)


@pytest.fixture(autouse=True)
def batches_answered(monkeypatch) -> None:
    """Every batch the actor pool answers is counted in ANSWERED (a ``--ray`` job must use the actors)."""
    from facesys.distributed.pool import ActorPool

    in_order = ActorPool.in_order

    def counted(self, method, batches, *args):
        for answer in in_order(self, method, batches, *args):
            ANSWERED.append(method)
            yield answer

    monkeypatch.setattr(ActorPool, "in_order", counted)


def cli(*args: str):
    """The command's result; a ``--ray`` run must have had batches answered by actors, any other none."""
    before = len(ANSWERED)
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert (len(ANSWERED) > before) == ("--ray" in args), (args, len(ANSWERED) - before)
    return result


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def stored(location: Path) -> tuple[dict, dict]:
    """(enrolled faces: (person, photo sha256) -> (box, embedding, crop); library faces: (path, box
    rounded) -> (person, embedding)) of a gallery."""
    with Gallery(location).open() as store:
        ids, vectors, _ = store.embeddings()
        by_id = dict(zip(ids.tolist(), vectors, strict=True))
        crops = {face_id: jpeg for face_id, jpeg, _, _ in store.crops()}
        enrolled = {
            (face.person, face.image_sha256): (np.asarray(face.box), by_id[face.id], crops[face.id])
            for name, _ in store.people()
            for face in store.faces(name)
        }
        library = store.library_faces()
        found = store.library_vectors([face.id for face in library]) if library else []
        scanned = {
            (face.path, tuple(np.round(face.box))): (face.person, vector) for face, vector in zip(library, found, strict=True)
        }
    return enrolled, scanned


def assert_close(a, b, where: str = "") -> None:
    """JSON documents equal, numbers within 1e-6."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-6), where
    else:
        assert a == b, where


def assert_same_faces(here: dict, there: dict) -> None:
    assert here.keys() == there.keys()
    for key, values in here.items():
        for mine, theirs in zip(values, there[key], strict=True):
            if isinstance(mine, np.ndarray) and mine.dtype == np.float32:
                np.testing.assert_allclose(mine, theirs, atol=1e-4, err_msg=str(key))
            elif isinstance(mine, np.ndarray):
                assert np.abs(mine - theirs).max() <= 1.0, key
            else:
                assert mine == theirs, key


@pytest.fixture(scope="module")
def people(tmp_path_factory, photos) -> Path:
    """A folder per person (the ray photos' people) with one broken photo among Tony Blair's."""
    folder = tmp_path_factory.mktemp("ray-people") / "people"
    for person in PEOPLE:
        shutil.copytree(photos / person, folder / person)
    (folder / "Tony_Blair" / "broken.jpg").write_bytes(b"not a photo")
    return folder


def test_enroll_on_ray_enrolls_what_one_process_does_and_a_rerun_writes_nothing(scan_ray, people, tmp_path):
    here = cli("--gallery", tmp_path / "here", "enroll", people, "--json")
    there = cli("--gallery", tmp_path / "ray", "enroll", people, "--json", "--ray")
    assert here.exit_code == there.exit_code == 2, there.output  # the broken photo: its one error, the others enrolled
    events = lambda result: sorted(  # noqa: E731
        (e["source"], e["name"], e["status"], e.get("reason")) for e in json_lines(result.output) if e.get("event") == "photo"
    )
    assert events(there) == events(here)
    assert sum(status == "enrolled" for _, _, status, _ in events(here)) == 20
    before = stored(tmp_path / "ray")
    assert_same_faces(stored(tmp_path / "here")[0], before[0])

    again = cli("--gallery", tmp_path / "ray", "enroll", people, "--json", "--ray")
    summary = json_lines(again.output)[-1]
    assert (summary["enrolled"], summary["duplicate"], summary["error"]) == (0, 20, 1), again.output
    assert_same_faces(before[0], stored(tmp_path / "ray")[0])


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, people) -> Path:
    """Two people enrolled (two photos each), the rest of ``people`` scanned into the library, here."""
    location = tmp_path_factory.mktemp("ray-gallery") / "gallery"
    for person in ("Tony_Blair", "Gerhard_Schroeder"):
        photos = sorted((people / person).glob(f"{person}_*.jpg"))[:2]
        assert cli("--gallery", location, "enroll", "--name", person.replace("_", " "), *photos).exit_code == 0
    assert cli("--gallery", location, "scan", people).exit_code == 3  # the broken photo
    return location


def test_identify_a_folder_on_ray_answers_as_one_process(scan_ray, gallery, people, tmp_path):
    import cv2

    clip = tmp_path / "clip" / "clip.avi"  # a video: its frames are decoded by the driver and sent
    clip.parent.mkdir()
    frame = cv2.resize(cv2.imread(str(next((people / "Tony_Blair").glob("*_0003.jpg")))), (250, 250))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (250, 250))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    args = ("--gallery", gallery, "identify", "--json", "--every", "2", people, clip.parent)
    here, there = cli(*args), cli(*args, "--ray")
    assert here.exit_code == there.exit_code == 2, there.output  # the broken photo
    lines, ray_lines = json_lines(here.output), json_lines(there.output)
    assert len(lines) == len(ray_lines) == 20 + 2 + 1  # 20 photos, 2 frames, the summary (errors go to stderr)
    assert there.stderr == here.stderr and "broken.jpg" in here.stderr
    names = lambda rows: [[face["name"] for face in row.get("faces", [])] for row in rows]  # noqa: E731
    assert names(ray_lines) == names(lines) and sum(name == "Tony Blair" for row in names(lines) for name in row) >= 5
    for line, ray_line in zip(lines, ray_lines, strict=True):
        assert {k: v for k, v in line.items() if k != "faces"} == {k: v for k, v in ray_line.items() if k != "faces"}
        for face, ray_face in zip(line.get("faces", []), ray_line.get("faces", []), strict=True):
            assert face["distance"] == pytest.approx(ray_face["distance"], abs=1e-4)


def test_reindex_on_ray_re_embeds_every_face_as_one_process(scan_ray, gallery, tmp_path):
    here, there = shutil.copytree(gallery, tmp_path / "here"), shutil.copytree(gallery, tmp_path / "ray")
    assert cli("--gallery", here, "gallery", "reindex", "--model", "sface").exit_code == 0
    result = cli("--gallery", there, "gallery", "reindex", "--model", "sface", "--ray")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("re-embedded 4 faces and ")
    (enrolled, library), (ray_enrolled, ray_library) = stored(here), stored(there)
    assert_same_faces(enrolled, ray_enrolled)
    assert_same_faces(library, ray_library)
    assert next(iter(ray_enrolled.values()))[1].shape == (128,)  # sface's embeddings, not dlib's


def eval_runs(people: Path, tmp_path: Path) -> dict[str, list[str]]:
    """The three evaluations' arguments on ``people`` (pairs: every same-person pair of two photos,
    and as many different-person pairs)."""
    files = {person: sorted(p.relative_to(people) for p in (people / person).glob(f"{person}_*.jpg")) for person in PEOPLE}
    names = list(files)
    rows = ["file_a,file_b,same"]
    for i, person in enumerate(names):
        other = files[names[(i + 1) % len(names)]]
        rows += [f"{files[person][0]},{files[person][k]},1" for k in (1, 2)]
        rows += [f"{files[person][0]},{other[k]},0" for k in (1, 2)]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    return {
        "pairs": ["eval", "pairs", "--pairs", pairs, "--data", people, "--json"],
        "identify": ["eval", "identify", "--data", people, "--enroll", "2", "--min-photos", "4", "--json"],
        "cluster": ["eval", "cluster", "--data", people, "--json"],
    }


@pytest.mark.parametrize("kind", ["pairs", "identify", "cluster"])
def test_eval_on_ray_reports_what_one_process_does(scan_ray, people, tmp_path, kind):
    args = eval_runs(people, tmp_path)[kind]
    here, there = cli(*args), cli(*args, "--ray")
    assert here.exit_code == there.exit_code == 0, there.output
    report, ray_report = json.loads(here.stdout), json.loads(there.stdout)
    for timing in TIMINGS:
        report.pop(timing, None), ray_report.pop(timing, None)
    assert_close(ray_report, report)
    assert report.get("unreadable_images", 1) >= (1 if kind == "cluster" else 0)
