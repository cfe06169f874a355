"""The photo library on the command line: scan (progress, one line per bad file, --json, exit
codes), cluster, clusters (--json, --sheet), name, face name|unname|remove, find, and one-line
errors for unknown clusters, faces and people."""

from __future__ import annotations

import json
import shutil

import cv2
from click.testing import CliRunner

from facesys.cli import main
from facesys.gallery.gallery import Gallery
from facesys.library.sheet import GAP, TILE
from tests.conftest import data_path


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), *args])


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("facesys: error: "), result.output
    return lines[0]


def test_scan_reports_each_bad_file_on_one_line_and_goes_on(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted(data_path("lfw", "Aaron_Peirsol").glob("*.jpg"))[0], folder / "good.jpg")
    for name in ("truncated.jpg", "multipage_rgb.tif"):
        shutil.copy(data_path("bad_inputs", "odd_format", name), folder / name)
    (folder / "empty.png").write_bytes(b"")
    result = run(tmp_path / "g", "scan", str(folder))
    assert result.exit_code == 3, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("facesys: error: ")]
    good = {str((folder / "good.jpg").resolve())}
    assert len(errors) == 3 and not any(path in line for line in errors for path in good), errors
    assert all(str(folder.resolve()) in line for line in errors) and "Traceback" not in result.output
    assert "read 1 file (1 new, 0 changed)" in result.stdout and "3 unreadable" in result.stdout
    again = run(tmp_path / "g", "scan", "--json", str(folder))
    assert again.exit_code == 3
    lines = json_lines(again.stdout)
    assert [line["status"] for line in lines if line["event"] == "file"] == ["error"] * 3  # unchanged files print nothing
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["processed"] == 0 and summary["files"]["unchanged"] == 1
    assert Gallery(tmp_path / "g").stats()["library_photos"] == 4


def test_cluster_clusters_name_find_and_face_commands(scanned, tmp_path):
    gallery = scanned.copy(tmp_path)
    runs = json_lines(run(gallery, "cluster", "--json").stdout)
    assert runs[0]["faces"] > 0 and runs[0]["new"] == 0  # clustered already: the ids stay
    sheet = tmp_path / "sheet.png"
    listed = run(gallery, "clusters", "--min-size", "2", "--json", "--sheet", str(sheet))
    assert listed.exit_code == 0, listed.output
    clusters = json_lines(listed.stdout)[0]["clusters"]
    assert clusters and all(c["size"] >= 2 and c["size"] == len(c["faces"]) for c in clusters)
    picture = cv2.imread(str(sheet))
    assert picture.shape[0] == len(clusters) * (TILE + GAP) + GAP

    kit = sorted(p for p in scanned.files_of("Kit Harington") if len(scanned.labels[p]) == 1)[0]
    with Gallery(gallery).open() as store:
        (face,) = [f for f in store.library_faces() if f.path == kit]
    named = run(gallery, "name", str(face.cluster), "Kit Harington")
    assert named.exit_code == 0 and named.stdout.startswith(f"named cluster {face.cluster} Kit Harington: "), named.output
    found = json_lines(run(gallery, "find", "--json", "kit harington").stdout)[0]
    assert found["name"] == "Kit Harington" and kit in {photo["file"] for photo in found["photos"]}
    assert run(gallery, "gallery", "list", "--json").stdout.count("Kit Harington") == 1

    unnamed = json_lines(run(gallery, "face", "unname", "--json", str(face.id)).stdout)[0]
    assert unnamed["unnamed"] == [face.id]
    assert json_lines(run(gallery, "face", "name", "--json", str(face.id), "Kit Harington").stdout)[0]["faces"] == [face.id]
    assert json_lines(run(gallery, "face", "remove", "--json", str(face.id)).stdout)[0] == {"schema_version": 1, "removed": 1}
    assert run(gallery, "gallery", "check").exit_code == 0


def test_unknown_clusters_faces_and_people_are_one_line_errors(scanned, tmp_path):
    gallery = scanned.copy(tmp_path)
    assert "no cluster 99999" in one_error_line(run(gallery, "name", "99999", "Somebody"))
    assert "no library face #99999" in one_error_line(run(gallery, "face", "remove", "99999"))
    assert "no library face #99999" in one_error_line(run(gallery, "face", "name", "99999", "Somebody"))
    assert "no person named 'Nobody'" in one_error_line(run(gallery, "find", "Nobody"))
    assert "reserved" in one_error_line(run(gallery, "face", "name", "1", "unknown"))
    assert "must be a distance" in one_error_line(run(gallery, "cluster", "--threshold", "3"))
    assert ".png" in one_error_line(run(gallery, "clusters", "--sheet", str(tmp_path / "sheet.jpg")))
    assert Gallery(gallery).people() == Gallery(scanned.gallery).people()


def test_ids_past_what_a_gallery_stores_are_one_line_errors(scanned, tmp_path):
    """2**63 overflowed SQLite's integers: a traceback from `name`, now a usage error naming the range."""
    gallery = scanned.copy(tmp_path)
    big = str(2**63)
    for args in (("name", big, "Bob"), ("face", "remove", big), ("face", "name", "1", big, "Bob"), ("face", "unname", big)):
        line = one_error_line(run(gallery, *args))
        assert big in line and "9223372036854775807" in line and "Traceback" not in line, line
    assert Gallery(gallery).people() == Gallery(scanned.gallery).people()
