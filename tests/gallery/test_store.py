"""The SQLite store on synthetic faces: people, duplicates, names, models, schema, erasure."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery.store import DB_NAME, SCHEMA_VERSION, GalleryStore, NewFace

MODEL = "test-model@0123456789abcdef"


def face(seed: int, dim: int = 8) -> NewFace:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=dim).astype(np.float32)
    return NewFace(
        source=f"/photos/{seed}.jpg",
        image_sha256=f"{seed:064x}",
        box=np.array([10, 20, 110, 140.0]),
        landmarks=rng.uniform(20, 100, (5, 2)),
        score=0.99,
        crop_jpeg=b"\xff\xd8crop-bytes-" + bytes([seed % 256]) * 64,
        crop_origin=(0.0, 0.0, 1.0),
        embedding=v / np.linalg.norm(v),
    )


@pytest.fixture()
def store(tmp_path):
    with GalleryStore(tmp_path / "g", create=True) as s:
        s.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        yield s


def test_opening_a_missing_gallery_without_create_fails(tmp_path):
    with pytest.raises(GalleryError, match="no gallery here"):
        GalleryStore(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_faces_people_and_embeddings(store):
    first = store.add_face("Ann", face(1), MODEL)
    store.add_face("Ann", face(2), MODEL)
    store.add_face("Bob", face(3), MODEL)
    assert store.people() == [("Ann", 2), ("Bob", 1)]
    ids, vectors, names = store.embeddings()
    assert ids.tolist()[0] == first and names == ["Ann", "Ann", "Bob"]
    np.testing.assert_array_equal(vectors[2], face(3).embedding)
    record = store.faces("Bob")[0]
    assert record.source == "/photos/3.jpg" and record.box == [10, 20, 110, 140]
    assert store.person_of_image(face(2).image_sha256) == "Ann"


def test_same_photo_twice_is_refused_by_the_database(store):
    store.add_face("Ann", face(1), MODEL)
    with pytest.raises(GalleryError, match="refused by the database"):
        store.add_face("Bob", face(1), MODEL)
    assert store.people() == [("Ann", 1)]


def test_every_change_bumps_the_generation(store):
    g0 = store.generation
    store.add_face("Ann", face(1), MODEL)
    store.rename_person("Ann", "Anne")
    store.remove_person("Anne")
    assert store.generation == g0 + 3


@pytest.mark.parametrize("name", ["Zoë Ñúñez", "李小龍", "../../etc/passwd", "'; DROP TABLE people; --", "x" * 200, " padded "])
def test_names_are_data(store, name):
    store.add_face(name, face(5), MODEL)
    assert store.people() == [(name, 1)]
    assert store.faces(name)[0].person == name


@pytest.mark.parametrize(("name", "message"), [("", "empty"), ("   ", "empty"), ("a\nb", "control"), ("x" * 201, "at most 200")])
def test_bad_names_are_refused(store, name, message):
    with pytest.raises(GalleryError, match=message):
        store.add_face(name, face(5), MODEL)
    assert store.people() == []


def test_rename_and_remove(store):
    store.add_face("Ann", face(1), MODEL)
    store.add_face("Bob", face(2), MODEL)
    with pytest.raises(GalleryError, match="already exists"):
        store.rename_person("Ann", "Bob")
    with pytest.raises(GalleryError, match="no person named 'Cy'"):
        store.rename_person("Cy", "Dee")
    store.rename_person("Ann", "Anne")
    assert store.remove_person("Anne") == 1
    with pytest.raises(GalleryError, match="no person named 'Anne'"):
        store.remove_person("Anne")
    assert store.people() == [("Bob", 1)]


def test_another_model_is_refused(store):
    with pytest.raises(GalleryError, match="gallery model is test-model"):
        store.add_face("Ann", face(1), "other@ffff")
    assert store.people() == []


def test_thresholds_are_stored_and_cleared(store):
    assert store.threshold("verify") is None
    store.set_threshold("verify", 0.35)
    assert store.threshold("verify") == 0.35
    store.set_threshold("verify", None)
    assert store.threshold("verify") is None


def test_a_newer_schema_is_refused_unchanged(tmp_path):
    folder = tmp_path / "g"
    GalleryStore(folder, create=True).close()
    db = sqlite3.connect(folder / DB_NAME)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = (folder / DB_NAME).read_bytes()
    with pytest.raises(GalleryError, match="newer than this facesys"):
        GalleryStore(folder)
    assert (folder / DB_NAME).read_bytes() == before


def test_not_a_database_is_a_gallery_error(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="cannot open gallery database"):
        GalleryStore(folder)


def test_removed_person_leaves_no_bytes_behind(store):
    victim = face(7)
    store.add_face("Victim", victim, MODEL)
    store.add_face("Other", face(8), MODEL)
    store.remove_person("Victim")
    data = b"".join(p.read_bytes() for p in store.folder.glob(DB_NAME + "*"))
    assert victim.embedding.astype("<f4").tobytes() not in data
    assert victim.crop_jpeg not in data
    assert face(8).crop_jpeg in data


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE faces (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source TEXT NOT NULL, image_sha256 TEXT NOT NULL UNIQUE, box TEXT NOT NULL, landmarks TEXT NOT NULL, score REAL NOT NULL,
    crop BLOB NOT NULL, crop_origin TEXT NOT NULL, embedding BLOB NOT NULL, model_id TEXT NOT NULL, created_at REAL NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '1'), ('created_at', '0'),
    ('model_id', 'test-model@0123456789abcdef'), ('model_name', 'test-model'), ('weights_sha256', 'x'), ('dim', '8'),
    ('metric', 'euclidean-unit');
INSERT INTO people VALUES (1, 'Old Timer', 0);
"""


def test_an_older_schema_is_migrated_keeping_its_data(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(V1_SCHEMA)
    v = face(3).embedding.astype("<f4").tobytes()
    db.execute(
        "INSERT INTO faces VALUES (1, 1, '/x.jpg', 'aa', '[0,0,1,1]', '[[0,0],[0,0],[0,0],[0,0],[0,0]]', 0.9, X'FFD8', "
        "'[0,0,1]', ?, 'test-model@0123456789abcdef', 0)",
        (v,),
    )
    db.commit()
    db.close()
    with GalleryStore(folder) as store:
        assert int(store.meta()["schema_version"]) == SCHEMA_VERSION
        assert store.people() == [("Old Timer", 1)]
        assert store.embeddings()[1][0].tobytes() == v
        store.add_face("New", face(4), MODEL)  # the migrated table takes new rows (with sharpness)
        assert store.check() == []
