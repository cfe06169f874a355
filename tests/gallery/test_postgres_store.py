"""What only the PostgreSQL store does: several connections (servers) at once, change
notifications, passwords kept out of every message, an unreachable or restarted server, and
export / import between SQLite and PostgreSQL. Runs on a throwaway cluster (tests/postgres.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import pytest

pytest.importorskip("psycopg", reason='psycopg not installed (in the facesys checkout, pip install -e ".[postgres]")')

from facesys.errors import DuplicatePhotoError, GalleryError, GalleryUnavailableError, NameConflictError, UnknownPersonError
from facesys.gallery.location import public_url
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store import backend_for, open_store, store_exists
from facesys.gallery.store.postgres import SCHEMA_VERSION, PostgresStore
from facesys.gallery.store.sqlite import SQLiteStore
from tests.gallery.conftest import MODEL, face
from tests.postgres import free_port


@pytest.fixture()
def url(postgres_cluster) -> str:
    """A new database holding a gallery bound to the 8-D test model."""
    location = postgres_cluster.create_database()
    with open_store(location, create=True) as store:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
    return location


def at_once(*calls) -> list[object]:
    """Run the calls in threads released together; returns each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_urls_choose_the_backend_and_the_store_class():
    assert backend_for("postgresql://u@h/db") == backend_for("postgres://u@h/db") == "postgresql"
    assert backend_for("gallery") == "sqlite"
    with pytest.raises(GalleryError, match="names no database"):
        PostgresStore("postgresql://u:secret@127.0.0.1:1")


def test_exists_creates_nothing_and_a_new_store_makes_the_schema(postgres_cluster):
    location = postgres_cluster.create_database()
    assert not store_exists(location) and not PostgresStore.exists(location)
    with pytest.raises(GalleryError, match="no gallery here"):
        open_store(location)
    assert not store_exists(location)  # neither call made a table
    with open_store(location, create=True) as store:
        assert store.generation == 0 and store.model_id is None
        assert store.stats()["gallery_schema_version"] == SCHEMA_VERSION
    assert store_exists(location)


def test_stores_made_at_once_share_one_schema_and_gallery_id(postgres_cluster):
    location = postgres_cluster.create_database()

    def make() -> str:
        with open_store(location, create=True) as store:
            return store.gallery_id

    ids = at_once(*[make] * 6)
    assert len(set(ids)) == 1 and isinstance(ids[0], str), ids


def test_a_newer_schema_is_refused(url):
    with PostgresStore(url) as store:
        store.conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(GalleryError, match="newer than this facesys"):
        PostgresStore(url)


def test_two_servers_creating_ann_and_ann_at_once_make_one_person(url):
    with open_store(url) as first, open_store(url) as second:
        results = at_once(lambda: first.add_face("Ann", face(1), MODEL), lambda: second.add_face("ann", face(2), MODEL))
        people = first.people()
    assert len(people) == 1 and people[0][0] in ("Ann", "ann") and people[0][1] == 1, (people, results)
    (refused,) = [r for r in results if not isinstance(r, int)]
    assert isinstance(refused, NameConflictError) and refused.existing == people[0][0], results


def test_the_same_photo_enrolled_at_once_is_stored_once(url):
    with open_store(url) as first, open_store(url) as second:
        results = at_once(lambda: first.add_face("Ann", face(1), MODEL), lambda: second.add_face("Bob", face(1), MODEL))
        assert first.face_count() == 1
        owner = first.person_of_image(face(1).image_sha256)
    assert sum(isinstance(r, int) for r in results) == 1, results
    (refused,) = [r for r in results if isinstance(r, Exception)]
    assert isinstance(refused, DuplicatePhotoError) and refused.owner == owner


def test_many_writers_keep_generations_in_commit_order_and_the_log_complete(url):
    with open_store(url) as reader:
        start = reader.generation

    def enroll(seed: int) -> list[int]:
        with open_store(url) as store:
            return [store.add_face(f"person {seed}", face(seed * 10 + i), MODEL) for i in range(5)]

    results = at_once(*[lambda seed=seed: enroll(seed) for seed in range(6)])
    ids = sorted(i for r in results for i in r)
    with open_store(url) as reader:
        assert reader.generation == start + 30 and reader.face_ids().tolist() == ids
        assert reader.changes_since(start).added.tolist() == ids
        # every generation logged exactly its own face: a follower at any generation catches up
        for generation in range(start, start + 30, 7):
            assert len(reader.changes_since(generation).added) == start + 30 - generation


def test_wait_for_change_hears_another_store_commit_within_a_second(url):
    with open_store(url) as follower, open_store(url) as writer:
        assert follower.wait_for_change(0) is True  # the first call: changes before it listened are unknown
        assert follower.wait_for_change(0.2) is False
        committed: list[float] = []

        def enroll() -> None:
            time.sleep(0.3)
            writer.add_face("Ann", face(1), MODEL)
            committed.append(time.monotonic())

        thread = threading.Thread(target=enroll)
        thread.start()
        assert follower.wait_for_change(10) is True
        heard = time.monotonic()
        thread.join()
        assert heard - committed[0] < 1.0
        writer.rename_person("Ann", "Anne")  # a change made while nobody waits is kept for the next call
        assert follower.wait_for_change(5) is True
        assert follower.wait_for_change(0.1) is False


def test_sqlite_keeps_the_polling_default(tmp_path):
    with SQLiteStore(tmp_path / "g", create=True) as store:
        started = time.monotonic()
        assert store.wait_for_change(0.05) is False
        assert time.monotonic() - started >= 0.05


def test_the_password_is_never_shown(postgres_cluster):
    secret = "pa55-w0rd-never-shown"
    role = f"owner_{free_port()}"
    postgres_cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")  # trust: any password is accepted
    location = postgres_cluster.create_database(owner=role, password=secret)
    assert secret in location
    errors: list[BaseException] = []
    with open_store(location, create=True) as store:
        assert secret not in store.location and store.location == location.replace(f":{secret}", "")
        assert secret not in str(store.stats())
        try:
            store.remove_person("Nobody")
        except UnknownPersonError as exc:
            errors.append(exc)
        try:
            store.add_face("Ann", face(1), "another@model")
        except GalleryError as exc:
            errors.append(exc)
    unreachable = f"postgresql://{role}:{secret}@127.0.0.1:{free_port()}/x"
    no_database = f"postgresql://{role}:{secret}@127.0.0.1:1"
    for call in (lambda: open_store(unreachable), lambda: store_exists(unreachable), lambda: PostgresStore(no_database)):
        try:
            call()
        except GalleryError as exc:
            errors.append(exc)
    assert len(errors) == 5
    for exc in errors:
        shown = "".join(traceback.format_exception(exc))
        assert secret not in str(exc) and secret not in repr(exc) and secret not in shown, shown
    assert (
        public_url(f"postgresql://u:{secret}@h:5/db?sslmode=require&password={secret}") == "postgresql://u@h:5/db?sslmode=require"
    )
    assert public_url("postgres://u@h1:5,h2:6/db") == "postgres://u@h1:5,h2:6/db"


def test_an_unreachable_server_is_one_line_quickly():
    location = f"postgresql://facesys:secret@127.0.0.1:{free_port()}/gallery"
    started = time.monotonic()
    with pytest.raises(GalleryUnavailableError) as caught:
        open_store(location)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "secret" not in message
    assert message.startswith(f"postgresql://facesys@{location.split('@')[1]}: database unreachable (")


def test_after_the_server_restarts_a_new_store_works_again(url, postgres_cluster):
    held = open_store(url)
    held.add_face("Ann", face(1), MODEL)
    assert held.wait_for_change(0) is True  # now listening
    postgres_cluster.stop()
    try:
        with pytest.raises(GalleryUnavailableError, match="database unreachable"):
            held.people()
        with pytest.raises(GalleryUnavailableError, match="database unreachable"):
            held.wait_for_change(1)  # its listening connection is gone, and cannot be made again yet
        assert held.check()[0].startswith(f"postgresql: {url}: database unreachable")  # reported, not raised
        started = time.monotonic()
        with pytest.raises(GalleryUnavailableError, match="database unreachable"):
            open_store(url)
        assert time.monotonic() - started < 10
    finally:
        postgres_cluster.start()
    assert held.wait_for_change(5) is True  # listening again: what happened meanwhile is unknown, so re-sync
    held.close()
    with open_store(url) as store:  # the pool replaced its dead connections
        assert store.people() == [("Ann", 1)]
        store.add_face("Bob", face(2), MODEL)
        assert store.wait_for_change(0) is True


def test_a_failed_transaction_leaves_the_connection_usable(url):
    with open_store(url) as store:
        store.add_face("Ann", face(1), MODEL)
        with pytest.raises(DuplicatePhotoError):
            store.add_faces([("Bob", face(2)), ("Cy", face(1))], MODEL)
        with pytest.raises(GalleryError, match="database error"), store.reading():
            store._rows("SELECT * FROM no_such_table")
        assert store.people() == [("Ann", 1)]
        assert store.add_face("Bob", face(2), MODEL) == 2


def test_a_database_is_not_set_aside(url):
    """(check, stats and salvage: tests/gallery/test_store_interface.py)"""
    with open_store(url) as store:
        store.add_face("Ann", face(1), MODEL)
        store.conn.execute("INSERT INTO people(name, name_key, created_at) VALUES ('Nobody', 'nobody', 0)")
        with pytest.raises(GalleryError, match="not applicable"):
            store.set_aside("damaged")
        assert store.remove_empty_people() == 1
        store.erase_freed_pages()


def test_gallery_repair_of_a_database_moves_nothing(url, tmp_path, monkeypatch):
    gallery_module = pytest.importorskip("facesys.gallery.gallery")
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path / "cache"))
    with open_store(url) as store:
        store.add_face("Ann", face(1), MODEL)
        store.conn.execute("INSERT INTO people(name, name_key, created_at) VALUES ('Nobody', 'nobody', 0)")
        gallery_id = store.gallery_id
    done = gallery_module.Gallery(url).repair()
    assert done == ["removed 1 person(s) without faces", "rebuilt the index"]
    with open_store(url) as store:
        assert store.people() == [("Ann", 1)] and store.gallery_id == gallery_id  # the same database, not a new one


def test_export_from_sqlite_through_postgresql_back_to_sqlite_keeps_everything(tmp_path, postgres_cluster):
    with SQLiteStore(tmp_path / "first", create=True) as first:
        first.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        first.add_faces([("Zoë", face(1)), ("Ann", face(2)), ("Zoë", face(3)), ("李小龍", face(4))], MODEL)
        first.add_face("Bob", face(5), MODEL)
        first.remove_faces([2])
        first.set_setting("verify_threshold", 0.61)
        first.set_setting("identify_threshold", 0.52)
        first.set_setting("index_kind", "hnsw")
        assert export_gallery(first, tmp_path / "one.zip") == 4
        expected = snapshot(first)
    location = postgres_cluster.create_database()
    with open_store(location, create=True) as middle:
        assert import_gallery(middle, tmp_path / "one.zip") == (4, 0)
        assert snapshot(middle) == expected
        assert export_gallery(middle, tmp_path / "two.zip") == 4
    with SQLiteStore(tmp_path / "last", create=True) as last:
        assert import_gallery(last, tmp_path / "two.zip") == (4, 0)
        assert snapshot(last) == expected


def snapshot(store) -> dict:
    """Everything an export carries, with face ids replaced by their rank (a new gallery numbers
    its faces anew, in the same order)."""
    records = store.faces()
    ids, vectors, names = store.embeddings()
    assert ids.tolist() == [r.id for r in records] == sorted(ids.tolist()) and vectors.dtype == np.float32
    crops = {face_id: (jpeg, origin, landmarks) for face_id, jpeg, origin, landmarks in store.crops()}
    return {
        "people": store.people(),
        "faces": [(r.person, r.source, r.image_sha256, r.box, r.landmarks, r.score, r.crop_origin, r.model_id) for r in records],
        "names": names,
        "embeddings": [vector.astype("<f4").tobytes() for vector in vectors],
        "crops": [crops[r.id] for r in records],
        "crop_by_id": [store.crop(r.id) for r in records],
        "model": {key: store.meta().get(key) for key in ("model_id", "model_name", "weights_sha256", "dim", "metric")},
        "settings": {key: store.setting(key) for key in ("verify_threshold", "identify_threshold", "index_kind")},
    }


def test_facesys_imports_without_psycopg_and_says_what_to_install():
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import facesys.gallery.gallery, facesys.gallery.store as s\n"
        "from facesys.errors import GalleryError\n"
        "try:\n    s.open_store('postgresql://u:pw@127.0.0.1:1/db')\n"
        "except GalleryError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    expected = 'PostgreSQL galleries need psycopg: in the facesys checkout, pip install -e ".[postgres]"'
    assert done.stdout.strip() == expected, done.stderr
