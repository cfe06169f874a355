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
from facesys.gallery.index import sync
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore
from tests.gallery.conftest import MODEL, face

FACES = 300
PAGE = 4096


def faces_pages(path) -> list[int]:
    """Leaf pages of the faces table (dbstat when SQLite has it, else the middle of the file)."""
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'faces' AND pagetype = 'leaf' ORDER BY pageno")]
    except sqlite3.OperationalError:
        size = path.stat().st_size // PAGE
        return list(range(size // 3, 2 * size // 3))
    finally:
        db.close()


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
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([(f"Person {i % 20}", face(i)) for i in range(FACES)], MODEL)
        store.set_setting("verify_threshold", 0.9)
        store.set_setting("index_kind", "hnsw")
        sync.synced(store, folder)
    db = sqlite3.connect(folder / DB_NAME)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    pages = faces_pages(folder / DB_NAME)
    assert len(pages) > 10
    with open(folder / DB_NAME, "r+b") as file:
        file.seek((pages[len(pages) // 2] - 1) * PAGE)
        file.write(random.Random(7).randbytes(PAGE))
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
