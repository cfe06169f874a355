"""Holes found by attacking the gallery (issue "Reliability II"), each with its regression test:
an index of another database, the same photo twice in a run, names, degenerate images, a
forgetful --sync, stale files after a killed write, a NaN threshold, read-only galleries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facesys.cli import main
from facesys.gallery import Gallery
from tests.conftest import ROOT, data_path


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), *args])


def facesys(gallery, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_a_recreated_database_never_answers_from_the_old_index(tmp_path):
    """Delete the database (as one would a damaged one) and enroll other people: the old index,
    with the same face ids and generation, must not name anyone."""
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    assert (
        facesys(gallery, "enroll", "--name", "kit_harington", *map(str, sorted((fr / "kit_harington").glob("*.jpg")))).returncode
        == 0
    )
    for path in gallery.glob("gallery.sqlite3*"):
        path.unlink()
    biden = sorted((fr / "joe_biden").glob("*.jpg"))
    assert facesys(gallery, "enroll", "--name", "Joe Biden", *map(str, biden)).returncode == 0
    answer = facesys(gallery, "identify", "--json", str(fr / "_multi_face" / "two_people.jpg"))
    names = [face["name"] for face in json.loads(answer.stdout.splitlines()[0])["faces"]]
    assert "kit_harington" not in answer.stdout and names.count("Joe Biden") == 1, answer.stdout
    assert facesys(gallery, "gallery", "check").returncode == 0


def test_the_same_photo_twice_in_one_run(tmp_path):
    fr = data_path("face_recognition")
    obama = str(fr / "barack_obama" / "obama.jpg")
    result = run(
        tmp_path / "g", "enroll", "--json", "--name", "Barack Obama", obama, obama, str(fr / "barack_obama" / "obama2.jpg")
    )
    lines = [json.loads(line) for line in result.output.splitlines()]
    statuses = [line.get("status") for line in lines if line["event"] == "photo"]
    assert sorted(statuses) == ["duplicate", "enrolled", "enrolled"] and lines[-1]["event"] == "summary", result.output
    # one group photo in two people's folders: the second is refused for that photo only
    people = tmp_path / "people"
    for person in ("Barack Obama", "Joe Biden"):
        (people / person).mkdir(parents=True)
        shutil.copy(fr / "_multi_face" / "two_people.jpg", people / person / "group.jpg")
    shutil.copy(fr / "joe_biden" / "biden.jpg", people / "Joe Biden" / "biden.jpg")
    result = run(tmp_path / "h", "enroll", "--json", str(people))
    photos = [json.loads(line) for line in result.output.splitlines() if '"photo"' in line]
    assert [p["status"] for p in photos if p["source"].endswith("biden.jpg")] == ["enrolled"], result.output
    assert '"summary"' in result.output and run(tmp_path / "h", "gallery", "check").exit_code == 0


@pytest.mark.parametrize(("given", "message"), [("ann", "exists already"), ("unknown", "reserved"), ("A\u202eB", "U\\+202E")])
def test_names_are_checked_before_any_photo_is_read(tmp_path, given, message):
    fr = data_path("face_recognition")
    assert run(tmp_path / "g", "enroll", "--name", "Ann", str(fr / "barack_obama" / "obama.jpg")).exit_code == 0
    result = run(tmp_path / "g", "enroll", "--name", given, str(fr / "joe_biden" / "biden.jpg"))
    assert result.exit_code != 0 and "Traceback" not in result.output and re.search(message, result.output), result.output
    assert dict(Gallery(tmp_path / "g").people()) == {"Ann": 1}


def test_a_degenerate_image_costs_only_its_own_answer(tmp_path, embedder):
    from facesys.system import FaceSystem

    fr = data_path("face_recognition")
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((4000, 1, 3), 128, np.uint8)).save(strip)  # 1 px wide, 4000 px high
    system = FaceSystem(tmp_path / "g", embedder=embedder)
    report = system.enroll("Barack Obama", [strip, fr / "barack_obama" / "obama.jpg"])
    assert [r.status for r in report.results] == ["rejected", "enrolled"]
    answers = system.identify_many([strip, fr / "_multi_face" / "two_people.jpg"])
    assert answers[0] == [] and "Barack Obama" in [f.name for f in answers[1]]


def test_sync_refuses_to_forget_most_of_the_gallery(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    for person, folder in (("Barack Obama", "barack_obama"), ("Joe Biden", "joe_biden")):
        (gallery / "people" / person).mkdir(parents=True)
        for photo in sorted((fr / folder).glob("*.jpg"))[:2]:
            shutil.copy(photo, gallery / "people" / person)
    assert run(gallery, "enroll").exit_code == 0
    shutil.rmtree(gallery / "people" / "Barack Obama")
    shutil.rmtree(gallery / "people" / "Joe Biden")
    (gallery / "people" / "Joe Biden").mkdir()
    shutil.copy(fr / "joe_biden" / "biden.jpg", gallery / "people" / "Joe Biden")
    refused = run(gallery, "enroll", "--sync")
    assert refused.exit_code == 2 and "refusing to forget" in refused.output
    assert sum(n for _, n in Gallery(gallery).people()) == 4
    assert run(gallery, "enroll", "--sync", "--force").exit_code == 0


def test_a_nan_threshold_is_refused(tmp_path):
    fr = data_path("face_recognition")
    obama = str(fr / "barack_obama" / "obama.jpg")
    result = run(tmp_path / "g", "verify", "--threshold", "nan", obama, obama)
    assert result.exit_code == 2 and "threshold" in result.output


def test_a_missing_gallery_names_the_place_looked_at(tmp_path):
    result = run(tmp_path / "nowhere", "identify", str(data_path("face_recognition", "joe_biden", "biden.jpg")))
    assert result.exit_code == 2 and "nowhere: no gallery here" in result.output
    listed = run(tmp_path / "nowhere", "gallery", "list")
    assert listed.exit_code == 0 and "nowhere" in listed.output
