"""The PostgreSQL truth store: one database that several ``facesys serve`` processes share.

The location is a URL, ``postgresql://USER[:PASS]@HOST[:PORT]/DB`` (or ``postgres://``). Its
password is used to connect and nowhere else: ``location``, every message and every error show
the URL without it (:func:`facesys.gallery.location.public_url`).

Tables (schema version 4 of this backend, in the connection's search_path, usually ``public``)
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
  person's erased library faces leave behind, and ``faces.from_library``, as SQLite's v6. v4:
  ``api_keys.expires_at``, ``last_used_at`` and ``rate``, as SQLite's v7.

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
import functools
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from facesys.errors import (
    ConflictError,
    GalleryError,
    GalleryUnavailableError,
    NoGalleryError,
)
from facesys.gallery.location import public_url
from facesys.gallery.sealing import GalleryKey
from facesys.gallery.store.base import TruthStore
from facesys.gallery.store.records import ERASE_PENDING

SCHEMA_VERSION = 4  # this backend's own numbering (v2: the photo library; v3: erased library faces remembered; v4: key limits)
SCHEMES = ("postgresql", "postgres")
CHANNEL = "facesys_changes"  # NOTIFY channel; payload "<gallery id>:<generation>"
POOL_SIZE = 8  # connections per URL per process, at most
CONNECT_TIMEOUT_S = 5  # to open one connection
POOL_WAIT_S = 5.0  # to get a free connection from a busy pool before the database counts as unreachable
RECONNECT_S = 1.0  # how long the pool retries a failed connection in the background before the next request tries again
_WAIT_SLICE_S = 0.1  # a store waiting for a connection looks this often whether an attempt to connect failed
TABLES = ("meta", "people", "faces", "changes", "api_keys", "audit", "library_photos", "library_faces", "library_erased")
_SCHEMA_LOCK = 0x66616365_73797300  # pg_advisory_xact_lock key held while creating or migrating the schema
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
# v4: a key's lifetime, last use and request rate (facesys/keys.py).
_KEY_LIMITS = [
    "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at DOUBLE PRECISION",
    "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS last_used_at DOUBLE PRECISION",
    "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS rate TEXT",
]
_SCHEMA += _LIBRARY + _ERASED + _KEY_LIMITS
# Statements that bring a gallery from version N to N + 1; applied in one transaction on open.
_MIGRATIONS: dict[int, list[str]] = {1: _LIBRARY, 2: _ERASED, 3: _KEY_LIMITS}

_LOCK_WRITERS = "SELECT value FROM meta WHERE key = 'generation' FOR UPDATE"
_NOTIFY = (
    "SELECT pg_notify(%s, (SELECT value FROM meta WHERE key = 'gallery_id') || ':' || "
    "(SELECT value FROM meta WHERE key = 'generation'))"
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

    def __init__(self, location: str, create: bool = False, key: GalleryKey | None = None):
        self._connect(location)
        try:
            self._open(create, key)
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

    def _open(self, create: bool, key: GalleryKey | None) -> None:
        meta = self._meta_if_gallery()
        if meta is None and not create:
            raise NoGalleryError(self.location)
        version = int(meta.get("schema_version", 0)) if meta else 0
        self._refuse_newer(version, SCHEMA_VERSION)
        if meta is not None:
            self._unlock(key)  # before anything is written
        if version < SCHEMA_VERSION:
            meta = self._make_schema()
        if not self._unlocked:
            self._unlock(key)  # a new gallery: made encrypted when a key is given
        self._gallery_id = meta["gallery_id"]

    def _make_schema(self) -> dict[str, str]:
        """Make the tables, or bring them to SCHEMA_VERSION, in one transaction, once even when
        several processes try at the same time (another may have done it meanwhile); returns meta."""
        with self._errors(), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if not self._row(_HAS_META)[0]:
                for statement in _SCHEMA:
                    self.conn.execute(statement)
                values = {"schema_version": SCHEMA_VERSION, "generation": 0, "log_from": 0}
                self._set_meta(values | {"gallery_id": secrets.token_hex(8), "created_at": time.time()})
            version = int(self.meta()["schema_version"])
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
    def _write_transaction(self) -> Iterator[None]:
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

    def _fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._errors(), self.conn.cursor(binary=True) as cursor:
            return cursor.execute(_postgres(sql), params).fetchall()

    def _run(self, sql: str, params: Sequence = ()) -> int:
        with self._errors():
            return self.conn.execute(_postgres(sql), params).rowcount

    def _run_many(self, sql: str, rows: list[Sequence]) -> None:
        with self._errors(), self.conn.cursor() as cursor:
            cursor.executemany(_postgres(sql), rows)

    def _fetch_stream(self, sql: str, size: int = 500) -> Iterator[list[tuple]]:
        """From a server-side cursor (binary, so bytea arrives as bytes, not hex), in one read snapshot."""
        name = f"facesys_{next(self._cursor_names)}"
        with self.reading(), self._errors(), self.conn.cursor(name=name, binary=True) as cursor:
            cursor.execute(_postgres(sql))
            while batch := cursor.fetchmany(max(size, 1)):
                yield batch

    def _insert_rows(self, table: str, rows: list[dict[str, object]]) -> list[int]:
        """In one pipeline; ids from the identity columns (never reused, even after a rollback)."""
        if not rows:
            return []
        sql = f"INSERT INTO {table}({', '.join(rows[0])}) VALUES ({', '.join(['%s'] * len(rows[0]))}) RETURNING id"
        ids = []
        with self._errors(), self.conn.cursor() as cursor:
            cursor.executemany(sql, [tuple(row.values()) for row in rows], returning=True)
            while True:
                ids.append(cursor.fetchone()[0])
                if not cursor.nextset():
                    break
        return ids

    def _unused_id(self, table: str) -> int:
        """Taken from the table's identity sequence."""
        return int(self._row("SELECT nextval(pg_get_serial_sequence(?, 'id'))", (table,))[0])

    def _database_bytes(self) -> int:
        query = "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0) FROM unnest(?::text[]) AS t"
        return int(self._row(query, (list(TABLES),))[0])

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

    def erase_freed_pages(self) -> None:
        """VACUUM the tables that hold personal data (faces with their crops, people, the library)
        and the audit log (whose old events retention deletes), so the space of deleted rows is
        marked free and their index entries go; then clear ERASE_PENDING.

        Best effort, unlike SQLite's: PostgreSQL keeps deleted rows in its files until VACUUM, and
        VACUUM does not overwrite them: the bytes stay on disk until new rows reuse the space (a
        ``VACUUM FULL``, which locks the tables while it rewrites them, leaves them in freed disk
        blocks instead). Rows a still-open transaction may see are kept until it ends (autovacuum
        gets them later), and copies in the WAL, in replicas and in backups follow the server's
        retention. GalleryError (the change itself is committed) when VACUUM fails."""
        self._vacuum("faces", "people", "library_faces", "library_photos", "audit")
        self._execute("DELETE FROM meta WHERE key = ?", (ERASE_PENDING,))

    def _rewrite_tables(self) -> None:
        """After re-sealing every face: VACUUM FULL rewrites the tables into new files, so the old
        values (every row was updated) are in no file of the database any more; they stay in the
        server's WAL and backups for as long as its retention keeps those."""
        self._vacuum("faces", "library_faces", full=True)
        self._execute("DELETE FROM meta WHERE key = ?", (ERASE_PENDING,))

    def _erase_old_name(self) -> None:
        self._vacuum("people")  # the old name stays in a dead row until then

    def _vacuum(self, *tables: str, full: bool = False) -> None:
        try:
            # the connection is autocommit: VACUUM runs outside a transaction
            self.conn.execute(f"VACUUM {'FULL ' if full else ''}{', '.join(tables)}")
        except psycopg.Error as exc:
            error = self._error(exc)
            if isinstance(error, GalleryUnavailableError):
                raise error from None
            raise GalleryError(
                f"{self.location}: the change is committed, but VACUUM failed ({_reason(exc, self._url)}); "
                "'facesys gallery repair' runs it again"
            ) from None

    def check(self) -> list[str]:
        """:meth:`TruthStore._check_rows`' problems. A database that cannot be read (or reached) is
        reported in a line starting "postgresql:", never raised."""
        problems: list[str] = []
        try:
            with self.reading():
                self._check_rows(problems)
        except GalleryError as exc:
            problems.insert(0, f"postgresql: {exc}")
        return problems


@functools.lru_cache(maxsize=512)
def _postgres(sql: str) -> str:
    """The store's shared SQL (``?`` placeholders) for psycopg (``%s``)."""
    return sql.replace("%", "%%").replace("?", "%s")
