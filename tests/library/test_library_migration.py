"""Galleries made before the photo library are migrated when opened (SQLite v4 -> v5 -> v6,
PostgreSQL's own v1 -> v2 -> v3), in one transaction and without losing anything: people, faces,
embeddings, the change log, keys and the audit log stay, and the library tables work at once; a
library made before erased faces were remembered (SQLite v5, PostgreSQL v2) keeps its photos and
faces."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from facesys.gallery.store import open_store
from facesys.gallery.store.postgres import SCHEMA_VERSION as PG_VERSION
from facesys.gallery.store.sqlite import DB_NAME, SCHEMA_VERSION, SQLiteStore
from facesys.keys import hash_key, new_key
from tests.gallery.conftest import MODEL, face
from tests.gallery.test_sqlite_store import new_gallery, schema
from tests.library.conftest import library_face, photo

# What a version 4 SQLite gallery is: the same tables, but no library ones.
V4 = (
    "DROP TABLE library_erased; DROP TABLE library_faces; DROP TABLE library_photos; ALTER TABLE faces DROP COLUMN from_library; "
    "UPDATE meta SET value = '4' WHERE key = 'schema_version'"
)
# What a version 5 one is: the library, without what erased library faces leave behind.
V5 = (
    "DROP TABLE library_erased; ALTER TABLE library_photos DROP COLUMN erased; ALTER TABLE faces DROP COLUMN from_library; "
    "UPDATE meta SET value = '5' WHERE key = 'schema_version'"
)


def fill(store) -> dict:
    """People, faces, a removal, a key and audit events in ``store``; returns what to compare."""
    store.set_model(MODEL, "test-model", "0" * 64, 8)
    store.add_faces([("Ann", face(1)), ("Ann", face(2)), ("Bob", face(3))], MODEL)
    store.remove_person("Bob")
    store.add_api_key("ci", "admin", hash_key(new_key()))
    return snapshot(store)


def snapshot(store) -> dict:
    """What migrating ``store`` must keep."""
    ids, vectors, names = store.embeddings()
    return {
        "gallery_id": store.gallery_id,
        "generation": store.generation,
        "people": store.people(),
        "embeddings": (ids.tolist(), vectors.tobytes(), names),
        "crops": list(store.crops()),
        "keys": store.api_keys(),
        "log": store.audit_log(None),
    }


def same_data(store, before: dict) -> None:
    ids, vectors, names = store.embeddings()
    assert store.gallery_id == before["gallery_id"] and store.generation == before["generation"]
    assert store.people() == before["people"] and (ids.tolist(), vectors.tobytes(), names) == before["embeddings"]
    assert list(store.crops()) == before["crops"] and store.api_keys() == before["keys"]
    assert store.audit_log(None) == before["log"]
    assert store.changes_since(before["generation"] - 1) is not None  # the change log goes on: no index is rebuilt


def library_works(store) -> None:
    """The migrated store records, names and lists library faces."""
    ids = store.record_photo(photo(1), [library_face(1), library_face(2)], MODEL)
    named = store.name_library_faces(ids[:1], "Ann")
    assert store.people() == [("Ann", 3)] and set(named.enrolled) == {ids[0]}
    assert [f.person for f in store.library_faces()] == ["Ann", None]
    store.set_clusters(ids[1:], [0])
    assert store.check() == []


def test_a_version_4_sqlite_gallery_is_migrated_keeping_everything(tmp_path):
    folder = tmp_path / "v4"
    with SQLiteStore(folder, create=True) as store:
        before = fill(store)
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(V4)
    db.close()
    assert "library_photos" not in schema(folder / DB_NAME)
    with SQLiteStore(folder) as store:
        assert int(store.meta()["schema_version"]) == SCHEMA_VERSION == 7
        same_data(store, before)
        library_works(store)
    assert schema(folder / DB_NAME) == schema(new_gallery(tmp_path))


def library_kept(store) -> list:
    """Record a library file with two faces, one named Ann; returns what to compare."""
    ids = store.record_photo(photo(2), [library_face(3), library_face(4)], MODEL)
    store.name_library_faces(ids[:1], "Ann")
    return [(f.id, f.path, f.person, f.assigned, f.enrolled_face_id) for f in store.library_faces()]


def erasure_works(store, library: list) -> None:
    """The migrated store keeps its library, and remembers a removed person's library faces."""
    assert [(f.id, f.path, f.person, f.assigned, f.enrolled_face_id) for f in store.library_faces()] == library
    assert [p.erased for p in store.library_photos()] == [None] and store.erased_photos() == set()
    store.forget_photos([photo(2).path])  # the named face's copy stays enrolled, marked a copy by the migration
    assert store.record_photo(photo(2), [library_face(3), library_face(4)], MODEL)
    first = store.library_faces()[0]
    assert (first.person, first.assigned, first.enrolled_face_id) == library[0][2:]
    library = [(f.id, f.path, f.person, f.assigned, f.enrolled_face_id) for f in store.library_faces()]
    store.remove_person("Ann")
    assert [p.erased for p in store.library_photos()] == [[[None, 13.0, 20.0, 110.0, 140.0]]]
    assert [f.id for f in store.library_faces()] == [library[1][0]] and store.check() == []


def test_a_version_5_sqlite_library_is_migrated_keeping_its_faces(tmp_path):
    folder = tmp_path / "v5"
    with SQLiteStore(folder, create=True) as store:
        fill(store)
        library = library_kept(store)
        before = snapshot(store)
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(V5)
    db.close()
    assert "library_erased" not in schema(folder / DB_NAME)
    with SQLiteStore(folder) as store:
        assert int(store.meta()["schema_version"]) == SCHEMA_VERSION
        same_data(store, before)
        erasure_works(store, library)
    assert schema(folder / DB_NAME) == schema(new_gallery(tmp_path))


def test_a_version_1_postgresql_gallery_is_migrated_keeping_everything(postgres_cluster):
    pytest.importorskip("psycopg")
    url = postgres_cluster.create_database()
    with open_store(url, create=True) as store:
        before = fill(store)
        store.conn.execute("DROP TABLE library_erased; DROP TABLE library_faces; DROP TABLE library_photos")
        store.conn.execute("ALTER TABLE faces DROP COLUMN from_library")
        store.conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with open_store(url) as store:
        assert store.stats()["gallery_schema_version"] == PG_VERSION == 4
        same_data(store, before)
        library_works(store)
        tables = {row[0] for row in store.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"library_photos", "library_faces"} <= tables
        vectors = store.library_vectors([f.id for f in store.library_faces()])
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_a_version_2_postgresql_library_is_migrated_keeping_its_faces(postgres_cluster):
    pytest.importorskip("psycopg")
    url = postgres_cluster.create_database()
    with open_store(url, create=True) as store:
        fill(store)
        library = library_kept(store)
        store.conn.execute("DROP TABLE library_erased; ALTER TABLE library_photos DROP COLUMN erased")
        store.conn.execute("ALTER TABLE faces DROP COLUMN from_library")
        store.conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with open_store(url) as store:
        assert store.stats()["gallery_schema_version"] == PG_VERSION
        erasure_works(store, library)
