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


def test_identify_says_what_it_found_and_skipped(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    assert run(gallery, "enroll", "--name", "Joe Biden", str(fr / "joe_biden" / "biden.jpg")).exit_code == 0
    only_folders = tmp_path / "photos"
    (only_folders / "2019").mkdir(parents=True)
    empty = run(gallery, "identify", str(only_folders))
    assert empty.exit_code == 2 and "nothing to identify" in empty.output and "0 photo(s)" in empty.output
    shutil.copy(fr / "joe_biden" / "biden2.jpg", only_folders / "2019" / "b.jpg")  # sub-folders are searched, as by scan
    (only_folders / "photo.heic").write_bytes(b"\x00" * 10)
    (only_folders / "notes.txt").write_text("not a photo")
    result = run(gallery, "identify", "--json", str(only_folders))
    *answers, summary = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [face["name"] for face in answers[0]["faces"]] == ["Joe Biden"]
    assert summary["summary"]["files"] == 1 and len(summary["summary"]["skipped"]) == 2


def test_an_animated_gif_is_read_frame_by_frame(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    assert run(gallery, "enroll", "--name", "Joe Biden", str(fr / "joe_biden" / "biden.jpg")).exit_code == 0
    face = Image.open(fr / "joe_biden" / "biden2.jpg").convert("RGB")
    blanks = [Image.new("RGB", face.size, (grey, grey, grey)) for grey in (60, 160)]
    gif = tmp_path / "clip.gif"
    blanks[0].save(gif, save_all=True, append_images=[blanks[1], face], duration=100)
    result = run(gallery, "identify", "--json", "--every", "1", str(gif))
    frames = [json.loads(line) for line in result.output.splitlines() if '"faces"' in line]
    assert [f["frame"] for f in frames] == [0, 1, 2] and [len(f["faces"]) for f in frames] == [0, 0, 1]


def test_enroll_explains_folders_and_bad_names_before_loading_a_model(tmp_path, monkeypatch):
    import facesys.vision.embed

    monkeypatch.setattr(facesys.vision.embed.Embedder, "__init__", lambda *a, **k: pytest.fail("a model was loaded"))
    fr = data_path("face_recognition")
    no_name = run(tmp_path / "g", "enroll", str(fr / "barack_obama"))
    assert no_name.exit_code == 2 and "give the person's name" in no_name.output
    missing = run(tmp_path / "g", "enroll", "--name", "X", str(tmp_path / "missing_dir"))
    assert missing.exit_code == 2 and "missing_dir: no such file or folder" in missing.output
    bad = run(tmp_path / "g", "enroll", "--name", "a\u2028b", str(fr / "barack_obama"))
    assert bad.exit_code == 2 and "U+2028" in bad.output


def test_a_broken_video_is_one_line_of_ours(tmp_path):
    gallery = tmp_path / "g"
    assert (
        run(gallery, "enroll", "--name", "Joe Biden", str(data_path("face_recognition", "joe_biden", "biden.jpg"))).exit_code == 0
    )
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # a header and no moov atom
    result = facesys(gallery, "identify", str(clip))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines[0] == f"facesys: error: {clip}: cannot open as a video", result.stderr
    assert not any("moov" in line or "cap_ffmpeg" in line for line in lines)


def test_names_are_drawn_in_their_own_script(tmp_path):
    from facesys.decide.match import Identification
    from facesys.vision.annotate import draw_faces

    image = np.full((200, 400, 3), 120, np.uint8)

    def drawn(name: str) -> np.ndarray:
        return np.asarray(draw_faces(image, [Identification([150, 60, 350, 190], 1.0, name, 0.1, 0.4)]))

    assert not np.array_equal(drawn("Zoë Łukasz"), drawn("Zo? ?ukasz"))
    assert not np.array_equal(drawn("Ирина"), drawn("?????"))


def test_endless_and_oversized_files_are_refused_unread(tmp_path):
    fr = data_path("face_recognition")
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(300 * 2**20)  # sparse: 300 MB on paper
    result = run(
        tmp_path / "g", "enroll", "--json", "--name", "Joe Biden", "/dev/zero", str(big), str(fr / "joe_biden" / "biden.jpg")
    )
    photos = [json.loads(line) for line in result.output.splitlines() if '"photo"' in line]
    assert [p["status"] for p in photos] == ["error", "error", "enrolled"], result.output
    assert "not a regular file" in photos[0]["reason"] and "at most" in photos[1]["reason"]


def test_show_of_an_empty_name_is_one_line(tmp_path):
    fr = data_path("face_recognition")
    assert run(tmp_path / "g", "enroll", "--name", "Joe Biden", str(fr / "joe_biden" / "biden.jpg")).exit_code == 0
    result = run(tmp_path / "g", "gallery", "show", "")
    assert result.exit_code == 2 and result.output.strip() == f"facesys: error: no person named '' in {tmp_path / 'g'}"


def test_two_runs_enrolling_the_same_photos_at_once(tmp_path):
    fr = data_path("face_recognition")
    photos = [str(p) for p in sorted((fr / "barack_obama").glob("obama*.jpg"))[:5]]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "facesys.cli",
        "--gallery",
        str(tmp_path / "g"),
        "enroll",
        "--json",
        "--name",
        "Barack Obama",
    ]
    runs = [
        subprocess.Popen([*command, *photos], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=600) for r in runs]
    statuses = []
    for (out, err), process in zip(outputs, runs, strict=True):
        assert process.returncode in (0, 3) and "Traceback" not in err and "UNIQUE" not in err, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[-1]["event"] == "summary"
        statuses += [line["status"] for line in lines[:-1]]
    enrolled = sum(n for _, n in Gallery(tmp_path / "g").people())
    assert statuses.count("enrolled") == enrolled and statuses.count("duplicate") >= enrolled
    assert run(tmp_path / "g", "gallery", "check").exit_code == 0


FULL_DISK_REMOVE = """
import resource, signal, sys
from facesys.gallery import Gallery
from facesys.errors import GalleryError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
gallery = Gallery(sys.argv[1])
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # room for a small change, not for a VACUUM
try:
    gallery.remove("Victim")
    print("REMOVED")
except GalleryError as exc:
    print("ERROR", exc)
"""


def test_remove_on_a_full_disk_says_what_is_left(tmp_path):
    from facesys.gallery.index import sync
    from facesys.gallery.store.sqlite import SQLiteStore
    from tests.gallery.conftest import MODEL, face

    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        for seed in range(400):
            store.add_face("Victim" if seed < 20 else "Other", face(seed), MODEL)
        sync.synced(store, folder)
        victim = [v.astype("<f4").tobytes() for v in store.vectors(store.face_ids()[:20])]
        store.erase_freed_pages()
    limit = (folder / "gallery.sqlite3").stat().st_size // 2
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", FULL_DISK_REMOVE, str(folder), str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith("ERROR") and "committed" in result.stdout and "repair" in result.stdout, result.stdout
    assert dict(Gallery(folder).people()) == {"Other": 380}
    leftovers = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("gallery.sqlite3")]
    assert not any(v in (folder / name).read_bytes() for name in leftovers for v in victim), leftovers
    Gallery(folder).repair()
    blob = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
    assert not any(v in blob for v in victim)


@pytest.fixture()
def read_only_volume(tmp_path):
    """A small tmpfs that the test can remount read-only (needs root; skipped elsewhere)."""
    mount_point = tmp_path / "volume"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_gallery_on_a_read_only_volume_is_still_read(read_only_volume):
    fr = data_path("face_recognition")
    gallery = read_only_volume / "g"
    assert facesys(gallery, "enroll", "--name", "Joe Biden", str(fr / "joe_biden" / "biden.jpg")).returncode == 0
    if subprocess.run(["mount", "-o", "remount,ro", str(read_only_volume)]).returncode:
        pytest.skip("this machine does not let a tmpfs be remounted read-only")
    listed = facesys(gallery, "gallery", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("Joe Biden"), listed.stderr
    found = facesys(gallery, "identify", "--json", str(fr / "_multi_face" / "two_people.jpg"))
    assert found.returncode == 0 and '"Joe Biden"' in found.stdout, found.stderr
    pair = facesys(gallery, "verify", str(fr / "joe_biden" / "biden.jpg"), str(fr / "joe_biden" / "biden2.jpg"))
    assert pair.returncode == 0, pair.stderr
    refused = facesys(gallery, "enroll", "--name", "X", str(fr / "barack_obama" / "obama.jpg"))
    assert refused.returncode == 2 and "cannot write" in refused.stderr and "Traceback" not in refused.stderr
