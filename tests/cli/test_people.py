"""enroll / verify / identify / gallery on the command line: outputs, JSON schema, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.config import DEFAULT_MODEL
from tests.conftest import data_path


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), *args])


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory):
    """people/<name>/*.jpg with two of face_recognition's people, plus folders that are not people."""
    fr = data_path("face_recognition")
    root = tmp_path_factory.mktemp("photos") / "people"
    for person, files in {"Barack Obama": ["obama.jpg", "obama2.jpg"], "Joe Biden": ["biden.jpg", "biden2.jpg"]}.items():
        (root / person).mkdir(parents=True)
        folder = "barack_obama" if "Obama" in person else "joe_biden"
        for name in files:
            shutil.copy(fr / folder / name, root / person / name)
    (root / "_unsorted").mkdir()
    shutil.copy(fr / "joe_biden" / "biden.jpg", root / "_unsorted" / "x.jpg")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, people_dir):
    path = tmp_path_factory.mktemp("cli") / "gallery"
    result = run(path, "enroll", "--json", str(people_dir))
    assert result.exit_code == 0, result.output
    return path


def test_enroll_folder_streams_json_and_summary(gallery):
    lines = json_lines(run(gallery, "gallery", "list", "--json").output)
    assert lines == [{"schema_version": 1, "people": [{"name": "Barack Obama", "faces": 2}, {"name": "Joe Biden", "faces": 2}]}]


def test_enroll_json_lines(tmp_path, people_dir):
    result = run(tmp_path / "g", "enroll", "--json", "--name", "Joe Biden", str(people_dir / "Joe Biden"))
    lines = json_lines(result.output)
    photos = [line for line in lines if line["event"] == "photo"]
    assert len(photos) == 2 and all(p["status"] == "enrolled" and isinstance(p["face_id"], int) for p in photos)
    assert lines[-1] == {"schema_version": 1, "event": "summary", "enrolled": 2, "duplicate": 0, "rejected": 0, "error": 0}
    again = json_lines(run(tmp_path / "g", "enroll", "--json", "--name", "Joe Biden", str(people_dir / "Joe Biden")).output)
    assert again[-1]["duplicate"] == 2 and again[-1]["enrolled"] == 0


def test_rejected_photos_exit_3_with_reasons(tmp_path):
    coffee = data_path("bad_inputs", "no_face", "coffee.png")
    face = data_path("face_recognition", "joe_biden", "biden.jpg")
    result = run(tmp_path / "g", "enroll", "--name", "Joe", str(face), str(coffee))
    assert result.exit_code == 3
    assert "rejected" in result.output and "coffee.png" in result.output and "no face found" in result.output
    assert "enrolled 1 photo(s) of 1 person(s); rejected 1 (1 no face found)" in result.output


def test_bare_enroll_uses_the_gallery_people_folder_and_sync(tmp_path, people_dir):
    gallery = tmp_path / "gallery"
    shutil.copytree(people_dir, gallery / "people")
    assert run(gallery, "enroll").exit_code == 0
    shutil.copy(data_path("face_recognition", "joe_biden", "biden.jpg"), gallery / "people" / "Joe Biden" / "copy.jpg")
    second = run(gallery, "enroll", "--json")
    assert json_lines(second.output)[-1]["duplicate"] == 5  # the copy has the same bytes as biden.jpg
    (gallery / "people" / "Barack Obama" / "obama2.jpg").unlink()
    third = run(gallery, "enroll", "--sync")
    assert third.exit_code == 0, third.output
    assert dict((p["name"], p["faces"]) for p in json_lines(run(gallery, "gallery", "list", "--json").output)[0]["people"]) == {
        "Barack Obama": 1,
        "Joe Biden": 2,
    }


def test_verify_exit_codes_and_json(gallery):
    fr = data_path("face_recognition")
    same = run(gallery, "verify", str(fr / "barack_obama" / "obama.jpg"), str(fr / "barack_obama" / "obama3.jpg"))
    assert same.exit_code == 0 and same.output.startswith("same person")
    different = run(gallery, "verify", "--json", str(fr / "barack_obama" / "obama.jpg"), str(fr / "joe_biden" / "biden.jpg"))
    assert different.exit_code == 1
    (document,) = json_lines(different.output)
    assert document["schema_version"] == 1 and document["same"] is False
    assert set(document) >= {"model", "distance", "threshold", "threshold_source", "a", "b"}
    assert document["a"]["faces_found"] >= 1 and len(document["a"]["box"]) == 4
    forced = run(
        gallery, "verify", "--threshold", "1.9", str(fr / "barack_obama" / "obama.jpg"), str(fr / "joe_biden" / "biden.jpg")
    )
    assert forced.exit_code == 0 and "argument" in forced.output


def test_identify_json_per_image_and_unknown_is_exit_0(gallery, tmp_path):
    multi = data_path("face_recognition", "_multi_face")
    stranger = data_path("lfw", "AJ_Cook", "AJ_Cook_0001.jpg")
    result = run(gallery, "identify", "--json", str(multi / "two_people.jpg"), str(stranger))
    assert result.exit_code == 0, result.output
    first, second, summary = json_lines(result.output)
    assert summary["summary"] == {"files": 2, "skipped": [], "errors": 0}
    assert sorted(f["name"] for f in first["faces"]) == ["Barack Obama", "Joe Biden"]
    assert second["faces"][0]["name"] is None and second["faces"][0]["candidates"]
    out = tmp_path / "annotated.jpg"
    annotated = run(gallery, "identify", str(multi / "two_people.jpg"), "--annotate", str(out))
    assert annotated.exit_code == 0 and out.stat().st_size > 10_000


def test_identify_reads_video_frames(gallery, tmp_path):
    import cv2

    frame = cv2.imread(str(data_path("face_recognition", "_multi_face", "two_people.jpg")))
    frame = cv2.resize(frame, (640, 360))
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    for _ in range(7):
        writer.write(frame)
    writer.release()
    result = run(gallery, "identify", "--json", "--every", "3", str(path))
    lines = [line for line in json_lines(result.output) if "faces" in line]
    assert [line["frame"] for line in lines] == [0, 3, 6]
    assert all(sorted(f["name"] for f in line["faces"]) == ["Barack Obama", "Joe Biden"] for line in lines)


def test_gallery_show_rename_remove_stats(tmp_path, people_dir):
    gallery = tmp_path / "g"
    run(gallery, "enroll", str(people_dir))
    shown = json_lines(run(gallery, "gallery", "show", "--json", "Joe Biden").output)[0]
    assert shown["name"] == "Joe Biden" and len(shown["faces"]) == 2
    assert run(gallery, "gallery", "rename", "Joe Biden", "Joseph R. Biden").exit_code == 0
    stats = json_lines(run(gallery, "gallery", "stats", "--json").output)[0]
    assert stats["people"] == 2 and stats["faces"] == 4 and stats["model_id"].startswith(f"{DEFAULT_MODEL}@")
    index = json_lines(run(gallery, "gallery", "index", "--json").output)[0]
    assert (index["kind"], index["faces"], index["forced"]) == ("flat", 4, "auto")
    index = json_lines(run(gallery, "gallery", "index", "--kind", "hnsw", "--json").output)[0]
    assert (index["kind"], index["faces"], index["forced"]) == ("hnsw", 4, "hnsw")
    found = json_lines(run(gallery, "identify", "--json", str(people_dir / "Barack Obama" / "obama.jpg")).output)
    assert found[0]["faces"][0]["name"] == "Barack Obama"
    assert run(gallery, "gallery", "remove", "Joseph R. Biden").exit_code == 0
    missing = run(gallery, "gallery", "show", "Joseph R. Biden")
    assert missing.exit_code == 2 and "no person named" in missing.output


def test_gallery_commands_do_not_import_torch(gallery):
    code = (
        "import sys; from facesys.cli import main\n"
        f"for command in ('list', 'index', 'stats'):\n"
        f"    try: main(['--gallery', {str(gallery)!r}, 'gallery', command])\n"
        "    except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Barack Obama" in result.stdout


def test_bad_inputs_exit_2_one_line_and_leave_the_gallery_unchanged(gallery, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    bad = [
        tmp_path / "empty.jpg",
        tmp_path / "text.jpg",
        tmp_path / "missing.jpg",
        tmp_path,
        data_path("bad_inputs", "odd_format", "truncated.jpg"),
        data_path("bad_inputs", "odd_format", "multipage_rgb.tif"),
    ]
    good = data_path("face_recognition", "joe_biden", "biden.jpg")
    before = json_lines(run(gallery, "gallery", "stats", "--json").output)[0]
    for path in bad:
        for args in (["identify", str(path)], ["verify", str(path), str(good)], ["enroll", "--name", "X", str(path)]):
            if args[0] != "verify" and path == tmp_path:
                continue  # a folder is a valid identify/enroll input (the images in it)
            result = run(gallery, *args)
            assert result.exit_code == 2, (args, result.output)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("facesys: error: ") and "Traceback" not in result.stderr, (
                args,
                result.stderr,
            )
            assert str(path) in lines[0] or path.name in lines[0]
    after = json_lines(run(gallery, "gallery", "stats", "--json").output)[0]
    assert {k: v for k, v in after.items() if k != "database_bytes"} == {k: v for k, v in before.items() if k != "database_bytes"}
