"""A gallery database with one damaged page (random bytes over a page of the faces table):
check reports it, export salvages every readable row, repair rebuilds the database from them,
and reads that fail raise one GalleryError instead of a traceback."""

from __future__ import annotations

import random
import sqlite3
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import GalleryError
from facesys.gallery import Gallery
from facesys.gallery.audit import acting_as
from facesys.gallery.index import sync
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore
from facesys.keys import hash_key, new_key
from tests.gallery.conftest import MODEL, face

FACES = 300
PAGE = 4096
KEY = new_key()


def faces_pages(path, table: str = "faces") -> list[int]:
    """Leaf pages of a table (dbstat when SQLite has it, else the middle of the file)."""
    db = sqlite3.connect(path)
    try:
        return [
            r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))
        ]
    except sqlite3.OperationalError:
        size = path.stat().st_size // PAGE
        return list(range(size // 3, 2 * size // 3))
    finally:
        db.close()


def overwrite_page(path, page: int) -> None:
    """Random bytes over one page of the database at ``path`` (checkpointed first)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as file:
        file.seek((page - 1) * PAGE)
        file.write(random.Random(7).randbytes(PAGE))


def readable_rows(path) -> set[str]:
    """The image hashes of the face rows a lookup by id can still read."""
    db = sqlite3.connect(path)
    found = set()
    for face_id in range(1, FACES + 1):
        try:
            row = db.execute("SELECT image_sha256 FROM faces WHERE id = ?", (face_id,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            found.add(row[0])
    db.close()
    return found


@pytest.fixture()
def damaged(tmp_path):
    """A gallery of FACES faces (20 people, thresholds and index kind set, a saved index) whose
    database has one faces page overwritten with random bytes."""
    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store, acting_as("key setup"):
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([(f"Person {i % 20}", face(i)) for i in range(FACES)], MODEL)
        store.set_setting("verify_threshold", 0.9)
        store.set_setting("index_kind", "hnsw")
        store.add_api_key("ci", "enroll", hash_key(KEY))
        store.add_faces([("Gone", face(FACES))], MODEL)
        store.remove_person("Gone")
        sync.synced(store, folder)
    pages = faces_pages(folder / DB_NAME)
    assert len(pages) > 10
    overwrite_page(folder / DB_NAME, pages[len(pages) // 2])
    readable = readable_rows(folder / DB_NAME)
    assert 0 < len(readable) < FACES
    return folder, readable


def test_check_reports_the_damage(damaged):
    folder, _ = damaged
    problems = Gallery(folder).check()
    assert problems and problems[0].startswith("sqlite: ")
    assert "gallery export" in problems[0] and "gallery repair" in problems[0]
    assert any(p.startswith("index: ") for p in problems)  # the index comparison cannot read the embeddings
    with SQLiteStore(folder) as store:
        assert store.check()[0].startswith("sqlite: ")


def test_reads_that_fail_raise_one_gallery_error(damaged):
    folder, _ = damaged
    with SQLiteStore(folder) as store:
        for read in (store.faces, store.embeddings, store.face_ids, lambda: list(store.crops())):
            with pytest.raises(GalleryError, match=f"{DB_NAME}: cannot read the gallery database .*malformed"):
                read()
        assert len(store.people()) == 20  # people and counts come from pages that are intact
        assert store.face_count() == FACES
        ids = np.arange(1, FACES + 1)
        try:
            names = store.names_of(ids)
        except GalleryError:
            pass
        else:
            assert len(names) < FACES
        with pytest.raises(GalleryError, match="cannot read"):
            store.vectors(ids)


def test_export_salvages_every_readable_row(damaged, tmp_path):
    folder, readable = damaged
    out = tmp_path / "salvage.zip"
    written, unreadable = Gallery(folder).export(out)
    assert written == len(readable) and unreadable == FACES - len(readable)
    with zipfile.ZipFile(out) as archive:
        assert len(archive.namelist()) == 2 + written
    with SQLiteStore(tmp_path / "copy", create=True) as copy:
        assert import_gallery(copy, out) == (written, 0)
        assert {record.image_sha256 for record in copy.faces()} == readable
        assert copy.setting("verify_threshold") == "0.9" and copy.setting("index_kind") == "hnsw"
        assert copy.check() == []
    # the store-level function reports the same count
    counts = []
    with SQLiteStore(folder) as store:
        assert export_gallery(store, tmp_path / "again.zip", on_unreadable=counts.append) == written
    assert counts == [unreadable]


def test_repair_rebuilds_the_database_from_the_readable_rows(damaged):
    folder, readable = damaged
    gallery = Gallery(folder)
    with gallery.open() as store:
        old_id = store.gallery_id
    done = gallery.repair()
    text = "\n".join(done)
    assert f"{len(readable)} face(s) of 20 person(s) recovered" in text
    assert f"{FACES - len(readable)} face row(s) could not be read" in text
    assert "personal data" in text and done[-1] == "rebuilt the index"
    (aside,) = folder.glob(f"{DB_NAME}.damaged-*")
    assert str(aside) in text and aside.stat().st_size > 0
    assert not list(folder.glob("*.zip"))  # the temporary salvage is gone
    assert gallery.check() == []
    with gallery.open() as store:
        assert store.gallery_id != old_id
        assert store.face_count() == len(readable) == sum(count for _, count in store.people())
        assert {record.image_sha256 for record in store.faces()} == readable
        assert store.setting("verify_threshold") == "0.9" and store.setting("index_kind") == "hnsw"
    # searching works on the rebuilt gallery; a healthy repair keeps today's behaviour
    found = gallery.search(face(0).embedding[None], 1)
    assert found.size == len(readable)
    assert gallery.repair() == ["rebuilt the index"]


def test_repair_keeps_the_keys_and_the_log(damaged):
    folder, readable = damaged
    gallery = Gallery(folder)
    with gallery.open() as store:
        before = store.audit_log(None)
    with acting_as("key fixer"):
        done = gallery.repair()
    assert f"carried over 1 API key(s) and {len(before)} audit event(s) that could be read" in done
    assert gallery.key_for(KEY).name == "ci"
    events = gallery.log(None)
    repair = events[0]
    assert (repair.action, repair.actor, repair.person) == ("repair", "key fixer", None)
    assert repair.detail["faces"] == len(readable) and repair.detail["lost"] == FACES - len(readable)
    rebuilt = [e for e in events if e.action == "repair" and e.person is not None]
    assert len(rebuilt) == 20 and sum(len(e.detail["face_ids"]) for e in rebuilt) == len(readable)
    old = [e for e in events if e.actor == "key setup"]
    assert [(e.at, e.action, e.detail) for e in old] == [(e.at, e.action, e.detail) for e in before]
    assert [e.person for e in old] == [e.person for e in before]  # everyone still present keeps their events
    gone = [e for e in old if e.action in ("enroll", "remove_person") and e.person is None]
    assert len(gone) == 2 and gone[0].person_id == gone[1].person_id
    assert gone[0].person_id not in {e.person_id for e in events if e.person is not None}


def test_a_damaged_log_is_salvaged_row_by_row(tmp_path):
    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        for i in range(400):
            store.set_setting("verify_threshold", 0.5 + i / 1000)
    pages = faces_pages(folder / DB_NAME, "audit")
    if len(pages) < 3:
        pytest.skip("this SQLite cannot say which pages hold the log (no dbstat)")
    overwrite_page(folder / DB_NAME, pages[len(pages) // 2])
    with SQLiteStore(folder) as store:
        with pytest.raises(GalleryError, match="malformed"):
            store.audit_log(None)
        carried = store.salvage_keys_and_log()
    assert 300 < len(carried.events) < 401 and carried.keys == []
    assert all(e.action in ("set_model", "set_setting") for e in carried.events)


def test_healthy_export_reports_nothing_lost(tmp_path):
    with SQLiteStore(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([("Ann", face(1)), ("Bob", face(2))], MODEL)
    assert Gallery(tmp_path / "g").export(tmp_path / "x.zip") == (2, 0)


def test_cli_reports_damage_in_one_line(damaged, tmp_path):
    folder, _ = damaged
    runner = CliRunner()
    checked = runner.invoke(main, ["--gallery", str(folder), "gallery", "check"])
    assert checked.exit_code == 2 and "Traceback" not in checked.output
    assert "problem: sqlite: " in checked.output
    exported = runner.invoke(main, ["--gallery", str(folder), "gallery", "export", str(tmp_path / "x.zip")])
    assert exported.exit_code == 0 and "Traceback" not in exported.output
    shown = runner.invoke(main, ["--gallery", str(folder), "gallery", "list"])
    assert shown.exit_code == 0 and "Traceback" not in shown.output
