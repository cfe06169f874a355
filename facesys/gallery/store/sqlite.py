"""The SQLite truth store: one database (WAL mode) in the gallery folder.

Tables (schema version 7; older galleries are migrated when opened):

- ``meta(key, value)``: schema_version, gallery_id (random, made at creation), model_id
  (``name@sha256[:16]``), model_name, weights_sha256, dim, metric, generation (bumped by every
  change), last_face_id and last_person_id (ids are never reused), log_from (the first generation
  the change log covers), created_at, and settings (calibrated thresholds, forced index kind).
- ``people(id, name UNIQUE, created_at, name_key)``: names normalised (NFC, trimmed); unique
  ignoring case (``name_key``).
- ``faces(id, person_id, source, image_sha256 UNIQUE, box, landmarks, score, crop, crop_origin,
  embedding, model_id, created_at, sharpness)``: one enrolled photo each (see records.FaceRecord).
- ``changes(generation, face_id, added)``: which face ids were added (1) or removed (0) at which
  generation: ids only, so an erased person leaves nothing personal here.
- ``api_keys(id, name, scope, key_hash UNIQUE, created_at, revoked_at)``: the service's keys by
  sha256 (never the key); one active key per name.
- ``audit(id, at, actor, action, person_id, detail)``: one row per committed change, written in
  its transaction (see facesys/gallery/audit.py): a person by id only, a JSON detail without
  names, paths, hashes or pixels, so an erased person leaves nothing personal here either.
- ``library_photos(id, path UNIQUE, size, mtime_ns, sha256, faces, error, model_id, scanned_at)``
  and ``library_faces(id, photo_id, frame, box, landmarks, score, crop, crop_origin, embedding,
  model_id, cluster, person_id, assigned, enrolled_face_id)``: the photo library (v5), faces found
  by ``facesys scan``, unnamed until named; never searched by identify (see library.py). Their
  deletions are erased as the faces' are.
- v6: ``library_photos.erased`` (JSON [frame, x1, y1, x2, y2] of faces erased with a removed
  person) and ``library_erased(sha256, faces)``: files left without faces by such an erasure, by
  content hash only, so a scan does not bring their faces back (see ``TruthStore.remove_person``).
  ``faces.from_library`` (1: a copy made by naming a library face; a file forgotten and found
  again links its face to that copy again, named by the user).
- v7: ``api_keys.expires_at`` (None: never), ``api_keys.last_used_at`` (recorded by the service
  at most once a minute per key per process) and ``api_keys.rate`` (``10/second``; None: no limit).

Every change is one transaction; nothing here imports torch. A database on a read-only volume
is opened read-only (immutable when even that fails), so it can still be read. A read that meets
a damaged database raises one GalleryError naming it; ``salvage`` reads what is left row by row,
and ``set_aside`` moves the damaged files away so a new database can be built from that.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from facesys.errors import GalleryError, NoGalleryError
from facesys.gallery.sealing import GalleryKey
from facesys.gallery.store.base import TruthStore
from facesys.gallery.store.records import ERASE_PENDING, MAX_SALVAGE_ID, FaceRecord, salvaged_face
from facesys.gallery.store.rules import name_key

SCHEMA_VERSION = 7
DB_NAME = "gallery.sqlite3"
BUSY_TIMEOUT_S = 60.0
DAMAGE_HINT = "'facesys gallery export' salvages the readable rows; 'facesys gallery repair' rebuilds the database from them"
_COUNTERS = {"faces": "last_face_id", "people": "last_person_id"}  # meta keys: the last id given (ids are never reused)

# v4: the service's API keys (by hash; one active key per name) and the audit log.
_KEYS_AND_AUDIT = [
    "CREATE TABLE IF NOT EXISTS api_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, "
    "key_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL",
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, "
    "person_id INTEGER, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit(at)",
]

# v5: the photo library: scanned files, and the faces found in them, unnamed until named (never in
# ``faces``, so identify cannot see them). AUTOINCREMENT: a library face id is never reused.
_LIBRARY = [
    "CREATE TABLE IF NOT EXISTS library_photos (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, "
    "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, faces INTEGER NOT NULL, error TEXT, "
    "model_id TEXT, scanned_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS library_faces (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "photo_id INTEGER NOT NULL REFERENCES library_photos(id) ON DELETE CASCADE, frame INTEGER, box TEXT NOT NULL, "
    "landmarks TEXT NOT NULL, score REAL NOT NULL, crop BLOB NOT NULL, crop_origin TEXT NOT NULL, embedding BLOB NOT NULL, "
    "model_id TEXT NOT NULL, cluster INTEGER, person_id INTEGER REFERENCES people(id) ON DELETE SET NULL, "
    "assigned TEXT CHECK (assigned IN ('auto', 'user')), enrolled_face_id INTEGER REFERENCES faces(id) ON DELETE SET NULL)",
    "CREATE INDEX IF NOT EXISTS library_faces_photo ON library_faces(photo_id)",
    "CREATE INDEX IF NOT EXISTS library_faces_person ON library_faces(person_id)",
    "CREATE INDEX IF NOT EXISTS library_faces_cluster ON library_faces(cluster)",
    "CREATE INDEX IF NOT EXISTS library_faces_enrolled ON library_faces(enrolled_face_id)",
]

# v6: what a removed person's erased library faces leave behind (see TruthStore.remove_person).
_ERASED = [
    "ALTER TABLE library_photos ADD COLUMN erased TEXT",
    "CREATE TABLE IF NOT EXISTS library_erased (sha256 TEXT PRIMARY KEY, faces INTEGER NOT NULL)",
    "ALTER TABLE faces ADD COLUMN from_library INTEGER",  # 1: a copy made by naming a library face
    "UPDATE faces SET from_library = 1 WHERE id IN (SELECT enrolled_face_id FROM library_faces)",
]

# v7: a key's lifetime, last use and request rate (facesys/keys.py).
_KEY_LIMITS = [
    "ALTER TABLE api_keys ADD COLUMN expires_at REAL",
    "ALTER TABLE api_keys ADD COLUMN last_used_at REAL",
    "ALTER TABLE api_keys ADD COLUMN rate TEXT",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    name_key TEXT
);
CREATE INDEX IF NOT EXISTS people_name_key ON people(name_key);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    image_sha256 TEXT NOT NULL UNIQUE,
    box TEXT NOT NULL,
    landmarks TEXT NOT NULL,
    score REAL NOT NULL,
    crop BLOB NOT NULL,
    crop_origin TEXT NOT NULL,
    embedding BLOB NOT NULL,
    model_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    sharpness REAL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, face_id INTEGER NOT NULL, added INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS changes_generation ON changes(generation);
""" + ";\n".join(_KEYS_AND_AUDIT + _LIBRARY + _ERASED + _KEY_LIMITS)
# Statements that bring a gallery from version N to N + 1; applied in one transaction on open.
_MIGRATIONS: dict[int, list[str]] = {
    1: ["ALTER TABLE faces ADD COLUMN sharpness REAL"],  # v2: the enrollment photo's sharpness
    2: [  # v3: a change log of face ids, names compared ignoring case (filled in _migrate), the gallery's own id
        "CREATE TABLE changes (generation INTEGER NOT NULL, face_id INTEGER NOT NULL, added INTEGER NOT NULL)",
        "CREATE INDEX changes_generation ON changes(generation)",
        "ALTER TABLE people ADD COLUMN name_key TEXT",
        "CREATE INDEX people_name_key ON people(name_key)",
    ],
    3: _KEYS_AND_AUDIT,  # v4: API keys and the audit log
    4: _LIBRARY,  # v5: the photo library
    5: _ERASED,  # v6: erased library faces remembered without their data
    6: _KEY_LIMITS,  # v7: keys' expiry, last use and rate
}


def _connect(path: Path, writable: bool) -> tuple[sqlite3.Connection, bool]:
    """A connection to ``path`` and whether it can write. A database that cannot be opened for
    writing (read-only volume or file) is opened read-only, then immutable; one locked by another
    process is waited for (up to BUSY_TIMEOUT_S)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while writable:
        db = None
        try:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            return db, True
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            # Another process creating or migrating the database holds a lock that switching to WAL
            # does not wait for: wait and retry (falling back to read-only here would make a writer
            # that cannot write).
            if "locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if not path.is_file():
                raise
            break
    uri = path.resolve().as_uri()
    for mode in ("?mode=ro", "?immutable=1"):
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db, False
        except sqlite3.OperationalError:
            continue
    raise sqlite3.OperationalError("unable to open database file, even read-only")


class SQLiteStore(TruthStore):
    """The SQLite store of one gallery folder (see the module docstring).

    ``create``: make the folder and database when missing (enrolling does; reading does not).
    """

    def __init__(self, folder: str | Path, create: bool = False, key: GalleryKey | None = None):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self.location = str(self.folder)
        if not self.path.exists():
            if not create:
                raise NoGalleryError(self.folder)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{self.folder}: cannot create gallery folder ({exc.strerror})") from None
        self._raw = False  # whether SQLite errors are left to the caller (a write transaction, check)
        try:
            self.db, self.writable = _connect(self.path, writable=True)
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.writable:
                self.db.execute("PRAGMA synchronous = FULL")
                self.db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, whatever the build's default
            self._init_schema(key)
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise GalleryError(f"{self.path}: cannot open gallery database ({exc})") from None
        except BaseException:  # a refused key: the connection goes (and with it the WAL files it made)
            self._close_quietly()
            raise
        if self.writable:
            self._finish_erasure()

    @classmethod
    def exists(cls, location: str | Path) -> bool:
        return (Path(location) / DB_NAME).is_file()

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    def _init_schema(self, key: GalleryKey | None) -> None:
        if not self._has_schema():
            with self.transaction():
                if not self._has_schema():  # another process may have created it meanwhile
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self._set_meta(
                        {
                            "schema_version": SCHEMA_VERSION,
                            "generation": 0,
                            "log_from": 0,
                            "gallery_id": secrets.token_hex(8),
                            "created_at": time.time(),
                        }
                    )
        version = int(self.meta().get("schema_version", 0))
        self._refuse_newer(version, SCHEMA_VERSION)
        self._unlock(key)  # before anything is written
        if version < SCHEMA_VERSION:
            if not self.writable:
                raise GalleryError(f"{self.path}: gallery schema version {version} must be upgraded, but it is read-only")
            self._migrate()

    def _migrate(self) -> None:
        """Bring an older gallery to SCHEMA_VERSION, all steps in one transaction."""
        with self.transaction():
            version = int(self.meta()["schema_version"])  # another process may have migrated it
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    if not self._has_column(statement):
                        self.db.execute(statement)
                version += 1
            unkeyed = self.db.execute("SELECT id, name FROM people WHERE name_key IS NULL").fetchall()
            self.db.executemany("UPDATE people SET name_key = ? WHERE id = ?", [(name_key(n), i) for i, n in unkeyed])
            meta = self.meta()
            self._set_meta(
                {"schema_version": version, "gallery_id": meta.get("gallery_id") or secrets.token_hex(8)}
                | {"log_from": meta.get("log_from", meta.get("generation", 0))}
            )

    def _has_column(self, statement: str) -> bool:
        """Whether ``statement`` adds a column (ALTER TABLE t ADD COLUMN c ...) that is there already
        (a gallery made by a newer facesys, then marked older): such a step is skipped."""
        words = statement.split()
        if words[:2] != ["ALTER", "TABLE"] or words[3:5] != ["ADD", "COLUMN"]:
            return False
        return any(row[1] == words[5] for row in self.db.execute(f"PRAGMA table_info({words[2]})"))

    def close(self) -> None:
        self.db.close()

    def _close_quietly(self) -> None:
        if hasattr(self, "db"):
            with contextlib.suppress(sqlite3.Error):
                self.db.close()

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE, so writers queue instead of failing).

        Any SQLite failure (read-only or full disk, I/O error, constraint) rolls everything back
        and becomes one GalleryError naming the database.
        """
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: cannot write to the gallery ({exc})") from None
        self._raw = True  # errors inside are this transaction's: translated here, as write errors
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError):
                raise GalleryError(f"{self.path}: change refused by the database ({exc})") from None
            if isinstance(exc, sqlite3.Error):
                raise GalleryError(f"{self.path}: cannot write to the gallery ({exc}); nothing was changed") from None
            raise
        finally:
            self._raw = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state (WAL snapshot).
        Nested uses share the outer one."""
        if self.db.in_transaction:
            yield
            return
        with self._reads():
            self.db.execute("BEGIN DEFERRED")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # after a failed read, COMMIT fails too (and ends it)
                if self.db.in_transaction:
                    self.db.execute("COMMIT")
            raise
        with self._reads():
            self.db.execute("COMMIT")

    @contextmanager
    def _reads(self) -> Iterator[None]:
        """SQLite errors inside (a damaged page, a lock, I/O) become one GalleryError naming the
        database (damage, not a lock or I/O error, with what to do about it); inside a write
        transaction or :meth:`check` they are left to it."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if self._raw:
                raise
            hint = "" if isinstance(exc, sqlite3.OperationalError) else f"; {DAMAGE_HINT}"
            raise GalleryError(f"{self.path}: cannot read the gallery database ({exc}){hint}") from None

    def _fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._reads():
            return self.db.execute(_sqlite(sql), _params(params)).fetchall()

    def _run(self, sql: str, params: Sequence = ()) -> int:
        with self._reads():
            return self.db.execute(_sqlite(sql), _params(params)).rowcount

    def _run_many(self, sql: str, rows: list[Sequence]) -> None:
        with self._reads():
            self.db.executemany(_sqlite(sql), rows)

    def _fetch_stream(self, sql: str, size: int = 500) -> Iterator[list[tuple]]:
        with self._reads():
            cursor = self.db.execute(_sqlite(sql))
            while batch := cursor.fetchmany(max(size, 1)):
                yield batch

    def _insert_rows(self, table: str, rows: list[dict[str, object]]) -> list[int]:
        ids = []
        for row in rows:
            values = ({"id": self._unused_id(table)} if table in _COUNTERS else {}) | row
            sql = f"INSERT INTO {table}({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
            ids.append(self.db.execute(sql, tuple(values.values())).lastrowid)
        return ids

    def _unused_id(self, table: str) -> int:
        """The next id of faces or people, counted in meta (last_face_id, last_person_id): SQLite
        alone would reuse a deleted highest id."""
        (last,) = self._row(
            "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?), 0), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0))",
            (_COUNTERS[table],),
        )
        self._set_meta({_COUNTERS[table]: last + 1})
        return last + 1

    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable: checkpoint the WAL into the database and VACUUM it, then
        clear the mark a removal leaves until this is done (so a killed removal is finished by the
        next process that opens the gallery for writing). GalleryError (the change itself is
        committed) when the disk has no room for it."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("VACUUM")
            self.db.execute("DELETE FROM meta WHERE key = ?", (ERASE_PENDING,))
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise GalleryError(
                f"{self.path}: the change is committed, but erasing the freed space failed ({exc}); "
                "free some disk space and run 'facesys gallery repair' to finish erasing"
            ) from None

    def _database_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob(DB_NAME + "*"))

    # -- a damaged database ---------------------------------------------------------------------

    def check(self) -> list[str]:
        """SQLite's integrity check, then :meth:`TruthStore._check_rows`. A damaged database is
        reported (lines starting "sqlite:"), never raised."""
        problems: list[str] = []
        self._raw = True
        try:
            damage = [f"sqlite: {row[0]}" for row in self.db.execute("PRAGMA integrity_check(20)") if row[0] != "ok"]
            if damage:
                problems += [*damage, f"sqlite: the database is damaged ({DAMAGE_HINT})"]
            self._check_rows(problems)
        except sqlite3.DatabaseError as exc:
            problems.insert(0, f"sqlite: {exc} ({DAMAGE_HINT})")
        except GalleryError as exc:
            problems.insert(0, f"sqlite: {exc}")
        finally:
            self._raw = False
        return problems

    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """Every face row that can still be read and parsed, read one by one by id (1 up to the
        highest id any readable page knows: a lookup by primary key reaches rows on undamaged
        pages even when a scan of the table fails), and how many rows could not be: those whose
        read raised, whose fields do not parse (embedding of the wrong size, not finite or not unit,
        bad JSON, crop not a JPEG, face of another model, person unreadable), and those the table
        counts but no lookup found."""
        meta = self.meta()  # GalleryError when unreadable: nothing can be salvaged without the model
        dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
        highest, counted = 0, 0
        for query in (
            "SELECT value FROM meta WHERE key = 'last_face_id'",
            "SELECT MAX(id) FROM faces",
            "SELECT MAX(face_id) FROM changes WHERE added = 1",
        ):
            with contextlib.suppress(sqlite3.DatabaseError, TypeError, ValueError):
                found = int(self.db.execute(query).fetchone()[0])
                if found <= MAX_SALVAGE_ID:
                    highest = max(highest, found)
        with contextlib.suppress(sqlite3.DatabaseError, TypeError, ValueError):
            counted = int(self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
        names: dict[int, str | None] = {}
        rows: list[tuple[FaceRecord, np.ndarray, bytes]] = []
        failed = 0
        for face_id in range(1, highest + 1):
            try:
                row = self.db.execute(
                    "SELECT id, person_id, source, image_sha256, box, landmarks, score, crop_origin, model_id, created_at, "
                    "embedding, crop FROM faces WHERE id = ?",
                    (face_id,),
                ).fetchone()
            except sqlite3.DatabaseError:
                failed += 1
                continue
            if row is None:
                continue
            try:
                row = self._opened([row])[0]
            except GalleryError:  # a sealed value altered by the damage
                failed += 1
                continue
            parsed = salvaged_face((row[0], self._salvaged_name(row[1], names), *row[2:]), dim, model_id)
            if parsed is None:
                failed += 1
            else:
                rows.append(parsed)
        return rows, max(failed, counted - len(rows))

    def set_aside(self, suffix: str) -> str:
        """Close the database and rename its files (with its WAL and shared-memory files, so the
        copy stays whole) to ``gallery.sqlite3.<suffix>``; returns that path. Nothing is left at
        the old names: a WAL left behind would be replayed into a new database."""
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        aside = self.path.with_name(f"{DB_NAME}.{suffix}")
        moves = [(self.path.with_name(DB_NAME + tail), aside.with_name(aside.name + tail)) for tail in ("", "-wal", "-shm")]
        if any(target.exists() for _, target in moves):
            raise GalleryError(f"{aside}: exists already; nothing was moved")
        done: list[tuple[Path, Path]] = []
        try:
            for source, target in moves:
                if source.exists():
                    source.rename(target)
                    done.append((source, target))
        except OSError as exc:
            for source, target in reversed(done):  # best effort: put back what was moved
                with contextlib.suppress(OSError):
                    target.rename(source)
            raise GalleryError(f"{self.path}: cannot move the database aside ({exc.strerror}); nothing was changed") from None
        return str(aside)


@functools.lru_cache(maxsize=512)
def _sqlite(sql: str) -> str:
    """The store's shared SQL for SQLite: a list parameter is a JSON array read by json_each."""
    return sql.replace("= ANY(?)", "IN (SELECT value FROM json_each(?))")


def _params(params: Sequence) -> list:
    """Parameters for :func:`_sqlite`'s SQL: lists as JSON text."""
    return [json.dumps(value) if isinstance(value, list) else value for value in params]
