"""The PostgreSQL truth store: one database that several ``facesys serve`` processes share.

The location is a URL, ``postgresql://USER[:PASS]@HOST[:PORT]/DB`` (or ``postgres://``). Its
password is used to connect and nowhere else: ``location``, every message and every error show
the URL without it (:func:`facesys.gallery.location.public_url`).

Tables (schema version 3 of this backend, in the connection's search_path, usually ``public``)
hold what SQLite's do (see sqlite.py), with the rules as constraints, so that any number of
servers cannot break them:

- ``meta(key, value)``: schema_version, gallery_id (random), model_id, model_name,
  weights_sha256, dim, metric, generation, log_from, created_at, and settings.
- ``people(id, name, name_key UNIQUE, created_at)``: one person per name compared ignoring case.
- ``faces(id, person_id, source, image_sha256 UNIQUE, box, landmarks, score, crop BYTEA,
  crop_origin, embedding BYTEA, model_id, created_at, sharpness)``: box, landmarks and crop origin
  as JSON text, the embedding as little-endian float32 bytes (the same bytes as SQLite's).
- ``changes(generation, face_id, added)``: face ids only, indexed by generation.
- ``api_keys(id, name, scope, key_hash UNIQUE, created_at, revoked_at)``: one active key per name
  (a partial unique index).
- ``audit(id, at, actor, action, person_id, detail)``: person ids, never names, paths or hashes.
- ``library_photos`` and ``library_faces`` (v2): the photo library, as SQLite's (see sqlite.py);
  a removal VACUUMs them too. v3: ``library_photos.erased`` and ``library_erased``, what a removed
  person's erased library faces leave behind, and ``faces.from_library``, as SQLite's v6.

Face and person ids are identity columns (GENERATED ALWAYS): never reused, even after a rollback.

Every change is ONE transaction (READ COMMITTED) that first locks meta's ``generation`` row, so
writers queue (as SQLite's BEGIN IMMEDIATE makes them) and generations follow commit order, which
``changes_since`` relies on. It bumps the generation, logs face ids in ``changes``, writes its
audit event and sends ``pg_notify('facesys_changes', '<gallery id>:<generation>')``, delivered at
commit: :meth:`PostgresStore.wait_for_change` hears it in every process. ``reading()`` is one
REPEATABLE READ READ ONLY transaction.

Connections come from one small pool per URL per process (:func:`close_pools`); a store borrows
one and gives it back in ``close()``; a store is used by one thread at a time. A server that
cannot be reached raises :class:`GalleryUnavailableError`, one line naming the URL without its
password; other database errors raise GalleryError naming it. A failed transaction is rolled back
and its connection stays usable.

Erasure: a removal deletes the rows and then VACUUMs the tables (:meth:`PostgresStore.erase_freed_pages`).
PostgreSQL keeps deleted rows in its files until VACUUM marks their space free, and even then the
bytes stay on disk until new rows reuse that space; copies in the WAL, replicas and backups
follow the server's own retention. Unlike SQLite's, this erasure is therefore best effort.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np
import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from facesys.errors import (
    ConflictError,
    DuplicatePhotoError,
    GalleryError,
    GalleryUnavailableError,
    GalleryVersionError,
    NameConflictError,
    NoGalleryError,
    UnknownKeyError,
    UnknownPersonError,
)
from facesys.gallery.audit import AuditEvent, current_actor
from facesys.gallery.location import public_url
from facesys.gallery.store.base import (
    KEYS_REQUIRED,
    LIBRARY_FACE_COLUMNS,
    LIBRARY_FACES_FROM,
    Carried,
    Changes,
    FaceRecord,
    LibraryFace,
    LibraryPhoto,
    NewFace,
    NewLibraryFace,
    ScannedPhoto,
    TruthStore,
    check_key_spelling,
    check_new_key,
    detail_json,
    embedding_bytes,
    erased_boxes,
    face_problems,
    face_record,
    faces_by_person,
    fold_changes,
    geometry_json,
    key_name,
    library_face,
    library_face_problems,
    missing_library_faces,
    name_key,
    normalize_name,
    possible_ids,
    salvaged_face,
    same_faces,
    valid_id,
    valid_ids,
)
from facesys.keys import ApiKey

SCHEMA_VERSION = 3  # this backend's own numbering (v2: the photo library; v3: erased library faces remembered)
SCHEMES = ("postgresql", "postgres")
CHANNEL = "facesys_changes"  # NOTIFY channel; payload "<gallery id>:<generation>"
POOL_SIZE = 8  # connections per URL per process, at most
CONNECT_TIMEOUT_S = 5  # to open one connection
POOL_WAIT_S = 5.0  # to get a free connection from a busy pool before the database counts as unreachable
RECONNECT_S = 1.0  # how long the pool retries a failed connection in the background before the next request tries again
_WAIT_SLICE_S = 0.1  # a store waiting for a connection looks this often whether an attempt to connect failed
STREAM_BYTES = 16 * 2**20  # about this many bytes per chunk when reading every face
TABLES = ("meta", "people", "faces", "changes", "api_keys", "audit", "library_photos", "library_faces", "library_erased")
_SCHEMA_LOCK = 0x66616365_73797300  # pg_advisory_xact_lock key held while creating or migrating the schema
_FACE_COLUMNS = "f.id, p.name, f.source, f.image_sha256, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, f.created_at"
_FACES = "faces f JOIN people p ON p.id = f.person_id"
_KEY_COLUMNS = "name, scope, created_at, revoked_at"
# Whether a table "meta" is on the search path, read from pg_class with the statement's own snapshot:
# to_regclass would use the catalog cache, which a process that waited for the schema lock has not
# refreshed yet, and would not see the tables another process has just made.
_HAS_META = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = 'meta' AND n.nspname = ANY(current_schemas(false)))"
)

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE people (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, "
    "name_key TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE faces (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE, source TEXT NOT NULL, "
    "image_sha256 TEXT NOT NULL UNIQUE, box TEXT NOT NULL, landmarks TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, "
    "crop BYTEA NOT NULL, crop_origin TEXT NOT NULL, embedding BYTEA NOT NULL, model_id TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, sharpness DOUBLE PRECISION)",
    "CREATE INDEX faces_person ON faces(person_id)",
    "CREATE TABLE changes (generation BIGINT NOT NULL, face_id BIGINT NOT NULL, added BOOLEAN NOT NULL)",
    "CREATE INDEX changes_generation ON changes(generation)",
    "CREATE TABLE api_keys (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, "
    "key_hash TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)",
    "CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL",
    "CREATE TABLE audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at DOUBLE PRECISION NOT NULL, "
    "actor TEXT NOT NULL, action TEXT NOT NULL, person_id BIGINT, detail TEXT NOT NULL)",
    "CREATE INDEX audit_at ON audit(at)",
]
# v2: the photo library (scanned files; the faces found in them, unnamed until named: never in
# ``faces``, so identify cannot see them).
_LIBRARY = [
    "CREATE TABLE library_photos (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, path TEXT NOT NULL UNIQUE, "
    "size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, sha256 TEXT NOT NULL, faces INTEGER NOT NULL, error TEXT, model_id TEXT, "
    "scanned_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE library_faces (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "photo_id BIGINT NOT NULL REFERENCES library_photos(id) ON DELETE CASCADE, frame INTEGER, box TEXT NOT NULL, "
    "landmarks TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, crop BYTEA NOT NULL, crop_origin TEXT NOT NULL, "
    "embedding BYTEA NOT NULL, model_id TEXT NOT NULL, cluster BIGINT, "
    "person_id BIGINT REFERENCES people(id) ON DELETE SET NULL, assigned TEXT CHECK (assigned IN ('auto', 'user')), "
    "enrolled_face_id BIGINT REFERENCES faces(id) ON DELETE SET NULL)",
    "CREATE INDEX library_faces_photo ON library_faces(photo_id)",
    "CREATE INDEX library_faces_person ON library_faces(person_id)",
    "CREATE INDEX library_faces_cluster ON library_faces(cluster)",
    "CREATE INDEX library_faces_enrolled ON library_faces(enrolled_face_id)",
]
# v3: what a removed person's erased library faces leave behind (see TruthStore.remove_person).
_ERASED = [
    "ALTER TABLE library_photos ADD COLUMN erased TEXT",
    "CREATE TABLE library_erased (sha256 TEXT PRIMARY KEY, faces INTEGER NOT NULL)",
    "ALTER TABLE faces ADD COLUMN from_library BOOLEAN",  # true: a copy made by naming a library face
    "UPDATE faces SET from_library = true WHERE id IN (SELECT enrolled_face_id FROM library_faces)",
]
_SCHEMA += _LIBRARY + _ERASED
# Statements that bring a gallery from version N to N + 1; applied in one transaction on open.
_MIGRATIONS: dict[int, list[str]] = {1: _LIBRARY, 2: _ERASED}

_LOCK_WRITERS = "SELECT value FROM meta WHERE key = 'generation' FOR UPDATE"
_BUMP = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' RETURNING value::bigint"
_NOTIFY = (
    "SELECT pg_notify(%s, (SELECT value FROM meta WHERE key = 'gallery_id') || ':' || "
    "(SELECT value FROM meta WHERE key = 'generation'))"
)
_SET_META = "INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_INSERT_FACE = (
    "INSERT INTO faces(person_id, source, image_sha256, box, landmarks, score, crop, crop_origin, embedding, model_id, "
    "created_at, sharpness) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (image_sha256) DO NOTHING RETURNING id"
)

# psycopg_pool logs each failed connection attempt as a warning; a process that configured no
# logging would print them on stderr besides our one-line error. Applications that configure
# logging still get them (this only stops Python's last-resort printing).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


# -- URLs ------------------------------------------------------------------------------------------


def _passwords(url: str) -> list[str]:
    """The secrets in ``url`` (as written and decoded), to scrub from any text shown."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo.partition(":")[2]] + [value for key, value in parse_qsl(parts.query) if key == "password"]
    return sorted({text for secret in found if secret for text in (secret, unquote(secret))}, key=len, reverse=True)


def _checked_url(location: object) -> str:
    """``location`` when it is a postgresql:// or postgres:// URL naming a database; GalleryError otherwise."""
    if not isinstance(location, str) or urlsplit(location).scheme not in SCHEMES or "://" not in location:
        raise GalleryError(
            "a PostgreSQL gallery is a URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE", parameter="gallery"
        )
    if not urlsplit(location).path.strip("/"):
        raise GalleryError(f"{public_url(location)}: the URL names no database (…/DATABASE at its end)", parameter="gallery")
    return location


# -- connection pools ------------------------------------------------------------------------------

_failures: dict[str, tuple[float, str]] = {}  # URL -> (monotonic time, why) of the last failed attempt to connect to it
_pools: dict[str, ConnectionPool] = {}
_inherited: list[ConnectionPool] = []  # pools of a parent process: kept (unused) so their sockets are never closed here
_pools_lock = threading.Lock()


def _reason(exc: BaseException, url: str) -> str:
    """A short reason for a database error: its first line (for a failed connection, what follows
    the last "failed: "), with any password of ``url`` blanked out."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError) and "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    text = text.removeprefix("FATAL:").strip()
    for secret in _passwords(url):
        text = text.replace(secret, "***")
    return text or type(exc).__name__


class _Connection(psycopg.Connection):
    """A psycopg connection that records why connecting failed (the pool only logs it), so a pool
    timeout can say why the database is unreachable."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs):  # type: ignore[override]
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            _failures[conninfo] = (time.monotonic(), _reason(exc, conninfo))
            raise
        _failures.pop(conninfo, None)
        return conn


def _pool(url: str) -> ConnectionPool:
    """This process's connection pool for ``url`` (made on first use): 1 to POOL_SIZE autocommit
    connections, each checked when lent, so connections broken by a server restart are replaced.
    A failed connection is retried in the background for RECONNECT_S only; after that the next
    request tries again at once, so a server that is back is used at once."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                url,
                connection_class=_Connection,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                min_size=1,
                max_size=POOL_SIZE,
                timeout=POOL_WAIT_S,
                reconnect_timeout=RECONNECT_S,
                check=ConnectionPool.check_connection,
                name=public_url(url),
                open=False,
            )
            pool.open(wait=False)
            _pools[url] = pool
        return pool


def close_pools(url: str | None = None) -> None:
    """Close this process's connection pools (that of ``url``, or all): at exit, and before a
    database is dropped. A later store makes a new pool."""
    with _pools_lock:
        pools = [_pools.pop(key) for key in list(_pools) if url is None or key == url]
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.close(timeout=1.0)


def _forget_pools_after_fork() -> None:
    """A forked child must not use (nor close) its parent's connections: it makes its own."""
    _inherited.extend(_pools.values())
    _pools.clear()


atexit.register(close_pools)
os.register_at_fork(after_in_child=_forget_pools_after_fork)


# -- the store -------------------------------------------------------------------------------------


class PostgresStore(TruthStore):
    """The gallery in the PostgreSQL database at ``location`` (see the module docstring).

    ``create``: make the tables when the database has none (enrolling does; reading does not).
    The database itself must exist (``CREATE DATABASE`` is the administrator's).
    """

    _cursor_names = itertools.count()

    def __init__(self, location: str, create: bool = False):
        self._connect(location)
        try:
            self._open(create)
        except BaseException:
            self.close()
            raise

    def _connect(self, location: str) -> None:
        """Borrow a connection from the pool of ``location``."""
        self._url = _checked_url(location)
        self.location = public_url(self._url)
        self._listener: psycopg.Connection | None = None
        self._changed = False  # whether the open transaction wrote an audit event (then it notifies)
        self._closed = False
        self._pool = _pool(self._url)
        try:
            self.conn = self._borrow()
        except GalleryUnavailableError:
            self._closed = True
            raise

    def _borrow(self) -> psycopg.Connection:
        """A connection from the pool. GalleryUnavailableError (one line, with the reason) as soon
        as an attempt to connect fails while it waits, or when none is free within POOL_WAIT_S."""
        asked = time.monotonic()
        while True:
            try:
                return self._pool.getconn(timeout=_WAIT_SLICE_S)
            except PoolTimeout:
                failed_at, reason = _failures.get(self._url, (0.0, ""))
                if failed_at >= asked:
                    raise self._unreachable(reason) from None
                if time.monotonic() - asked >= POOL_WAIT_S:
                    raise self._unreachable(reason or f"no free connection within {POOL_WAIT_S:g} s") from None

    @classmethod
    def exists(cls, location: str) -> bool:
        """Whether the database holds a facesys gallery (creates nothing). GalleryUnavailableError
        when it cannot be reached."""
        store = cls.__new__(cls)
        store._connect(location)
        try:
            return store._meta_if_gallery() is not None
        finally:
            store.close()

    def _meta_if_gallery(self) -> dict[str, str] | None:
        """meta when the database holds a gallery; None when it has no ``meta`` table. GalleryError
        when it has one of something else."""
        if not self._row(_HAS_META)[0]:
            return None
        meta = self.meta()
        if "gallery_id" not in meta:
            raise GalleryError(
                f"{self.location}: the database has a table 'meta' that is not a facesys gallery's; use another database"
            )
        return meta

    def _open(self, create: bool) -> None:
        meta = self._meta_if_gallery()
        if meta is None:
            if not create:
                raise NoGalleryError(self.location)
            meta = self._create_schema()
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise GalleryVersionError(
                f"{self.location}: gallery schema version {version} is newer than this facesys supports "
                f"({SCHEMA_VERSION}); upgrade facesys"
            )
        if version < SCHEMA_VERSION:
            meta = self._migrate()
        self._gallery_id = meta["gallery_id"]

    def _create_schema(self) -> dict[str, str]:
        """Make the tables, once even when several processes try at the same time; returns meta."""
        with self._errors(), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if not self._row(_HAS_META)[0]:  # another process may have made it meanwhile
                for statement in _SCHEMA:
                    self.conn.execute(statement)
                values = {"schema_version": SCHEMA_VERSION, "generation": 0, "log_from": 0}
                self._set_meta(values | {"gallery_id": secrets.token_hex(8), "created_at": time.time()})
            return self.meta()

    def _migrate(self) -> dict[str, str]:
        """Bring the gallery to SCHEMA_VERSION, all steps in one transaction; returns meta."""
        with self._errors(), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            version = int(self.meta()["schema_version"])  # another process may have migrated it
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    self.conn.execute(statement)
                version += 1
            self._set_meta({"schema_version": version})
            return self.meta()

    def close(self) -> None:
        """Give the connection back to the pool (rolled back if a transaction is open) and close the
        listening connection, if any."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._pool.putconn(self.conn)
        self._drop_listener()

    def __del__(self) -> None:
        # A store dropped without close() still gives its connection back: else the pool runs dry.
        with contextlib.suppress(Exception):
            self.close()

    # -- errors, transactions and queries ------------------------------------------------------

    def _unreachable(self, reason: str) -> GalleryUnavailableError:
        return GalleryUnavailableError(f"{self.location}: database unreachable ({reason})")

    def _error(self, exc: psycopg.Error) -> GalleryError:
        """One GalleryError line for a psycopg error: GalleryUnavailableError when the connection
        failed or was lost, ConflictError for a refused duplicate, GalleryError otherwise."""
        reason = _reason(exc, self._url)
        sqlstate = getattr(exc, "sqlstate", None) or ""
        lost = self.conn.broken or self.conn.closed or sqlstate.startswith(("08", "57P"))
        if lost or (isinstance(exc, psycopg.OperationalError) and not sqlstate):
            return self._unreachable(reason)
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return ConflictError(f"{self.location}: change refused by the database ({reason})")
        return GalleryError(f"{self.location}: database error ({reason})")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg errors inside become one GalleryError naming the database (no password, no traceback)."""
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(exc) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction. It first locks meta's generation row, so writers queue; it sends
        the change notification when it wrote an audit event. Any failure rolls everything back
        (the connection stays usable) and psycopg errors become one GalleryError."""
        self._changed = False
        with self._errors(), self.conn.transaction():
            self.conn.execute(_LOCK_WRITERS)
            yield
            if self._changed:
                self.conn.execute(_NOTIFY, (CHANNEL,))

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One REPEATABLE READ READ ONLY transaction: every query inside sees the same committed
        state. Nested uses (and uses inside a write transaction) share the outer one."""
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            yield
            return
        with self._errors():
            self.conn.isolation_level, self.conn.read_only = IsolationLevel.REPEATABLE_READ, True
        try:
            with self._errors(), self.conn.transaction():
                yield
        finally:
            with contextlib.suppress(psycopg.Error):
                self.conn.isolation_level, self.conn.read_only = None, None

    def _rows(self, query: str, params: tuple | list = (), binary: bool = False) -> list[tuple]:
        with self._errors(), self.conn.cursor(binary=binary) as cursor:
            return cursor.execute(query, params).fetchall()

    def _row(self, query: str, params: tuple | list = (), binary: bool = False) -> tuple | None:
        with self._errors(), self.conn.cursor(binary=binary) as cursor:
            return cursor.execute(query, params).fetchone()

    def _execute(self, query: str, params: tuple | list = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._errors():
            return self.conn.execute(query, params).rowcount

    def _batches(self, query: str, rows: int = 500) -> Iterator[list[tuple]]:
        """The rows of ``query``, ``rows`` at a time, from a server-side cursor (binary, so bytea
        arrives as bytes, not hex), in one read snapshot."""
        name = f"facesys_{next(self._cursor_names)}"
        with self.reading(), self._errors(), self.conn.cursor(name=name, binary=True) as cursor:
            cursor.execute(query)
            while batch := cursor.fetchmany(rows):
                yield batch

    def _stream(self, query: str) -> Iterator[tuple]:
        """The rows of ``query`` one by one, fetched 500 at a time (see :meth:`_batches`)."""
        for batch in self._batches(query):
            yield from batch

    # -- metadata ------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._rows("SELECT key, value FROM meta"))

    def _set_meta(self, values: dict[str, object]) -> None:
        with self._errors(), self.conn.cursor() as cursor:
            cursor.executemany(_SET_META, [(key, str(value)) for key, value in values.items()])

    def _bump_generation(self) -> int:
        return int(self._row(_BUMP)[0])

    def _log(self, generation: int, face_ids: list[int], added: bool) -> None:
        self._execute(
            "INSERT INTO changes(generation, face_id, added) SELECT %s, unnest(%s::bigint[]), %s",
            (generation, [int(i) for i in face_ids], added),
        )

    def _audit(self, action: str, person_id: int | None = None, detail: dict | None = None) -> None:
        """Write one audit event, now and by the current actor, inside the open transaction."""
        self._write_event(AuditEvent(time.time(), current_actor(), action, None, detail or {}, person_id))

    def _write_event(self, event: AuditEvent) -> None:
        self._execute(
            "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (%s, %s, %s, %s, %s)",
            (event.at, event.actor, event.action, event.person_id, detail_json(event.detail)),
        )
        self._changed = True

    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        with self.transaction():
            self._set_meta(
                {"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim}
                | {"metric": "euclidean-unit"}
            )
            self._audit("set_model", detail={"model_id": model_id, "dim": dim})

    def set_setting(self, key: str, value: object | None) -> None:
        with self.transaction():
            if value is None:
                self._execute("DELETE FROM meta WHERE key = %s", (key,))
            else:
                self._set_meta({key: value})
            self._audit("set_setting", detail={"key": key, "value": value})

    def changes_since(self, generation: int) -> Changes | None:
        with self.reading():
            meta = self.meta()
            if generation < int(meta.get("log_from", 0)) or generation > int(meta["generation"]):
                return None
            rows = self._rows("SELECT face_id, added FROM changes WHERE generation > %s ORDER BY generation", (generation,))
        return fold_changes(rows)

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change to this gallery committed by any process
        (LISTEN on a connection of its own, not from the pool); True when one came.

        Used by a per-process follower that keeps the index current. The first call, and the
        first after the listening connection was lost, returns True at once: changes made before
        it listened cannot be known, so the caller re-syncs. GalleryUnavailableError when the
        database cannot be reached: the caller waits a little and calls again."""
        prefix = f"{self._gallery_id}:"
        if self._listener is None:
            self._listen()
            return True
        try:
            return any(note.payload.startswith(prefix) for note in self._listener.notifies(timeout=max(timeout, 0.0)))
        except psycopg.Error:
            self._drop_listener()  # lost (a server restart): listen again; what happened meanwhile is unknown
            self._listen()
            return True

    def _listen(self) -> None:
        """Open the listening connection (autocommit) and LISTEN on CHANNEL."""
        try:
            self._listener = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            self._listener.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            self._drop_listener()
            raise self._unreachable(_reason(exc, self._url)) from None

    def _drop_listener(self) -> None:
        listener, self._listener = getattr(self, "_listener", None), None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    # -- people and faces ----------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        return self._rows(
            "SELECT p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id "
            'GROUP BY p.id, p.name ORDER BY p.name COLLATE "C"'
        )

    def person_of_image(self, image_sha256: str) -> str | None:
        row = self._row(f"SELECT p.name FROM {_FACES} WHERE f.image_sha256 = %s", (image_sha256,))
        return row[0] if row else None

    def _person_row(self, name: str) -> tuple[int, str] | None:
        """(id, stored name) of the person named ``name``, compared ignoring case."""
        return self._row("SELECT id, name FROM people WHERE name_key = %s", (name_key(name),))

    def person_named(self, name: str) -> str | None:
        return row[1] if (row := self._person_row(normalize_name(name))) else None

    def _person_id(self, name: str, create: bool) -> int | None:
        """The id of the person named ``name`` (compared ignoring case); created when ``create``.
        A different spelling of an existing name is refused, naming the existing one."""
        row = self._person_row(name)
        if row is None and create:
            row = self._row(
                "INSERT INTO people(name, name_key, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name_key) DO NOTHING RETURNING id, name",
                (name, name_key(name), time.time()),
            ) or self._person_row(name)  # made by a writer that did not queue: the constraint kept one
        if row is None:
            return None
        person_id, existing = row
        if existing != name and create:
            raise NameConflictError(f"{name!r}: a person named {existing!r} exists already; use that exact name", existing)
        return person_id

    def _refuse_enrolled(self, faces: list[tuple[str, NewFace]]) -> None:
        """DuplicatePhotoError for the first face whose photo is enrolled already, or twice in ``faces``."""
        hashes = [face.image_sha256 for _, face in faces]
        query = f"SELECT f.image_sha256, p.name FROM {_FACES} WHERE f.image_sha256 = ANY(%s::text[])"
        owners = dict(self._rows(query, (hashes,)))
        for name, face in faces:
            if (owner := owners.get(face.image_sha256)) is not None:
                raise DuplicatePhotoError(f"{face.source}: this photo is already enrolled as {owner!r}", owner)
            owners[face.image_sha256] = name

    def _insert_faces(self, faces: list[tuple[int, NewFace]], model_id: str) -> list[int | None]:
        """Insert (person id, face) rows in one pipeline; returns their ids in order (None for a
        photo another writer enrolled meanwhile: the unique constraint kept theirs)."""
        now = time.time()
        rows = [
            (
                person_id,
                face.source,
                face.image_sha256,
                *_geometry(face),
                embedding_bytes(face.embedding),
                model_id,
                now,
                face.sharpness,
            )
            for person_id, face in faces
        ]
        ids: list[int | None] = []
        with self._errors(), self.conn.cursor() as cursor:
            cursor.executemany(_INSERT_FACE, rows, returning=True)
            while True:
                row = cursor.fetchone()
                ids.append(row[0] if row else None)
                if not cursor.nextset():
                    break
        return ids

    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        return self.add_faces([(name, face)], model_id)[0]

    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str = "enroll") -> list[int]:
        named = [(normalize_name(name), face) for name, face in faces]
        if not named:
            return []
        with self.transaction():
            if self.model_id != model_id:
                raise GalleryError(f"{self.location}: gallery model is {self.model_id}, not {model_id}")
            self._refuse_enrolled(named)
            people = {name: self._person_id(name, create=True) for name in dict.fromkeys(name for name, _ in named)}
            inserted = self._insert_faces([(people[name], face) for name, face in named], model_id)
            for (_, face), face_id in zip(named, inserted, strict=True):
                if face_id is None:
                    owner = self.person_of_image(face.image_sha256) or "someone"
                    raise DuplicatePhotoError(f"{face.source}: this photo is already enrolled as {owner!r}", owner)
            ids = [int(face_id) for face_id in inserted if face_id is not None]
            self._log(self._bump_generation(), ids, added=True)
            for person_id, face_ids in faces_by_person(list(zip(ids, [people[name] for name, _ in named], strict=True))).items():
                self._audit(action, person_id, {"face_ids": face_ids})
            return ids

    def _existing_person(self, name: str) -> int:
        """Inside a transaction: the id of the person named ``name``; UnknownPersonError when nobody is."""
        person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
        if person_id is None:
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        return person_id

    def remove_person(self, name: str) -> int:
        with self.transaction():
            person_id = self._existing_person(name)
            library = self._erase_library_faces_of(person_id)
            ids = sorted(row[0] for row in self._rows("DELETE FROM faces WHERE person_id = %s RETURNING id", (person_id,)))
            self._execute("DELETE FROM people WHERE id = %s", (person_id,))
            self._log(self._bump_generation(), ids, added=False)
            self._audit("remove_person", person_id, {"faces": len(ids)} | ({"library_faces": library} if library else {}))
        self.erase_freed_pages()
        return len(ids)

    def _erase_library_faces_of(self, person_id: int) -> int:
        """Inside a transaction: delete the library faces of ``person_id`` and those that are one of
        their enrolled faces again, remembering them as TruthStore.remove_person says; returns how many."""
        enrolled = self._rows("SELECT image_sha256, embedding FROM faces WHERE person_id = %s", (person_id,), binary=True)
        same = self._rows(
            "SELECT lf.id, lp.sha256, lf.embedding FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lp.sha256 = ANY(%s::text[])",
            (sorted({sha for sha, _ in enrolled}),),
            binary=True,
        )
        rows = self._rows(
            "DELETE FROM library_faces WHERE person_id = %s OR id = ANY(%s::bigint[]) RETURNING id, photo_id, frame, box",
            (person_id, sorted(same_faces(enrolled, same))),
        )
        for photo_id in sorted({row[1] for row in rows}):
            erased = [(frame, box) for _, photo, frame, box in rows if photo == photo_id]
            sha, old, left = self._row(
                "SELECT sha256, erased, (SELECT COUNT(*) FROM library_faces WHERE photo_id = %s) FROM library_photos "
                "WHERE id = %s FOR UPDATE",
                (photo_id, photo_id),
            )
            if left:
                self._execute(
                    "UPDATE library_photos SET faces = %s, erased = %s WHERE id = %s", (left, erased_boxes(old, erased), photo_id)
                )
            else:
                self._execute("DELETE FROM library_photos WHERE id = %s", (photo_id,))
                self._execute(
                    "INSERT INTO library_erased(sha256, faces) VALUES (%s, %s) "
                    "ON CONFLICT (sha256) DO UPDATE SET faces = GREATEST(library_erased.faces, excluded.faces)",
                    (sha, len(erased)),
                )
        return len(rows)

    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        wanted = _ids(possible_ids(face_ids))
        with self.transaction():
            found = self._rows(
                f"SELECT f.id, f.person_id, p.name FROM {_FACES} WHERE f.id = ANY(%s::bigint[]) ORDER BY f.id", (wanted,)
            )
            if not found:
                return {}
            ids = [face_id for face_id, _, _ in found]
            self._execute("DELETE FROM faces WHERE id = ANY(%s::bigint[])", (ids,))
            self._execute(
                "DELETE FROM people p WHERE p.id = ANY(%s::bigint[]) "
                "AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)",
                (sorted({person_id for _, person_id, _ in found}),),
            )
            self._detach_orphans()
            self._log(self._bump_generation(), ids, added=False)
            for person_id, removed in faces_by_person([(face_id, person_id) for face_id, person_id, _ in found]).items():
                self._audit("remove_faces", person_id, {"face_ids": removed})
        self.erase_freed_pages()
        return {face_id: name for face_id, _, name in found}

    def rename_person(self, old: str, new: str, seen: list[int] | None = None) -> None:
        new = normalize_name(new)
        with self.transaction():
            person_id = self._seen_person(old, seen)
            other = self._person_row(new)
            if other is not None and other[0] != person_id:
                raise NameConflictError(f"a person named {other[1]!r} already exists in {self.location}", other[1])
            self._execute("UPDATE people SET name = %s, name_key = %s WHERE id = %s", (new, name_key(new), person_id))
            self._bump_generation()
            self._audit("rename", person_id)  # no names: the log shows the person's current one
        self._vacuum("people")  # the old name stays in a dead row until then

    def erase_freed_pages(self) -> None:
        """VACUUM the tables that hold personal data (faces with their crops, people), so the space
        of deleted rows is marked free and their index entries go; removals call this after they
        commit, repair again.

        Best effort, unlike SQLite's: PostgreSQL keeps deleted rows in its files until VACUUM, and
        VACUUM does not overwrite them: the bytes stay on disk until new rows reuse the space (a
        ``VACUUM FULL``, which locks the tables while it rewrites them, leaves them in freed disk
        blocks instead). Rows a still-open transaction may see are kept until it ends (autovacuum
        gets them later), and copies in the WAL, in replicas and in backups follow the server's
        retention. GalleryError (the change itself is committed) when VACUUM fails."""
        self._vacuum("faces", "people", "library_faces", "library_photos")

    def _vacuum(self, *tables: str) -> None:
        try:
            self.conn.execute(f"VACUUM {', '.join(tables)}")  # the connection is autocommit: VACUUM runs outside a transaction
        except psycopg.Error as exc:
            error = self._error(exc)
            if isinstance(error, GalleryUnavailableError):
                raise error from None
            raise GalleryError(
                f"{self.location}: the change is committed, but VACUUM failed ({_reason(exc, self._url)}); "
                "'facesys gallery repair' runs it again"
            ) from None

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        query = f"SELECT {_FACE_COLUMNS} FROM {_FACES}"
        with self.reading():
            if name is None:
                rows = self._rows(query + " ORDER BY f.id")
            else:
                person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
                if person_id is None:
                    return []
                rows = self._rows(query + " WHERE p.id = %s ORDER BY f.id", (person_id,))
        return [face_record(row) for row in rows]

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every face's id, embedding and person name: rows streamed in chunks of about
        STREAM_BYTES, each chunk's embeddings joined into one buffer and copied into arrays
        allocated once; names looked up by person id (each name crosses the network once)."""
        with self.reading():
            dim, count = self.dim, self.face_count()
            names = dict(self._rows("SELECT id, name FROM people"))
            ids, people = np.empty(count, np.int64), np.empty(count, np.int64)
            vectors = np.empty((count, dim), np.float32)
            done = 0
            query = "SELECT id, person_id, embedding FROM faces ORDER BY id"
            for rows in self._batches(query, rows=max(1, STREAM_BYTES // (4 * dim + 64))):
                n = len(rows)
                ids[done : done + n] = [row[0] for row in rows]
                people[done : done + n] = [row[1] for row in rows]
                vectors[done : done + n] = np.frombuffer(b"".join(row[2] for row in rows), "<f4").reshape(n, dim)
                done += n
        return ids[:done], vectors[:done], [names[person_id] for person_id in people[:done].tolist()]

    def face_count(self) -> int:
        return int(self._row("SELECT COUNT(*) FROM faces")[0])

    def face_ids(self) -> np.ndarray:
        return np.array([row[0] for row in self._rows("SELECT id FROM faces ORDER BY id", binary=True)], np.int64)

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        found = dict(self._rows("SELECT id, embedding FROM faces WHERE id = ANY(%s::bigint[])", (_ids(face_ids),), binary=True))
        out = np.zeros((len(face_ids), self.dim), np.float32)
        for row, face_id in enumerate(np.ravel(face_ids).tolist()):
            if face_id in found:
                out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        return dict(self._rows(f"SELECT f.id, p.name FROM {_FACES} WHERE f.id = ANY(%s::bigint[])", (_ids(face_ids),)))

    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        for face_id, jpeg, origin, landmarks in self._stream("SELECT id, crop, crop_origin, landmarks FROM faces ORDER BY id"):
            yield face_id, jpeg, json.loads(origin), json.loads(landmarks)

    def crop(self, face_id: int) -> bytes | None:
        row = self._row("SELECT crop FROM faces WHERE id = %s", (valid_id(face_id),), binary=True)
        return row[0] if row else None

    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        with self.transaction():
            with self._errors(), self.conn.cursor() as cursor:
                cursor.executemany(
                    "UPDATE faces SET embedding = %s, model_id = %s WHERE id = %s",
                    [(embedding_bytes(vector), model_id, int(face_id)) for face_id, vector in vectors.items()],
                )
            self._set_meta({"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim})
            self._execute("DELETE FROM meta WHERE key IN ('verify_threshold', 'identify_threshold')")
            self._set_meta({"log_from": self._bump_generation()})  # every vector changed: no index can follow
            self._audit("replace_embeddings", detail={"model_id": model_id, "faces": len(vectors)})

    # -- the photo library -----------------------------------------------------------------------

    def record_photo(self, photo: ScannedPhoto, faces: list[NewLibraryFace] | None, model_id: str | None) -> list[int]:
        with self.transaction():
            row = self._row("SELECT id FROM library_photos WHERE path = %s", (photo.path,))
            now = time.time()
            if faces is None:
                if row is None:
                    raise GalleryError(f"{photo.path}: not in the library of {self.location}; nothing to update")
                self._execute(
                    "UPDATE library_photos SET size = %s, mtime_ns = %s, scanned_at = %s WHERE id = %s",
                    (photo.size, photo.mtime_ns, now, row[0]),
                )
                return []
            if faces and self.model_id != model_id:
                raise GalleryError(f"{self.location}: gallery model is {self.model_id}, not {model_id}")
            values = (photo.size, photo.mtime_ns, photo.sha256, len(faces), photo.error, model_id, now)
            copies: list[int] = []  # enrolled copies of the faces replaced now
            if row is None:
                (photo_id,) = self._row(
                    "INSERT INTO library_photos(size, mtime_ns, sha256, faces, error, model_id, scanned_at, path) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (*values, photo.path),
                )
            else:
                photo_id = row[0]
                deleted = self._rows("DELETE FROM library_faces WHERE photo_id = %s RETURNING enrolled_face_id", (photo_id,))
                copies = [copy for (copy,) in deleted if copy is not None]
                self._execute(  # faces erased with a removed person stay remembered while the bytes are the same
                    "UPDATE library_photos SET erased = CASE WHEN sha256 = %s THEN erased END, size = %s, mtime_ns = %s, "
                    "sha256 = %s, faces = %s, error = %s, model_id = %s, scanned_at = %s WHERE id = %s",
                    (photo.sha256, *values, photo_id),
                )
            people: dict[str, int | None] = {}
            for name in {face.person for face in faces if face.person is not None}:
                found = self._person_row(name)
                people[name] = found[0] if found else None
            rows = []
            for face in faces:
                person_id = people.get(face.person) if face.person is not None else None
                box, landmarks, origin = geometry_json(face)
                crop, vector = face.crop_jpeg, embedding_bytes(face.embedding)
                rows.append((photo_id, face.frame, box, landmarks, float(face.score), crop, origin, vector, model_id, person_id))
            inserted: list[tuple[int, int | None]] = []
            with self._errors(), self.conn.cursor() as cursor:
                for values in rows:
                    cursor.execute(
                        "INSERT INTO library_faces(photo_id, frame, box, landmarks, score, crop, crop_origin, embedding, "
                        "model_id, person_id, assigned) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        "CASE WHEN %s::bigint IS NULL THEN NULL ELSE 'auto' END) RETURNING id",
                        (*values, values[-1]),
                    )
                    inserted.append((cursor.fetchone()[0], values[-1]))
            self._relink_copies(photo.sha256, copies, [face_id for face_id, _ in inserted], faces)
            attached = [(face_id, person_id) for face_id, person_id in inserted if person_id is not None]
            for person_id, face_ids in faces_by_person(attached).items():
                self._audit("auto_attach", person_id, {"library_faces": face_ids})
            return [face_id for face_id, _ in inserted]

    def library_photos(self) -> list[LibraryPhoto]:
        rows = self._rows(
            "SELECT id, path, size, mtime_ns, sha256, faces, error, model_id, scanned_at, erased FROM library_photos "
            'ORDER BY path COLLATE "C"'
        )
        return [LibraryPhoto(*row[:-1], json.loads(row[-1]) if row[-1] else None) for row in rows]

    def move_photo(self, old_path: str, photo: ScannedPhoto) -> bool:
        with self.transaction():
            row = self._row(
                "SELECT id FROM library_photos WHERE path = %s AND sha256 = %s AND NOT EXISTS "
                "(SELECT 1 FROM library_photos WHERE path = %s) FOR UPDATE",
                (old_path, photo.sha256, photo.path),
            )
            if row is None:
                return False
            self._execute(
                "UPDATE library_photos SET path = %s, size = %s, mtime_ns = %s, scanned_at = %s WHERE id = %s",
                (photo.path, photo.size, photo.mtime_ns, time.time(), row[0]),
            )
            self._execute(  # the enrolled copies of its named faces name the file where it is now
                "UPDATE faces SET source = %s WHERE id IN (SELECT enrolled_face_id FROM library_faces WHERE photo_id = %s)",
                (photo.path, row[0]),
            )
            self._audit("move_photos", detail={"photos": 1})
        return True

    def erased_photos(self) -> set[str]:
        return {sha for (sha,) in self._rows("SELECT sha256 FROM library_erased")}

    def forget_photos(self, paths: list[str]) -> int:
        with self.transaction():
            photos, faces = self._row(
                "SELECT COUNT(*), (SELECT COUNT(*) FROM library_faces WHERE photo_id IN "
                "(SELECT id FROM library_photos WHERE path = ANY(%s::text[]))) FROM library_photos WHERE path = ANY(%s::text[])",
                (sorted(set(paths)), sorted(set(paths))),
            )
            if not photos:
                return 0
            self._execute("DELETE FROM library_photos WHERE path = ANY(%s::text[])", (sorted(set(paths)),))
            self._audit("forget_photos", detail={"photos": photos, "library_faces": faces})
        self.erase_freed_pages()
        return faces

    def library_faces(
        self, ids: list[int] | None = None, person: str | None = None, cluster: int | None = None, unnamed: bool = False
    ) -> list[LibraryFace]:
        where, params = [], []
        with self.reading():
            if ids is not None:
                where.append("lf.id = ANY(%s::bigint[])")
                params.append(_ids(valid_ids(ids, "library face")))
            if person is not None:
                found = self._person_row(normalize_name(person)) if person.strip() else None
                if found is None:
                    return []
                where.append("lf.person_id = %s")
                params.append(found[0])
            if cluster is not None:
                where.append("lf.cluster = %s")
                params.append(valid_id(cluster, "cluster", low=0))
            if unnamed:
                where.append("lf.person_id IS NULL")
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self._rows(f"SELECT {LIBRARY_FACE_COLUMNS} FROM {LIBRARY_FACES_FROM}{clause} ORDER BY lf.id", params)
        return [library_face(row) for row in rows]

    def library_vectors(self, ids: list[int]) -> np.ndarray:
        wanted = valid_ids(ids, "library face")
        with self.reading():
            dim = self.dim
            found = dict(
                self._rows("SELECT id, embedding FROM library_faces WHERE id = ANY(%s::bigint[])", (_ids(wanted),), binary=True)
            )
        missing_library_faces(wanted, found, self.location)
        out = np.zeros((len(wanted), dim), np.float32)
        for row, face_id in enumerate(wanted):
            if len(found[face_id]) != 4 * dim:
                raise GalleryError(f"{self.location}: library face #{face_id} has {len(found[face_id]) // 4} values, not {dim}")
            out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def library_crops(self, ids: list[int]) -> dict[int, bytes]:
        wanted = _ids(valid_ids(ids, "library face"))
        return dict(self._rows("SELECT id, crop FROM library_faces WHERE id = ANY(%s::bigint[])", (wanted,), binary=True))

    def set_clusters(self, ids: list[int], clusters: list[int]) -> None:
        pairs = [(int(i), int(c)) for i, c in zip(ids, clusters, strict=True)]
        with self.transaction():
            self._execute(
                "UPDATE library_faces lf SET cluster = new.cluster FROM unnest(%s::bigint[], %s::bigint[]) AS new(id, cluster) "
                "WHERE lf.id = new.id AND lf.person_id IS NULL",
                ([i for i, _ in pairs], [c for _, c in pairs]),
            )
            last = max([int(self.meta().get("last_cluster_id", -1))] + [c for _, c in pairs])
            self._set_meta({"last_cluster_id": last})
            self._audit("cluster", detail={"library_faces": len(pairs), "clusters": len({c for _, c in pairs})})

    def _library_rows(self, ids: list[int]) -> list[tuple]:
        """(id, person id, enrolled face id, photo sha256, score, model id) of the library faces
        ``ids`` (inside a transaction); UnknownFaceError naming those that do not exist."""
        rows = self._rows(
            "SELECT lf.id, lf.person_id, lf.enrolled_face_id, lp.sha256, lf.score, lf.model_id FROM library_faces lf "
            "JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id = ANY(%s::bigint[]) ORDER BY lf.id FOR UPDATE OF lf",
            (_ids(ids),),
        )
        missing_library_faces([int(i) for i in ids], [row[0] for row in rows], self.location)
        return rows

    def _drop_copies(self, rows: list[tuple]) -> list[int]:
        """Inside a transaction: delete the enrolled copies of library face ``rows`` (from
        :meth:`_library_rows`), logged and audited per person, and the people left without faces
        (their library faces detached); returns the copies' face ids."""
        copies = sorted((row[2], row[1]) for row in rows if row[2] is not None)
        if not copies:
            return []
        ids = [face_id for face_id, _ in copies]
        self._execute("DELETE FROM faces WHERE id = ANY(%s::bigint[])", (ids,))
        self._execute(
            "DELETE FROM people p WHERE p.id = ANY(%s::bigint[]) AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)",
            (sorted({person_id for _, person_id in copies}),),
        )
        self._detach_orphans()
        self._log(self._bump_generation(), ids, added=False)
        for person_id, removed in faces_by_person(copies).items():
            self._audit("remove_faces", person_id, {"face_ids": removed})
        return ids

    def _detach_orphans(self) -> None:
        """Inside a transaction: library faces whose person went lose their assignment too."""
        self._execute(
            "UPDATE library_faces SET assigned = NULL, enrolled_face_id = NULL "
            "WHERE person_id IS NULL AND (assigned IS NOT NULL OR enrolled_face_id IS NOT NULL)"
        )

    def _orphaned_copies(self, sha: str, copies: list[int]) -> list[tuple[int, int, bytes]]:
        return self._rows(
            "SELECT id, person_id, embedding FROM faces f WHERE (image_sha256 = %s OR id = ANY(%s::bigint[])) AND from_library "
            "AND NOT EXISTS (SELECT 1 FROM library_faces lf WHERE lf.enrolled_face_id = f.id)",
            (sha, copies),
            binary=True,
        )

    def _enrolled_photos(self, hashes: list[str]) -> set[str]:
        return {sha for (sha,) in self._rows("SELECT image_sha256 FROM faces WHERE image_sha256 = ANY(%s::text[])", (hashes,))}

    def _copy_library_face(self, face_id: int, person_id: int) -> int:
        """Inside a transaction: copy library face ``face_id`` into ``faces`` as ``person_id``'s; returns the new face id."""
        (new_id,) = self._row(
            "INSERT INTO faces(person_id, source, image_sha256, box, landmarks, score, crop, crop_origin, embedding, model_id, "
            "created_at, from_library) SELECT %s, lp.path, lp.sha256, lf.box, lf.landmarks, lf.score, lf.crop, lf.crop_origin, "
            "lf.embedding, lf.model_id, %s, true FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lf.id = %s RETURNING id",
            (person_id, time.time(), face_id),
        )
        return new_id

    def _assign_library_faces(self, person_id: int, faces: list[tuple[int, int | None]]) -> None:
        self._execute(
            "UPDATE library_faces lf SET person_id = %s, assigned = 'user', cluster = NULL, enrolled_face_id = new.copy "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS new(id, copy) WHERE lf.id = new.id",
            (person_id, [face_id for face_id, _ in faces], [copy for _, copy in faces]),
        )

    def _clear_library_faces(self, ids: list[int]) -> None:
        self._execute(
            "UPDATE library_faces SET person_id = NULL, assigned = NULL, enrolled_face_id = NULL, cluster = NULL "
            "WHERE id = ANY(%s::bigint[])",
            (ids,),
        )

    def _delete_library_faces(self, ids: list[int]) -> None:
        self._execute("DELETE FROM library_faces WHERE id = ANY(%s::bigint[])", (ids,))

    # -- API keys and the audit log --------------------------------------------------------------

    def add_api_key(self, name: str, scope: str, key_hash: str) -> None:
        name = check_new_key(name, scope, key_hash)
        with self.transaction():
            if self._active_key(name) is not None:
                raise ConflictError(f"an active key named {name!r} exists already in {self.location}; revoke it first")
            check_key_spelling(name, [row[0] for row in self._rows("SELECT DISTINCT name FROM api_keys")], self.location)
            self._execute(
                "INSERT INTO api_keys(name, scope, key_hash, created_at) VALUES (%s, %s, %s, %s)",
                (name, scope, key_hash, time.time()),
            )
            self._set_meta({KEYS_REQUIRED: 1})
            self._audit("key_create", detail={"key": name, "scope": scope})

    def _active_key(self, name: str) -> tuple[int, str] | None:
        """(row id, scope) of the active key ``name``, or None."""
        return self._row("SELECT id, scope FROM api_keys WHERE name = %s AND revoked_at IS NULL", (name,))

    def api_keys(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in self._rows(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def api_key_for_hash(self, key_hash: str) -> ApiKey | None:
        row = self._row(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (key_hash,))
        return ApiKey(*row) if row else None

    def has_api_keys(self) -> bool:
        return self._row("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")[0]

    def revoke_api_key(self, name: str) -> None:
        name = key_name(name)
        with self.transaction():
            found = self._active_key(name)
            if found is None:
                raise UnknownKeyError(f"no active key named {name!r} in {self.location}")
            self._execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s", (time.time(), found[0]))
            self._audit("key_revoke", detail={"key": name, "scope": found[1]})

    def audit_log(self, limit: int | None = 100) -> list[AuditEvent]:
        if limit is not None and limit < 0:
            raise GalleryError(f"log limit {limit}: must be 0 or more")
        rows = self._rows(
            "SELECT a.at, a.actor, a.action, p.name, a.detail, a.person_id FROM audit a "
            "LEFT JOIN people p ON p.id = a.person_id ORDER BY a.id DESC LIMIT %s",
            (limit,),  # NULL: no limit
        )
        return [
            AuditEvent(at, actor, action, person, json.loads(detail), person_id)
            for at, actor, action, person, detail, person_id in rows
        ]

    def salvage_keys_and_log(self) -> Carried:
        """Every key and event (a database on a server is not damaged the way a file is)."""
        with self.reading():
            keys = self._rows("SELECT name, scope, created_at, revoked_at, key_hash FROM api_keys ORDER BY id")
            events = self._rows(
                "SELECT a.at, a.actor, a.action, p.name, a.detail, a.person_id FROM audit a "
                "LEFT JOIN people p ON p.id = a.person_id ORDER BY a.id"
            )
        return Carried(
            [(ApiKey(*row[:4]), row[4]) for row in keys],
            [
                AuditEvent(at, actor, action, person, json.loads(detail), person_id)
                for at, actor, action, person, detail, person_id in events
            ],
        )

    def restore_keys_and_log(self, carried: Carried, detail: dict) -> None:
        with self.transaction():
            own = self._rows("SELECT id, at, actor, action, person_id, detail FROM audit ORDER BY id")
            for key, key_hash in carried.keys:
                taken = self._row("SELECT 1 FROM api_keys WHERE key_hash = %s", (key_hash,))
                if taken or (key.active and self._active_key(key.name) is not None):
                    continue
                self._execute(
                    "INSERT INTO api_keys(name, scope, key_hash, created_at, revoked_at) VALUES (%s, %s, %s, %s, %s)",
                    (key.name, key.scope, key_hash, key.created_at, key.revoked_at),
                )
                self._set_meta({KEYS_REQUIRED: 1})
            new_ids: dict[int, int] = {}
            for event in carried.events:
                if event.person_id is not None and event.person_id not in new_ids:
                    here = self._person_row(event.person) if event.person is not None else None
                    new_ids[event.person_id] = here[0] if here else self._unused_person_id()
                person_id = None if event.person_id is None else new_ids[event.person_id]
                self._write_event(AuditEvent(event.at, event.actor, event.action, None, event.detail, person_id))
            # the log is read in the order written: the history carried over goes before the rebuild's own events
            self._execute("DELETE FROM audit WHERE id = ANY(%s::bigint[])", ([row[0] for row in own],))
            for row in own:
                self._execute("INSERT INTO audit(at, actor, action, person_id, detail) VALUES (%s, %s, %s, %s, %s)", row[1:])
            self._audit("repair", detail=detail)

    def _unused_person_id(self) -> int:
        """A person id no one has had, nor will have (taken from the people id sequence)."""
        return int(self._row("SELECT nextval(pg_get_serial_sequence('people', 'id'))")[0])

    # -- administration --------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Embeddings of the wrong size, not finite or not unit length, faces of another model,
        crops that are not JPEG, people without faces. A database that cannot be read (or
        reached) is reported in a line starting "postgresql:", never raised."""
        problems: list[str] = []
        try:
            with self.reading():
                meta = self.meta()
                dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
                query = "SELECT id, embedding, model_id, substring(crop from 1 for 2) FROM faces ORDER BY id"
                for face_id, blob, face_model, head in self._stream(query):
                    problems += face_problems(face_id, blob, face_model, head, dim, model_id)
                empty = self._rows(
                    "SELECT name FROM people p WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id) "
                    'ORDER BY name COLLATE "C"'
                )
                problems += [f"person {name!r} has no face" for (name,) in empty]
                query = "SELECT id, embedding, model_id, substring(crop from 1 for 2) FROM library_faces ORDER BY id"
                for face_id, blob, face_model, head in self._stream(query):
                    problems += library_face_problems(face_id, blob, face_model, head, dim, model_id)
        except GalleryError as exc:
            problems.insert(0, f"postgresql: {exc}")
        return problems

    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """Every face row as (record, embedding, crop) in id order, and how many rows do not parse
        (embedding of the wrong size, not finite or not unit, bad JSON, crop not a JPEG, another
        model): a database on a server is not damaged the way a file is, so every row can be read."""
        with self.reading():
            meta = self.meta()
            dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
            rows, failed = [], 0
            query = f"SELECT {_FACE_COLUMNS}, f.embedding, f.crop FROM {_FACES} ORDER BY f.id"
            for row in self._stream(query):
                parsed = salvaged_face(row, dim, model_id)
                if parsed is None:
                    failed += 1
                else:
                    rows.append(parsed)
        return rows, failed

    def set_aside(self, suffix: str) -> str:
        """Not applicable: a database on a server is not a file to move aside (and is not damaged
        the way a file is; ``check`` reports no "sqlite:" damage, so repair never asks)."""
        raise GalleryError(
            f"{self.location}: setting the database aside is not applicable to a PostgreSQL gallery; nothing was moved"
        )

    def remove_empty_people(self) -> int:
        with self.transaction():
            count = self._execute("DELETE FROM people p WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)")
            self._detach_orphans()
            if count:
                self._bump_generation()
                self._audit("remove_empty_people", detail={"people": count})
        return count

    def stats(self) -> dict[str, object]:
        with self.reading():
            meta = self.meta()
            people, faces, size, *library = self._row(
                "SELECT (SELECT COUNT(*) FROM people), (SELECT COUNT(*) FROM faces), "
                "(SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0) FROM unnest(%s::text[]) AS t), "
                "(SELECT COUNT(*) FROM library_photos), (SELECT COUNT(*) FROM library_faces), "
                "(SELECT COUNT(*) FROM library_faces WHERE person_id IS NULL)",
                (list(TABLES),),
            )
        return {
            "gallery": self.location,
            "people": people,
            "faces": faces,
            "model_id": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "gallery_schema_version": int(meta["schema_version"]),
            "database_bytes": int(size),
        } | dict(zip(("library_photos", "library_faces", "library_unnamed_faces"), library, strict=True))


def _geometry(face: NewFace) -> tuple:
    """(box, landmarks, score, crop, crop origin) of a new face in the faces table's column order."""
    box, landmarks, origin = geometry_json(face)
    return box, landmarks, float(face.score), face.crop_jpeg, origin


def _ids(face_ids) -> list[int]:
    """Distinct face ids >= 0 (-1 means none), ascending, as Python ints for ``= ANY(%s)``."""
    return sorted({int(i) for i in np.ravel(np.asarray(face_ids, np.int64)) if i >= 0})
