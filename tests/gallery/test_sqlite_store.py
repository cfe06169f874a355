"""What only the SQLite store does: files, schema versions and migration, read-only volumes, erasure."""

from __future__ import annotations

import sqlite3

import pytest

from facesys.errors import GalleryError
from facesys.gallery.audit import acting_as
from facesys.gallery.store.sqlite import DB_NAME, SCHEMA_VERSION, SQLiteStore
from facesys.keys import hash_key, new_key
from tests.gallery.conftest import MODEL, face


@pytest.fixture()
def store(tmp_path):
    with SQLiteStore(tmp_path / "g", create=True) as s:
        s.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        yield s


def test_opening_a_missing_gallery_without_create_fails(tmp_path):
    with pytest.raises(GalleryError, match="no gallery here"):
        SQLiteStore(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_a_newer_schema_is_refused_unchanged(tmp_path):
    folder = tmp_path / "g"
    SQLiteStore(folder, create=True).close()
    db = sqlite3.connect(folder / DB_NAME)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = (folder / DB_NAME).read_bytes()
    with pytest.raises(GalleryError, match="newer than this facesys"):
        SQLiteStore(folder)
    assert (folder / DB_NAME).read_bytes() == before


def test_not_a_database_is_a_gallery_error(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="cannot open gallery database"):
        SQLiteStore(folder)


def test_removed_person_leaves_no_bytes_behind(store):
    victim = face(7)
    store.add_face("Victim", victim, MODEL)
    store.add_face("Other", face(8), MODEL)
    store.remove_person("Victim")
    data = b"".join(p.read_bytes() for p in store.folder.glob(DB_NAME + "*"))
    assert victim.embedding.astype("<f4").tobytes() not in data
    assert victim.crop_jpeg not in data and b"Victim" not in data
    assert face(8).crop_jpeg in data


def test_the_audit_log_keeps_no_bytes_of_a_removed_person(store):
    victim, second = face(7), face(8)
    key = new_key()
    with acting_as("key ci"):
        ids = store.add_faces([("Victim Person", victim), ("Victim Person", second), ("Other", face(9))], MODEL)
        store.rename_person("Victim Person", "Victim Renamed")
        store.remove_faces([ids[1]])
        store.add_api_key("ci", "enroll", hash_key(key))
        store.remove_person("Victim Renamed")
    files = sorted(p.name for p in store.folder.glob(DB_NAME + "*"))
    data = b"".join(p.read_bytes() for p in store.folder.glob(DB_NAME + "*"))
    assert b"remove_person" in data and b"key ci" in data and hash_key(key).encode() in data, files  # the log is there
    assert key.encode() not in data  # a key is kept only as its hash
    for secret in (b"Victim", victim.source.encode(), second.source.encode(), victim.image_sha256.encode()):
        assert secret not in data, (secret, files)
    assert victim.crop_jpeg not in data and second.embedding.astype("<f4").tobytes() not in data


def test_a_read_only_file_is_still_read(store):
    store.add_face("Ann", face(1), MODEL)
    store.close()
    store.path.chmod(0o444)
    store.folder.chmod(0o555)
    try:
        with SQLiteStore(store.folder) as again:
            assert again.people() == [("Ann", 1)]
            if not again.writable:  # as root, permissions do not stop writes
                with pytest.raises(GalleryError, match="cannot write"):
                    again.add_face("Bob", face(2), MODEL)
    finally:
        store.folder.chmod(0o755)
        store.path.chmod(0o644)


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE faces (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source TEXT NOT NULL, image_sha256 TEXT NOT NULL UNIQUE, box TEXT NOT NULL, landmarks TEXT NOT NULL, score REAL NOT NULL,
    crop BLOB NOT NULL, crop_origin TEXT NOT NULL, embedding BLOB NOT NULL, model_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX faces_person ON faces(person_id);
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
    with SQLiteStore(folder) as store:
        assert int(store.meta()["schema_version"]) == SCHEMA_VERSION
        assert store.people() == [("Old Timer", 1)]
        assert store.embeddings()[1][0].tobytes() == v
        assert len(store.gallery_id) == 16 and store.changes_since(0) is None  # the log starts at the migration
        generation = store.generation
        new = store.add_face("New", face(4), MODEL)  # the migrated tables take new rows (with sharpness, logged)
        assert store.changes_since(generation).added.tolist() == [new]
        assert store.check() == []
        assert [(e.action, e.person) for e in store.audit_log()] == [("enroll", "New")]
        assert schema(store.path) == schema(new_gallery(tmp_path))


def schema(path) -> dict[str, list[str]]:
    """Table -> its columns, and index -> its columns, of the database at ``path``."""
    db = sqlite3.connect(path)
    try:
        named = db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'")
        pragma = {"table": "table_info", "index": "index_info"}
        return {
            name: [row[2 if kind == "index" else 1] for row in db.execute(f"PRAGMA {pragma[kind]}({name})")]
            for kind, name in named
        }
    finally:
        db.close()


def new_gallery(tmp_path):
    """The database path of a gallery made now."""
    with SQLiteStore(tmp_path / "new", create=True) as store:
        return store.path


def test_a_version_3_gallery_is_migrated_to_keys_and_a_log(tmp_path):
    folder = tmp_path / "v3"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([("Ann", face(1)), ("Bob", face(2))], MODEL)
        store.remove_person("Bob")  # Bob had the highest person id
    db = sqlite3.connect(folder / DB_NAME)  # what a version 3 gallery is: no keys, no log, no person id counter
    db.executescript(
        "DROP TABLE api_keys; DROP TABLE audit; DELETE FROM meta WHERE key = 'last_person_id'; "
        "UPDATE meta SET value = '3' WHERE key = 'schema_version';"
    )
    db.close()
    with SQLiteStore(folder) as store:
        assert int(store.meta()["schema_version"]) == SCHEMA_VERSION
        assert store.people() == [("Ann", 1)] and store.audit_log() == [] and store.api_keys() == []
        key = new_key()
        store.add_api_key("ci", "admin", hash_key(key))
        store.add_face("Cy", face(3), MODEL)
        assert store.api_key_for_hash(hash_key(key)).scope == "admin"
        assert [(e.action, e.person) for e in store.audit_log()] == [("enroll", "Cy"), ("key_create", None)]
        store.remove_person("Cy")
        store.add_face("Dee", face(4), MODEL)  # from version 4 on, no person id is given twice
        enrolled = [e for e in store.audit_log() if e.action == "enroll"]
        assert [e.person for e in enrolled] == ["Dee", None] and enrolled[0].person_id > enrolled[1].person_id
    assert schema(folder / DB_NAME) == schema(new_gallery(tmp_path))


KILLED_REMOVAL = """
import os, sys
from facesys.gallery.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
store.db.execute("PRAGMA secure_delete = OFF")  # as upstream SQLite builds default to
store.erase_freed_pages = lambda: os._exit(9)  # killed right after the removal's commit
store.remove_person("Victim")
"""


def test_a_removal_killed_before_its_erasure_is_finished_by_the_next_open(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        victim = [face(seed) for seed in range(5)]
        for new in victim:
            store.add_face("Victim", new, MODEL)
        for seed in range(5, 60):
            store.add_face("Other", face(seed), MODEL)
        store.erase_freed_pages()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", KILLED_REMOVAL, str(folder)], env=env, capture_output=True, timeout=120)
    assert result.returncode == 9, result.stderr
    with SQLiteStore(folder) as store:  # any writable open finishes the erasure
        assert store.people() == [("Other", 55)] and "erase_pending" not in store.meta()
    data = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
    assert not any(new.embedding.astype("<f4").tobytes() in data or new.crop_jpeg in data for new in victim)
    assert b"Victim" not in data


def _open_writable(folder: str, barrier, answers) -> None:
    barrier.wait()
    try:
        with SQLiteStore(folder, create=True) as store:
            answers.put(store.writable)
    except Exception as exc:  # reported to the test, which fails on it
        answers.put(repr(exc))


def test_processes_creating_a_gallery_at_once_all_get_a_writable_store(tmp_path):
    """Switching to WAL does not wait for a lock held by a process creating the schema; a process
    that met it used to fall back to a read-only store and fail its first write."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for trial in range(4):
        barrier, answers = context.Barrier(4), context.Queue()
        workers = [context.Process(target=_open_writable, args=(str(tmp_path / f"g{trial}"), barrier, answers)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [answers.get(timeout=10) for _ in workers] == [True] * 4
