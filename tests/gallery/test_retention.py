"""Retention on every backend (tests/gallery/conftest.py): unnamed library faces and audit events
older than their periods are deleted by every writer, in its own transaction, and erased; named,
attached and enrolled faces never; a write with nothing expired erases nothing; a writer killed
while it enforces leaves the gallery before or after; ``facesys gallery retention``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import InvalidValueError
from facesys.gallery.audit import AuditEvent
from facesys.gallery.store import Carried, open_store, retention
from facesys.gallery.store.records import ERASE_PENDING, CarriedLibrary, CarriedLibraryFace, LibraryPhoto
from tests.conftest import ROOT
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo

DAY = 86400.0
OLD = time.time() - 100 * DAY  # older than 90d


@pytest.fixture(autouse=True)
def _fresh_checks():
    """Each test starts with no gallery checked in this process yet."""
    retention._due.clear()
    yield
    retention._due.clear()


def carry(store, number: int, seeds: list[int], scanned_at: float, person: str | None = None, assigned=None) -> None:
    """Record /library/<number>.jpg scanned at ``scanned_at`` with a face per seed (of ``person``)."""
    scanned = photo(number)
    stored = LibraryPhoto(0, scanned.path, scanned.size, scanned.mtime_ns, scanned.sha256, len(seeds), None, MODEL, scanned_at)
    faces = [CarriedLibraryFace(scanned.path, library_face(s, person), MODEL, None, assigned, None) for s in seeds]
    store.add_faces_and_library([], MODEL, CarriedLibrary([stored], faces, []))


def old_events(store, *ats: float) -> None:
    """Add audit events at these times (as a repair carries them over)."""
    events = [AuditEvent(at, "local user old", "set_setting", None, {"key": "x", "value": 1}) for at in ats]
    store.restore_keys_and_log(Carried([], events), {"faces": 0})


def test_expired_unnamed_faces_and_events_go_and_the_rest_stays(store):
    store.add_face("Ann", face(1), MODEL)
    carry(store, 1, [10, 11], OLD)  # unnamed, old: both go, the photo too (remembered by sha256)
    carry(store, 2, [12], OLD)
    touched = photo(2)
    store.record_photo(type(touched)(touched.path, 5, 6, touched.sha256), None, MODEL)  # a touch: still as old
    carry(store, 6, [17], OLD)
    store.move_photo("/library/6.jpg", photo(7, sha=photo(6).sha256))  # a move: still as old
    carry(store, 8, [18], OLD - 1)
    store.record_photo(photo(8, sha="e" * 64), [library_face(19)], MODEL)  # new bytes, read now: stays
    carry(store, 3, [13], OLD, "Ann", "auto")  # attached: stays
    carry(store, 4, [14, 15], OLD)
    named = [f.id for f in store.library_faces() if f.path == "/library/4.jpg"][:1]
    store.name_library_faces(named, "Cy")  # named by the user: stays; the other face of that photo goes
    carry(store, 5, [16], time.time())  # recent: stays
    old_events(store, OLD, OLD + 1, time.time() - 10 * DAY)
    before = len(store.audit_log(None))

    assert store.set_retention({"library": "90d", "audit": "30d"}) == {"library": "90d", "audit": "30d"}

    faces = store.library_faces()
    assert sorted((f.path, f.person) for f in faces) == [
        ("/library/3.jpg", "Ann"),
        ("/library/4.jpg", "Cy"),
        ("/library/5.jpg", None),
        ("/library/8.jpg", None),
    ]
    photos = {p.path: p for p in store.library_photos()}
    assert sorted(photos) == ["/library/3.jpg", "/library/4.jpg", "/library/5.jpg", "/library/8.jpg"]
    assert photos["/library/4.jpg"].faces == 1 and photos["/library/4.jpg"].erased == [[None, 25.0, 20.0, 110.0, 140.0]]
    assert store.erased_photos() == {photo(n).sha256 for n in (1, 2, 6)}  # a scan leaves those bytes out, as after a removal
    assert store.people() == [("Ann", 1), ("Cy", 1)] and store.face_count() == 2
    log = store.audit_log(None)
    assert log[0].action == "retention" and log[0].detail == {"library_faces": 5, "library_photos": 3, "audit_events": 2}
    assert len(log) == before + 2 - 2 and all(event.at >= time.time() - 31 * DAY for event in log)
    assert ERASE_PENDING not in store.meta() and store.check() == []


def test_the_audit_period_never_deletes_the_event_saying_retention_ran(store, monkeypatch):
    store.add_face("Ann", face(1), MODEL)
    carry(store, 1, [10], time.time())
    monkeypatch.setattr(retention, "now", lambda: time.time() + 2 * DAY)  # everything is a day too old
    store.set_retention({"library": "1d", "audit": "1d"})
    (event,) = store.audit_log(None)
    assert event.action == "retention" and event.detail == {"library_faces": 1, "library_photos": 1, "audit_events": 4}
    assert store.people() == [("Ann", 1)]


def test_every_writer_deletes_what_expired_meanwhile_at_most_once_a_minute(store, monkeypatch):
    store.set_retention({"library": "90d"})
    carry(store, 1, [10], time.time())
    monkeypatch.setattr(retention, "now", lambda: time.time() + 100 * DAY)
    store.add_face("Ann", face(1), MODEL)  # checked less than a minute ago: nothing yet
    assert len(store.library_faces()) == 1
    retention._due.clear()  # a minute later, or another process
    other = open_store(store._url if hasattr(store, "_url") else store.location)
    try:
        other.set_setting("verify_threshold", 0.9)  # any write of any writer
    finally:
        other.close()
    assert store.library_faces() == [] and store.audit_log(1)[0].action == "retention"
    assert store.erased_photos() == {photo(1).sha256}


def test_an_import_of_expired_faces_keeps_none_of_them(store, monkeypatch):
    monkeypatch.setattr(retention, "CHECK_INTERVAL_S", 0.0)  # every write checks
    store.set_retention({"library": "90d"})
    carry(store, 1, [10], OLD)  # deleted at the commit of the import itself
    assert store.library_faces() == [] and store.erased_photos() == {photo(1).sha256}


def test_a_write_with_nothing_expired_erases_nothing(store, monkeypatch):
    monkeypatch.setattr(retention, "CHECK_INTERVAL_S", 0.0)  # every write checks
    erased = []
    monkeypatch.setattr(store, "erase_freed_pages", lambda: erased.append(1))
    store.set_retention({"library": "90d", "audit": "1y"})
    store.add_face("Ann", face(1), MODEL)
    carry(store, 1, [10], time.time())
    store.set_setting("verify_threshold", 0.9)
    assert erased == [] and ERASE_PENDING not in store.meta()
    assert "retention" not in [event.action for event in store.audit_log(None)] and len(store.library_faces()) == 1


def test_retention_is_shown_set_and_cleared(store):
    assert store.retention() == {"library": None, "audit": None}
    assert store.set_retention({"library": " 12W "}) == {"library": "12w", "audit": None}
    assert store.set_retention({"audit": "1y"}) == {"library": "12w", "audit": "1y"}
    assert store.set_retention({"library": None}) == {"library": None, "audit": "1y"}
    events = [e for e in store.audit_log(None) if e.action == "set_retention"]
    assert [e.detail for e in events] == [{"library": None}, {"audit": "1y"}, {"library": "12w"}]


@pytest.mark.parametrize("value", ["0d", "90", "d", "1.5d", "-1d", "90 days", "1001y", "", 90])
def test_bad_periods_are_refused_and_change_nothing(store, value):
    with pytest.raises(InvalidValueError, match="library retention .*a whole number above 0 and a unit"):
        store.set_retention({"library": value})
    with pytest.raises(InvalidValueError, match="retention of 'faces'"):
        store.set_retention({"faces": "1d"})
    assert store.retention() == {"library": None, "audit": None}


# -- killed while enforcing ---------------------------------------------------------------------------

FACES = 300  # expired unnamed faces, in 100 photos, besides one named one

# Child: opens the gallery, stops at ``point`` (prints it and sleeps) while a write enforces retention.
CHILD = """
import sys, time
from facesys.gallery.store import open_store, retention
from facesys.gallery.store.library import PhotoLibrary
location, point = sys.argv[1], sys.argv[2]
retention.now = lambda: time.time() + 100 * 86400
def stop(*args):
    print(point, flush=True)
    time.sleep(60)
if point == "deleted":  # the expired rows deleted, the transaction not committed
    remember = PhotoLibrary._remember_erased
    def stopping(self, rows):
        gone = remember(self, rows)
        stop()
        return gone
    PhotoLibrary._remember_erased = stopping
store = open_store(location)
if point == "committed":  # committed, its freed space not erased yet
    store.erase_freed_pages = stop
store.set_setting("verify_threshold", 0.9)
print("done", flush=True)
"""


def killed_at(location: str, point: str) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, location, point], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == point
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["deleted", "committed"])
def test_a_writer_killed_while_enforcing_leaves_the_gallery_before_or_after(store, point):
    store.add_face("Ann", face(1), MODEL)
    for number in range(100):
        carry(store, number, [3 * number, 3 * number + 1, 3 * number + 2], time.time())
    carry(store, 100, [400], time.time(), "Ann", "user")
    crops = [library_face(seed).crop_jpeg for seed in range(FACES)]
    store.set_retention({"library": "90d"})
    location = store._url if hasattr(store, "_url") else store.location
    killed_at(location, point)
    retention._due.clear()
    with open_store(location) as after:  # opening for writing finishes a committed erasure (SQLite)
        faces, photos, erased = after.library_faces(), after.library_photos(), after.erased_photos()
        assert after.check() == [] and after.people() == [("Ann", 1)]
        if point == "deleted":  # killed before the commit: everything as before
            assert len(faces) == FACES + 1 and len(photos) == 101 and erased == set()
            assert "retention" not in [event.action for event in after.audit_log(None)]
        else:  # committed: everything after, and erased
            assert [f.person for f in faces] == ["Ann"] and len(photos) == 1 and len(erased) == 100
            assert after.audit_log(1)[0].detail == {"library_faces": FACES, "library_photos": 100, "audit_events": 0}
            if hasattr(after, "folder"):
                assert ERASE_PENDING not in after.meta()
                content = b"".join(path.read_bytes() for path in after.folder.iterdir() if path.is_file())
                assert not any(crop[-200:] in content for crop in crops)


# -- the command ----------------------------------------------------------------------------------------


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), "gallery", "retention", *args])


def test_the_command_shows_sets_and_clears_periods(tmp_path):
    gallery = tmp_path / "g"
    assert run(gallery).stdout == "library: off\naudit: off\n"
    result = run(gallery, "--library", "90d", "--audit", "1y")
    assert result.exit_code == 0 and result.stdout == "library: 90d\naudit: 1y\n"
    assert run(gallery, "--audit", "off").stdout == "library: 90d\naudit: off\n"
    assert json.loads(run(gallery, "--json").stdout)["retention"] == {"library": "90d", "audit": None}


@pytest.mark.parametrize(("args", "option"), [(["--library", "9x"], "--library"), (["--audit", "0d"], "--audit")])
def test_a_bad_period_is_one_line_naming_the_option(tmp_path, args, option):
    result = run(tmp_path / "g", *args)
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"facesys: error: Invalid value for '{option}'") and "(s, m, h, d, w, y)" in line
    assert not (tmp_path / "g").exists()


def test_the_periods_travel_in_an_export_into_a_new_gallery(store, second_store, tmp_path):
    """As the thresholds do: so a gallery rebuilt by repair keeps them."""
    import zipfile

    from facesys.errors import GalleryError
    from facesys.gallery.portable import export_gallery, import_gallery

    store.add_face("Ann", face(1), MODEL)
    store.set_retention({"library": "90d", "audit": "1y"})
    export_gallery(store, tmp_path / "g.zip")
    fresh = open_store(tmp_path / "fresh", create=True)
    try:
        assert import_gallery(fresh, tmp_path / "g.zip") == (1, 0)
        assert fresh.retention() == {"library": "90d", "audit": "1y"}
    finally:
        fresh.close()
    with zipfile.ZipFile(tmp_path / "g.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = {name: archive.read(name) for name in archive.namelist() if name != "manifest.json"}
    manifest["settings"]["retention_audit"] = "soon"
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(GalleryError, match="setting retention_audit must be a period such as 90d or 1y, not 'soon'"):
        import_gallery(second_store, tmp_path / "bad.zip")
