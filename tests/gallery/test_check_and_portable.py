"""gallery check / repair and export / import on synthetic faces."""

from __future__ import annotations

import sqlite3
import zipfile

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery.index import sync
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore
from tests.gallery.conftest import MODEL, face


def index_problems(store):
    return sync.problems(store, store.folder)


@pytest.fixture()
def filled(tmp_path):
    store = SQLiteStore(tmp_path / "g", create=True)
    store.set_model(MODEL, "test-model", "0" * 64, 8)
    for seed in range(6):
        store.add_face(["Zoë", "'; DROP TABLE people; --", "Bob"][seed % 3], face(seed), MODEL)
    sync.synced(store, store.folder)
    yield store
    store.close()


def test_healthy_gallery_has_no_problem(filled):
    assert filled.check() == [] and index_problems(filled) == []


def test_check_finds_damaged_rows_and_a_stale_index(filled):
    db = sqlite3.connect(filled.path)
    db.execute("UPDATE faces SET embedding = ? WHERE id = 1", (np.full(8, np.nan, "<f4").tobytes(),))
    db.execute("UPDATE faces SET embedding = ? WHERE id = 2", (np.full(8, 3.0, "<f4").tobytes(),))
    db.execute("UPDATE faces SET model_id = 'other@1' WHERE id = 3")
    db.execute("UPDATE faces SET crop = X'00' WHERE id = 4")
    db.execute("INSERT INTO people(name, created_at) VALUES ('Ghost', 0)")
    db.commit()
    db.close()
    problems = " | ".join(filled.check())
    for expected in (
        "face 1: embedding is not finite",
        "face 2: embedding is not unit length",
        "face 3: made by other@1",
        "face 4: stored crop is not a JPEG",
        "person 'Ghost' has no face",
    ):
        assert expected in problems
    # The rows changed behind the store's back (no generation bump): the index check compares vectors.
    assert index_problems(filled) == ["index: vectors differ from the database's embeddings"]
    (path,) = filled.folder.glob("index-*")
    path.unlink()
    assert index_problems(filled) == []  # a missing index is derived data, not damage
    assert "no saved index of generation" in sync.state(filled, filled.folder)


def test_export_import_round_trip(filled, tmp_path):
    out = tmp_path / "backup.zip"
    assert export_gallery(filled, out) == 6
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert {"manifest.json", "embeddings.npy", "crops/0.jpg"} <= names
    with SQLiteStore(tmp_path / "copy", create=True) as copy:
        assert import_gallery(copy, out) == (6, 0)
        assert copy.people() == filled.people()
        np.testing.assert_array_equal(copy.embeddings()[1], filled.embeddings()[1])
        assert import_gallery(copy, out) == (0, 6)  # importing twice adds nothing


def test_import_refuses_another_model_and_bad_files(filled, tmp_path):
    out = tmp_path / "backup.zip"
    export_gallery(filled, out)
    with SQLiteStore(tmp_path / "other", create=True) as other:
        other.set_model("another@ffff", "another", "f" * 64, 8)
        with pytest.raises(GalleryError, match="export holds test-model"):
            import_gallery(other, out)
        assert other.people() == []
        (tmp_path / "junk.zip").write_bytes(b"PK not really")
        with pytest.raises(GalleryError, match="junk.zip: not a facesys gallery export"):
            import_gallery(other, tmp_path / "junk.zip")
        with zipfile.ZipFile(tmp_path / "wrong.zip", "w") as archive:
            archive.writestr("manifest.json", '{"format": "something else"}')
            archive.writestr("embeddings.npy", b"")
        with pytest.raises(GalleryError, match="wrong.zip: not a facesys gallery export"):
            import_gallery(other, tmp_path / "wrong.zip")


def test_repair_rebuilds_the_index_and_drops_empty_people(filled, tmp_path):
    from facesys.gallery import Gallery

    for path in filled.folder.glob("index-*"):
        path.write_bytes(b"broken")
    db = sqlite3.connect(filled.folder / DB_NAME)
    db.execute("INSERT INTO people(name, created_at) VALUES ('Ghost', 0)")
    db.commit()
    db.close()
    gallery = Gallery(filled.folder)
    assert any("unreadable" in p for p in gallery.check())
    assert gallery.repair() == ["removed 1 person(s) without faces", "rebuilt the index"]
    assert gallery.check() == []
