"""What a new user hit (issue 23, hole 9): Ctrl-C of ``enroll --json`` reports what was committed,
``identify DIR`` searches sub-folders like ``scan``, an empty scan says no photos were found, one
hint per error, ``find`` by part of a name, and install lines that work from a checkout."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.gallery import Gallery
from facesys.models import ModelInfo
from tests.conftest import ROOT, data_path
from tests.gallery.conftest import MODEL, face


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), *args])


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(params=["sqlite", "postgres"])
def gallery_location(request, tmp_path) -> str:
    """A gallery folder, or a database of the throwaway PostgreSQL server (skipped without one)."""
    if request.param == "sqlite":
        return str(tmp_path / "g")
    return request.getfixturevalue("postgres_cluster").create_database()


# -- Ctrl-C of enroll ---------------------------------------------------------------------------


def test_an_interrupted_enrollment_reports_the_photo_whose_commit_was_under_way(gallery_location, embedder):
    """The interrupt lands right after a commit, before its answer is recorded (87 reported, 88 stored)."""
    from facesys.enroll import EnrollInterrupted
    from facesys.system import FaceSystem

    photos = sorted(data_path("lfw", "George_W_Bush").glob("*.jpg"))[:3]
    system = FaceSystem(gallery_location, embedder=embedder)
    commit = system.gallery.add_faces
    calls = []

    def commit_then_interrupt(*args, **kwargs):
        ids = commit(*args, **kwargs)
        calls.append(ids)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ids

    system.gallery.add_faces = commit_then_interrupt
    heard = []
    with pytest.raises(EnrollInterrupted) as stopped:
        system.enroll("George W Bush", photos, on_result=heard.append)
    report = stopped.value.report
    stored = len(Gallery(gallery_location).faces("George W Bush"))
    assert stored == 2 and report.count("enrolled") == 2 and [r.status for r in heard] == ["enrolled", "enrolled"]
    assert all(r.face_id for r in heard)


@pytest.mark.slow
def test_ctrl_c_of_enroll_json_reports_what_the_store_committed(tmp_path):
    photos = sorted(data_path("lfw", "George_W_Bush").glob("*.jpg"))[:40]
    for trial, after in enumerate((2, 5, 9)):  # SIGINT once this many photos were reported, a little later each time
        gallery = tmp_path / f"g{trial}"
        command = [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), "enroll", "--json", "--name", "George W Bush"]
        # Ctrl-C's default action, even where this test runs in the background (a shell starts background
        # jobs with SIGINT ignored, and Python then leaves it ignored, as a CLI under nohup should)
        process = subprocess.Popen(
            [*command, *map(str, photos)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        lines = []
        try:
            while len(lines) < after:
                line = process.stdout.readline()
                assert line, process.stderr.read()
                lines.append(line)
            time.sleep(0.05 * trial)
            process.send_signal(signal.SIGINT)
            rest, err = process.communicate(timeout=120)
        finally:
            process.kill()
        answers = json_lines("".join(lines) + rest)
        summary = answers[-1]
        stored = len(Gallery(gallery).faces("George W Bush"))
        enrolled_lines = sum(a.get("status") == "enrolled" for a in answers if a["event"] == "photo")
        assert process.returncode == 130 and "Traceback" not in err, err
        assert summary["event"] == "summary" and summary["interrupted"] is True, answers[-3:]
        assert summary["enrolled"] == stored == enrolled_lines, (summary, stored, enrolled_lines)
        listed = json_lines(run(gallery, "gallery", "list", "--json").stdout)
        assert sum(p["faces"] for p in listed[0]["people"]) == stored, listed


# -- one walking rule ---------------------------------------------------------------------------


def test_identify_searches_sub_folders_like_scan_and_skips_hidden_ones(tmp_path):
    from facesys.library.files import walk
    from facesys.vision.media import expand_inputs

    folder = tmp_path / "photos"
    for relative in ("a.jpg", "2019/b.jpg", "2019/deep/c.png", "_sorted/d.jpg", ".cache/e.jpg", "2019/_f.jpg", "notes.txt"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(b"x")
    (folder / "linked").symlink_to(folder / "2019")  # links to folders are not followed (each photo once)
    expected = {folder / "a.jpg", folder / "2019" / "b.jpg", folder / "2019" / "deep" / "c.png"}
    found = expand_inputs([folder])
    assert set(found.files) == expected and len(found.files) == 3
    assert [path.name for path, _ in found.skipped] == ["notes.txt"]
    assert {file.path for file in walk([folder.resolve()], videos=False).files} == {p.resolve() for p in expected}


def test_identify_of_a_folder_names_the_faces_in_its_sub_folders(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    assert run(gallery, "enroll", "--name", "Joe Biden", str(fr / "joe_biden" / "biden.jpg")).exit_code == 0
    (tmp_path / "photos" / "2019" / "summer").mkdir(parents=True)
    shutil.copy(fr / "joe_biden" / "biden2.jpg", tmp_path / "photos" / "2019" / "summer" / "b.jpg")
    result = run(gallery, "identify", "--json", str(tmp_path / "photos"))
    assert result.exit_code == 0, result.output
    answers = json_lines(result.stdout)
    assert answers[0]["file"].endswith("summer/b.jpg") and [f["name"] for f in answers[0]["faces"]] == ["Joe Biden"]


# -- empty scan, doubled hints --------------------------------------------------------------------


def test_an_empty_scan_says_no_photos_were_found(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no photo")
    result = run(tmp_path / "g", "scan", str(empty))
    assert result.exit_code == 0 and f"no photos found under {empty}" in result.stdout, result.output
    assert "nothing new or changed" not in result.output


def test_a_missing_gallery_gets_one_hint(tmp_path):
    result = run(tmp_path / "nowhere", "gallery", "remove", "Bob")
    line = result.stderr.strip()
    assert result.exit_code == 2 and len(line.splitlines()) == 1, result.output
    assert line.count("(") == 1 and "--gallery DIR" in line and "enroll someone first" in line, line


# -- find by part of a name ---------------------------------------------------------------------


def test_find_matches_a_partial_name_ignoring_case_and_lists_candidates(gallery_location):
    gallery = gallery_location
    people = ["Salma Hayek", "Sally Field", "Sal", "Ann Smith"]
    Gallery(gallery).add_faces([(name, face(n)) for n, name in enumerate(people, 1)], ModelInfo(MODEL, "test-model", "0" * 64, 8))

    def found(query: str) -> str:
        result = run(gallery, "find", "--json", query)
        assert result.exit_code == 0, result.output
        return json_lines(result.stdout)[0]["name"]

    assert found("Salma") == found("salma") == found("HAYEK") == found("salma hayek") == "Salma Hayek"
    assert found("sal") == "Sal"  # an exact name wins over the names it begins
    assert found("smith") == "Ann Smith"
    several = run(gallery, "find", "Sall")
    assert found("Sall") == "Sally Field" and several.exit_code == 0
    ambiguous = run(gallery, "find", "s")
    line = ambiguous.stderr.strip()
    assert ambiguous.exit_code == 2 and len(line.splitlines()) == 1, ambiguous.output
    assert all(name in line for name in people) and "give the whole name" in line, line
    nobody = run(gallery, "find", "Zed")
    assert nobody.exit_code == 2 and "no person named 'Zed'" in nobody.stderr


# -- install lines --------------------------------------------------------------------------------


def test_every_install_line_works_from_a_checkout():
    """facesys is not on the package registry: no ``pip install`` line in README.md or docs/ asks
    the registry for it; each installs the checkout (``-e ".[postgres]"``) with extras that exist."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    checked = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in re.findall(r"pip3? install ([^\n#`&|;]*)", doc.read_text()):
            for target in (word.strip("\"'") for word in command.split() if not word.startswith("-")):
                assert not target.lower().startswith("facesys"), f"{doc.name}: pip install {command.strip()}: not on the registry"
                if target.startswith("."):
                    checked += 1
                    named = re.fullmatch(r"\.(?:\[([a-z0-9,_-]+)\])?", target)
                    assert named and set(filter(None, (named[1] or "").split(","))) <= extras, f"{doc.name}: {target}"
    assert checked >= 2  # the quick start's .[dev] and PostgreSQL's .[postgres]
