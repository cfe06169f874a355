"""The SQLite truth store: one database (WAL mode) in the gallery folder.

Tables (schema version 6; older galleries are migrated when opened):

- ``meta(key, value)``: schema_version, gallery_id (random, made at creation), model_id
  (``name@sha256[:16]``), model_name, weights_sha256, dim, metric, generation (bumped by every
  change), last_face_id and last_person_id (ids are never reused), log_from (the first generation
  the change log covers), created_at, and settings (calibrated thresholds, forced index kind).
- ``people(id, name UNIQUE, created_at, name_key)``: names normalised (NFC, trimmed); unique
  ignoring case (``name_key``).
- ``faces(id, person_id, source, image_sha256 UNIQUE, box, landmarks, score, crop, crop_origin,
  embedding, model_id, created_at, sharpness)``: one enrolled photo each (see base.FaceRecord).
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
  by ``facesys scan``, unnamed until named; never searched by identify (see base.py). Their
  deletions are erased as the faces' are.
- v6: ``library_photos.erased`` (JSON [frame, x1, y1, x2, y2] of faces erased with a removed
  person) and ``library_erased(sha256, faces)``: files left without faces by such an erasure, by
  content hash only, so a scan does not bring their faces back (see ``TruthStore.remove_person``).
  ``faces.from_library`` (1: a copy made by naming a library face; a file forgotten and found
  again links its face to that copy again, named by the user).

Every change is one transaction; nothing here imports torch. A database on a read-only volume
is opened read-only (immutable when even that fails), so it can still be read. A read that meets
a damaged database raises one GalleryError naming it; ``salvage`` reads what is left row by row,
and ``set_aside`` moves the damaged files away so a new database can be built from that.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from facesys.errors import (
    ConflictError,
    DuplicatePhotoError,
    GalleryError,
    GalleryVersionError,
    NameConflictError,
    NoGalleryError,
    UnknownKeyError,
    UnknownPersonError,
)
from facesys.gallery.audit import AuditEvent, current_actor
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

SCHEMA_VERSION = 6
DB_NAME = "gallery.sqlite3"
BUSY_TIMEOUT_S = 60.0
ERASE_PENDING = "erase_pending"  # meta key: a removal committed, its freed pages not yet erased
DAMAGE_HINT = "'facesys gallery export' salvages the readable rows; 'facesys gallery repair' rebuilds the database from them"
MAX_SALVAGE_ID = 2**31  # a face id above this read from a damaged page is taken for garbage
_FACE_COLUMNS = "f.id, p.name, f.source, f.image_sha256, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, f.created_at"
_KEY_COLUMNS = "name, scope, created_at, revoked_at"

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
""" + ";\n".join(_KEYS_AND_AUDIT + _LIBRARY + _ERASED)
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

    def __init__(self, folder: str | Path, create: bool = False):
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
        try:
            self.db, self.writable = _connect(self.path, writable=True)
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.writable:
                self.db.execute("PRAGMA synchronous = FULL")
                self.db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, whatever the build's default
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: cannot open gallery database ({exc})") from None
        if self.writable and ERASE_PENDING in self.meta():
            with contextlib.suppress(GalleryError):  # a removal was interrupted before its erasure: finish it
                self.erase_freed_pages()

    @classmethod
    def exists(cls, location: str | Path) -> bool:
        return (Path(location) / DB_NAME).is_file()

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    def _init_schema(self) -> None:
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
        if version > SCHEMA_VERSION:
            raise GalleryVersionError(
                f"{self.path}: gallery schema version {version} is newer than this facesys supports "
                f"({SCHEMA_VERSION}); upgrade facesys"
            )
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

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE, so writers queue instead of failing).

        Any SQLite failure (read-only or full disk, I/O error, constraint) rolls everything back
        and becomes one GalleryError naming the database.
        """
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: cannot write to the gallery ({exc})") from None
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

    def _unreadable(self, exc: sqlite3.Error) -> GalleryError:
        """One line for a read that failed; damage (not a lock or I/O error) gets what to do about it."""
        hint = "" if isinstance(exc, sqlite3.OperationalError) else f"; {DAMAGE_HINT}"
        return GalleryError(f"{self.path}: cannot read the gallery database ({exc}){hint}")

    @contextmanager
    def _reads(self) -> Iterator[None]:
        """SQLite read errors (a damaged page, a lock, I/O) inside become one GalleryError naming the database."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None

    # -- metadata -----------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        with self._reads():
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _set_meta(self, values: dict[str, object]) -> None:
        self.db.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def _bump_generation(self) -> int:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _log(self, generation: int, face_ids, added: bool) -> None:
        self.db.executemany("INSERT INTO changes VALUES (?, ?, ?)", [(generation, int(i), int(added)) for i in face_ids])

    def _audit(self, action: str, person_id: int | None = None, detail: dict | None = None) -> None:
        """Write one audit event, now and by the current actor, inside the open transaction."""
        self._write_event(AuditEvent(time.time(), current_actor(), action, None, detail or {}, person_id))

    def _write_event(self, event: AuditEvent) -> None:
        self.db.execute(
            "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)",
            (event.at, event.actor, event.action, event.person_id, detail_json(event.detail)),
        )

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
                self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._set_meta({key: value})
            self._audit("set_setting", detail={"key": key, "value": value})

    def changes_since(self, generation: int) -> Changes | None:
        with self.reading():
            meta = self.meta()
            if generation < int(meta.get("log_from", 0)) or generation > int(meta["generation"]):
                return None
            with self._reads():
                rows = self.db.execute("SELECT face_id, added FROM changes WHERE generation > ? ORDER BY rowid", (generation,))
                return fold_changes(rows)

    # -- people and faces ---------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        with self._reads():
            rows = self.db.execute(
                "SELECT p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            )
            return [(name, count) for name, count in rows]

    def person_of_image(self, image_sha256: str) -> str | None:
        with self._reads():
            row = self.db.execute(
                "SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?", (image_sha256,)
            ).fetchone()
        return row[0] if row else None

    def _person_row(self, name: str) -> tuple[int, str] | None:
        """(id, stored name) of the person named ``name``, compared ignoring case. Galleries from
        before names were normalised may hold several spellings: the exact one comes first."""
        query = "SELECT id, name FROM people WHERE name_key = ? ORDER BY name != ? LIMIT 1"
        with self._reads():
            return self.db.execute(query, (name_key(name), name)).fetchone()

    def person_named(self, name: str) -> str | None:
        return row[1] if (row := self._person_row(normalize_name(name))) else None

    def _person_id(self, name: str, create: bool) -> int | None:
        """The id of the person named ``name`` (compared ignoring case); created when ``create``.
        A different spelling of an existing name is refused, naming the existing one."""
        row = self._person_row(name)
        if row:
            person_id, existing = row
            if existing != name and create:
                raise NameConflictError(f"{name!r}: a person named {existing!r} exists already; use that exact name", existing)
            return person_id
        if not create:
            return None
        person_id = self._next_id("last_person_id", "people")
        self.db.execute(
            "INSERT INTO people(id, name, created_at, name_key) VALUES (?, ?, ?, ?)",
            (person_id, name, time.time(), name_key(name)),
        )
        return person_id

    def _insert_face(self, name: str, face: NewFace, model_id: str) -> tuple[int, int]:
        """Insert inside an open transaction; returns (new face id, person id)."""
        if self.model_id != model_id:
            raise GalleryError(f"{self.folder}: gallery model is {self.model_id}, not {model_id}")
        owner = self.person_of_image(face.image_sha256)
        if owner is not None:
            raise DuplicatePhotoError(f"{face.source}: this photo is already enrolled as {owner!r}", owner)
        person_id = self._person_id(name, create=True)
        face_id = self._next_id("last_face_id", "faces")
        box, landmarks, origin = geometry_json(face)
        self.db.execute(
            "INSERT INTO faces(id, person_id, source, image_sha256, box, landmarks, score, crop, crop_origin, embedding, "
            "model_id, created_at, sharpness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                face_id,
                person_id,
                face.source,
                face.image_sha256,
                box,
                landmarks,
                float(face.score),
                face.crop_jpeg,
                origin,
                embedding_bytes(face.embedding),
                model_id,
                time.time(),
                face.sharpness,
            ),
        )
        return face_id, person_id

    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        return self.add_faces([(name, face)], model_id)[0]

    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str = "enroll") -> list[int]:
        named = [(normalize_name(name), face) for name, face in faces]
        with self.transaction():
            inserted = [self._insert_face(name, face, model_id) for name, face in named]
            ids = [face_id for face_id, _ in inserted]
            self._log(self._bump_generation(), ids, added=True)
            self._audit_faces(action, inserted)
            return ids

    def _audit_faces(self, action: str, faces: list[tuple[int, int]]) -> None:
        """One ``action`` event per person of (face id, person id) ``faces``: detail {"face_ids": [...]}."""
        for person_id, face_ids in faces_by_person(faces).items():
            self._audit(action, person_id, {"face_ids": face_ids})

    def _next_id(self, counter: str, table: str) -> int:
        """An id of ``table`` (faces or people) never used before in this gallery, counted in the
        meta key ``counter`` (SQLite alone would reuse a deleted highest id)."""
        (last,) = self.db.execute(
            "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?), 0), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0))",
            (counter,),
        ).fetchone()
        self._set_meta({counter: last + 1})
        return last + 1

    def _existing_person(self, name: str) -> int:
        """Inside a transaction: the id of the person named ``name``; UnknownPersonError when nobody is."""
        person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
        if person_id is None:
            raise UnknownPersonError(f"no person named {name!r} in {self.folder}")
        return person_id

    def remove_person(self, name: str) -> int:
        with self.transaction():
            person_id = self._existing_person(name)
            ids = [r[0] for r in self.db.execute("SELECT id FROM faces WHERE person_id = ?", (person_id,))]
            library = self._erase_library_faces_of(person_id)
            self.db.execute("DELETE FROM faces WHERE person_id = ?", (person_id,))
            self.db.execute("DELETE FROM people WHERE id = ?", (person_id,))
            self._log(self._bump_generation(), ids, added=False)
            self._audit("remove_person", person_id, {"faces": len(ids)} | ({"library_faces": library} if library else {}))
            self._set_meta({ERASE_PENDING: 1})
        self.erase_freed_pages()
        return len(ids)

    def _erase_library_faces_of(self, person_id: int) -> int:
        """Inside a transaction: delete the library faces of ``person_id`` and those that are one of
        their enrolled faces again, remembering them as TruthStore.remove_person says; returns how many."""
        enrolled = self.db.execute("SELECT image_sha256, embedding FROM faces WHERE person_id = ?", (person_id,)).fetchall()
        same = self.db.execute(
            "SELECT lf.id, lp.sha256, lf.embedding FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lp.sha256 IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted({sha for sha, _ in enrolled})),),
        ).fetchall()
        wanted = json.dumps(sorted(same_faces(enrolled, same)))
        rows = self.db.execute(
            "SELECT id, photo_id, frame, box FROM library_faces WHERE person_id = ? OR id IN (SELECT value FROM json_each(?))",
            (person_id, wanted),
        ).fetchall()
        if not rows:
            return 0
        doomed = json.dumps([row[0] for row in rows])
        self.db.execute("DELETE FROM library_faces WHERE id IN (SELECT value FROM json_each(?))", (doomed,))
        for photo_id in sorted({row[1] for row in rows}):
            erased = [(frame, box) for _, photo, frame, box in rows if photo == photo_id]
            sha, old, left = self.db.execute(
                "SELECT sha256, erased, (SELECT COUNT(*) FROM library_faces WHERE photo_id = ?1) FROM library_photos "
                "WHERE id = ?1",
                (photo_id,),
            ).fetchone()
            if left:
                self.db.execute(
                    "UPDATE library_photos SET faces = ?, erased = ? WHERE id = ?", (left, erased_boxes(old, erased), photo_id)
                )
            else:
                self.db.execute("DELETE FROM library_photos WHERE id = ?", (photo_id,))
                self.db.execute(
                    "INSERT INTO library_erased(sha256, faces) VALUES (?, ?) "
                    "ON CONFLICT(sha256) DO UPDATE SET faces = MAX(faces, excluded.faces)",
                    (sha, len(erased)),
                )
        return len(rows)

    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        face_ids = possible_ids(face_ids)
        with self.transaction():
            found = list(self._rows_of_faces("SELECT f.id, f.person_id, p.name", np.asarray(face_ids, np.int64)))
            if not found:
                return {}
            ids = sorted(face_id for face_id, _, _ in found)
            self.db.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in ids])
            self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT DISTINCT person_id FROM faces)")
            self._detach_orphans()
            self._log(self._bump_generation(), ids, added=False)
            self._audit_faces("remove_faces", sorted((face_id, person_id) for face_id, person_id, _ in found))
            self._set_meta({ERASE_PENDING: 1})
        self.erase_freed_pages()
        return {face_id: name for face_id, _, name in found}

    def rename_person(self, old: str, new: str, seen: list[int] | None = None) -> None:
        new = normalize_name(new)
        with self.transaction():
            person_id = self._seen_person(old, seen)
            other = self._person_row(new)
            if other is not None and other[0] != person_id:
                raise NameConflictError(f"a person named {other[1]!r} already exists in {self.folder}", other[1])
            self.db.execute("UPDATE people SET name = ?, name_key = ? WHERE id = ?", (new, name_key(new), person_id))
            self._bump_generation()
            self._audit("rename", person_id)  # no names: the log shows the person's current one

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

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        query = f"SELECT {_FACE_COLUMNS} FROM faces f JOIN people p ON p.id = f.person_id"
        with self._reads():
            if name is not None:
                person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
                if person_id is None:
                    return []
                rows = self.db.execute(query + " WHERE p.id = ? ORDER BY f.id", (person_id,)).fetchall()
            else:
                rows = self.db.execute(query + " ORDER BY f.id").fetchall()
        return [face_record(row) for row in rows]

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        with self._reads():
            rows = self.db.execute(
                "SELECT f.id, f.embedding, p.name FROM faces f JOIN people p ON p.id = f.person_id ORDER BY f.id"
            ).fetchall()
        dim = self.dim
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = (
            np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dim) if rows else np.zeros((0, dim), np.float32)
        )
        return ids, vectors.astype(np.float32), [r[2] for r in rows]

    def face_count(self) -> int:
        with self._reads():
            return int(self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def face_ids(self) -> np.ndarray:
        with self._reads():
            return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM faces ORDER BY id")), np.int64)

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(face_ids), self.dim), np.float32)
        position = {int(face_id): i for i, face_id in enumerate(face_ids)}
        with self._reads():
            for face_id, blob in self._rows_of_faces("SELECT f.id, f.embedding", face_ids):
                out[position[face_id]] = np.frombuffer(blob, "<f4")
        return out

    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        with self._reads():
            return dict(self._rows_of_faces("SELECT f.id, p.name", face_ids))

    def _rows_of_faces(self, select: str, face_ids: np.ndarray) -> Iterator[tuple]:
        """Rows of ``select`` (over faces f joined to people p) for the existing faces among ``face_ids``
        (-1 = none), queried 500 ids at a time."""
        ids = sorted({int(i) for i in np.ravel(face_ids) if i >= 0})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            where = f"WHERE f.id IN ({','.join('?' * len(chunk))})"
            yield from self.db.execute(f"{select} FROM faces f JOIN people p ON p.id = f.person_id {where}", chunk)

    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        with self._reads():
            yield from (
                (r[0], r[1], json.loads(r[2]), json.loads(r[3]))
                for r in self.db.execute("SELECT id, crop, crop_origin, landmarks FROM faces ORDER BY id")
            )

    def crop(self, face_id: int) -> bytes | None:
        with self._reads():
            row = self.db.execute("SELECT crop FROM faces WHERE id = ?", (valid_id(face_id),)).fetchone()
        return row[0] if row else None

    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        with self.transaction():
            self.db.executemany(
                "UPDATE faces SET embedding = ?, model_id = ? WHERE id = ?",
                [(embedding_bytes(v), model_id, face_id) for face_id, v in vectors.items()],
            )
            self._set_meta({"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim})
            self.db.execute("DELETE FROM meta WHERE key IN ('verify_threshold', 'identify_threshold')")
            self._set_meta({"log_from": self._bump_generation()})  # every vector changed: no index can follow
            self._audit("replace_embeddings", detail={"model_id": model_id, "faces": len(vectors)})

    # -- the photo library ----------------------------------------------------------------------

    def record_photo(self, photo: ScannedPhoto, faces: list[NewLibraryFace] | None, model_id: str | None) -> list[int]:
        with self.transaction():
            row = self.db.execute("SELECT id FROM library_photos WHERE path = ?", (photo.path,)).fetchone()
            now = time.time()
            if faces is None:
                if row is None:
                    raise GalleryError(f"{photo.path}: not in the library of {self.folder}; nothing to update")
                self.db.execute(
                    "UPDATE library_photos SET size = ?, mtime_ns = ?, scanned_at = ? WHERE id = ?",
                    (photo.size, photo.mtime_ns, now, row[0]),
                )
                return []
            if faces and self.model_id != model_id:
                raise GalleryError(f"{self.folder}: gallery model is {self.model_id}, not {model_id}")
            values = (photo.size, photo.mtime_ns, photo.sha256, len(faces), photo.error, model_id, now)
            copies: list[int] = []  # enrolled copies of the faces replaced now
            if row is None:
                photo_id = self.db.execute(
                    "INSERT INTO library_photos(size, mtime_ns, sha256, faces, error, model_id, scanned_at, path) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, photo.path),
                ).lastrowid
            else:
                photo_id = row[0]
                query = "SELECT enrolled_face_id FROM library_faces WHERE photo_id = ? AND enrolled_face_id IS NOT NULL"
                copies = [copy for (copy,) in self.db.execute(query, (photo_id,))]
                if self.db.execute("DELETE FROM library_faces WHERE photo_id = ?", (photo_id,)).rowcount:
                    self._set_meta({ERASE_PENDING: 1})
                self.db.execute(  # faces erased with a removed person stay remembered while the bytes are the same
                    "UPDATE library_photos SET erased = CASE WHEN sha256 = ?3 THEN erased END, size = ?1, mtime_ns = ?2, "
                    "sha256 = ?3, faces = ?4, error = ?5, model_id = ?6, scanned_at = ?7 WHERE id = ?8",
                    (*values, photo_id),
                )
            people: dict[str, int | None] = {}
            inserted: list[tuple[int, int | None]] = []
            for face in faces:
                if face.person is not None and face.person not in people:
                    found = self._person_row(face.person)
                    people[face.person] = found[0] if found else None
                person_id = people.get(face.person) if face.person is not None else None
                box, landmarks, origin = geometry_json(face)
                face_id = self.db.execute(
                    "INSERT INTO library_faces(photo_id, frame, box, landmarks, score, crop, crop_origin, embedding, model_id, "
                    "person_id, assigned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        photo_id,
                        face.frame,
                        box,
                        landmarks,
                        float(face.score),
                        face.crop_jpeg,
                        origin,
                        embedding_bytes(face.embedding),
                        model_id,
                        person_id,
                        None if person_id is None else "auto",
                    ),
                ).lastrowid
                inserted.append((face_id, person_id))
            self._relink_copies(photo.sha256, copies, [face_id for face_id, _ in inserted], faces)
            attached = [(face_id, person_id) for face_id, person_id in inserted if person_id is not None]
            for person_id, face_ids in faces_by_person(attached).items():
                self._audit("auto_attach", person_id, {"library_faces": face_ids})
            return [face_id for face_id, _ in inserted]

    def library_photos(self) -> list[LibraryPhoto]:
        with self._reads():
            rows = self.db.execute(
                "SELECT id, path, size, mtime_ns, sha256, faces, error, model_id, scanned_at, erased FROM library_photos "
                "ORDER BY path"
            ).fetchall()
        return [LibraryPhoto(*row[:-1], json.loads(row[-1]) if row[-1] else None) for row in rows]

    def move_photo(self, old_path: str, photo: ScannedPhoto) -> bool:
        with self.transaction():
            row = self.db.execute(
                "SELECT id FROM library_photos WHERE path = ? AND sha256 = ? AND NOT EXISTS "
                "(SELECT 1 FROM library_photos WHERE path = ?)",
                (old_path, photo.sha256, photo.path),
            ).fetchone()
            if row is None:
                return False
            self.db.execute(
                "UPDATE library_photos SET path = ?, size = ?, mtime_ns = ?, scanned_at = ? WHERE id = ?",
                (photo.path, photo.size, photo.mtime_ns, time.time(), row[0]),
            )
            self.db.execute(  # the enrolled copies of its named faces name the file where it is now
                "UPDATE faces SET source = ? WHERE id IN (SELECT enrolled_face_id FROM library_faces WHERE photo_id = ?)",
                (photo.path, row[0]),
            )
            self._audit("move_photos", detail={"photos": 1})
        return True

    def erased_photos(self) -> set[str]:
        with self._reads():
            return {sha for (sha,) in self.db.execute("SELECT sha256 FROM library_erased")}

    def forget_photos(self, paths: list[str]) -> int:
        with self.transaction():
            wanted = json.dumps(sorted(set(paths)))
            photos, faces = self.db.execute(
                "SELECT COUNT(*), (SELECT COUNT(*) FROM library_faces WHERE photo_id IN "
                "(SELECT id FROM library_photos WHERE path IN (SELECT value FROM json_each(?1)))) "
                "FROM library_photos WHERE path IN (SELECT value FROM json_each(?1))",
                (wanted,),
            ).fetchone()
            if not photos:
                return 0
            self.db.execute("DELETE FROM library_photos WHERE path IN (SELECT value FROM json_each(?))", (wanted,))
            self._audit("forget_photos", detail={"photos": photos, "library_faces": faces})
            self._set_meta({ERASE_PENDING: 1})
        self.erase_freed_pages()
        return faces

    def library_faces(
        self, ids: list[int] | None = None, person: str | None = None, cluster: int | None = None, unnamed: bool = False
    ) -> list[LibraryFace]:
        where, params = [], []
        with self._reads():
            if ids is not None:
                where.append("lf.id IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(sorted(set(valid_ids(ids, "library face")))))
            if person is not None:
                found = self._person_row(normalize_name(person)) if person.strip() else None
                if found is None:
                    return []
                where.append("lf.person_id = ?")
                params.append(found[0])
            if cluster is not None:
                where.append("lf.cluster = ?")
                params.append(valid_id(cluster, "cluster", low=0))
            if unnamed:
                where.append("lf.person_id IS NULL")
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self.db.execute(
                f"SELECT {LIBRARY_FACE_COLUMNS} FROM {LIBRARY_FACES_FROM}{clause} ORDER BY lf.id", params
            ).fetchall()
        return [library_face(row) for row in rows]

    def library_vectors(self, ids: list[int]) -> np.ndarray:
        dim = self.dim
        wanted = valid_ids(ids, "library face")
        with self._reads():
            found = dict(
                self.db.execute(
                    "SELECT id, embedding FROM library_faces WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(set(wanted))),),
                ).fetchall()
            )
        missing_library_faces(wanted, found, self.location)
        out = np.zeros((len(wanted), dim), np.float32)
        for row, face_id in enumerate(wanted):
            if len(found[face_id]) != 4 * dim:
                raise GalleryError(f"{self.folder}: library face #{face_id} has {len(found[face_id]) // 4} values, not {dim}")
            out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def library_crops(self, ids: list[int]) -> dict[int, bytes]:
        with self._reads():
            return dict(
                self.db.execute(
                    "SELECT id, crop FROM library_faces WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(set(valid_ids(ids, "library face")))),),
                ).fetchall()
            )

    def set_clusters(self, ids: list[int], clusters: list[int]) -> None:
        pairs = [(int(c), int(i)) for i, c in zip(ids, clusters, strict=True)]
        with self.transaction():
            self.db.executemany("UPDATE library_faces SET cluster = ? WHERE id = ? AND person_id IS NULL", pairs)
            last = max([int(self.meta().get("last_cluster_id", -1))] + [c for c, _ in pairs])
            self._set_meta({"last_cluster_id": last})
            self._audit("cluster", detail={"library_faces": len(pairs), "clusters": len({c for c, _ in pairs})})

    def _library_rows(self, ids: list[int]) -> list[tuple]:
        """(id, person id, enrolled face id, photo sha256, score, model id) of the library faces
        ``ids`` (inside a transaction); UnknownFaceError naming those that do not exist."""
        rows = self.db.execute(
            "SELECT lf.id, lf.person_id, lf.enrolled_face_id, lp.sha256, lf.score, lf.model_id FROM library_faces lf "
            "JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id IN (SELECT value FROM json_each(?)) ORDER BY lf.id",
            (json.dumps(sorted({int(i) for i in ids})),),
        ).fetchall()
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
        self.db.execute("DELETE FROM faces WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
        self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT DISTINCT person_id FROM faces)")
        self._detach_orphans()
        self._log(self._bump_generation(), ids, added=False)
        self._audit_faces("remove_faces", copies)
        self._set_meta({ERASE_PENDING: 1})
        return ids

    def _detach_orphans(self) -> None:
        """Inside a transaction: library faces whose person went lose their assignment too."""
        self.db.execute(
            "UPDATE library_faces SET assigned = NULL, enrolled_face_id = NULL "
            "WHERE person_id IS NULL AND (assigned IS NOT NULL OR enrolled_face_id IS NOT NULL)"
        )

    def _orphaned_copies(self, sha: str, copies: list[int]) -> list[tuple[int, int, bytes]]:
        return self.db.execute(
            "SELECT id, person_id, embedding FROM faces f WHERE (image_sha256 = ? OR id IN (SELECT value FROM json_each(?))) "
            "AND from_library = 1 AND NOT EXISTS (SELECT 1 FROM library_faces lf WHERE lf.enrolled_face_id = f.id)",
            (sha, json.dumps(copies)),
        ).fetchall()

    def _enrolled_photos(self, hashes: list[str]) -> set[str]:
        query = "SELECT image_sha256 FROM faces WHERE image_sha256 IN (SELECT value FROM json_each(?))"
        return {sha for (sha,) in self.db.execute(query, (json.dumps(hashes),))}

    def _copy_library_face(self, face_id: int, person_id: int) -> int:
        """Inside a transaction: copy library face ``face_id`` into ``faces`` as ``person_id``'s; returns the new face id."""
        new_id = self._next_id("last_face_id", "faces")
        self.db.execute(
            "INSERT INTO faces(id, person_id, source, image_sha256, box, landmarks, score, crop, crop_origin, embedding, "
            "model_id, created_at, from_library) SELECT ?, ?, lp.path, lp.sha256, lf.box, lf.landmarks, lf.score, lf.crop, "
            "lf.crop_origin, lf.embedding, lf.model_id, ?, 1 FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lf.id = ?",
            (new_id, person_id, time.time(), face_id),
        )
        return new_id

    def _assign_library_faces(self, person_id: int, faces: list[tuple[int, int | None]]) -> None:
        self.db.executemany(
            "UPDATE library_faces SET person_id = ?, assigned = 'user', cluster = NULL, enrolled_face_id = ? WHERE id = ?",
            [(person_id, copy, face_id) for face_id, copy in faces],
        )

    def _clear_library_faces(self, ids: list[int]) -> None:
        self.db.execute(
            "UPDATE library_faces SET person_id = NULL, assigned = NULL, enrolled_face_id = NULL, cluster = NULL "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )

    def _delete_library_faces(self, ids: list[int]) -> None:
        self.db.execute("DELETE FROM library_faces WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
        self._set_meta({ERASE_PENDING: 1})

    # -- API keys and the audit log ------------------------------------------------------------

    def add_api_key(self, name: str, scope: str, key_hash: str) -> None:
        name = check_new_key(name, scope, key_hash)
        with self.transaction():
            if self._active_key(name) is not None:
                raise ConflictError(f"an active key named {name!r} exists already in {self.folder}; revoke it first")
            check_key_spelling(name, [row[0] for row in self.db.execute("SELECT DISTINCT name FROM api_keys")], self.folder)
            self.db.execute(
                "INSERT INTO api_keys(name, scope, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, scope, key_hash, time.time()),
            )
            self._set_meta({KEYS_REQUIRED: 1})
            self._audit("key_create", detail={"key": name, "scope": scope})

    def _active_key(self, name: str) -> tuple[int, str] | None:
        """(row id, scope) of the active key ``name``, or None."""
        return self.db.execute("SELECT id, scope FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone()

    def api_keys(self) -> list[ApiKey]:
        with self._reads():
            return [ApiKey(*row) for row in self.db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def api_key_for_hash(self, key_hash: str) -> ApiKey | None:
        with self._reads():
            row = self.db.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
        return ApiKey(*row) if row else None

    def revoke_api_key(self, name: str) -> None:
        name = key_name(name)
        with self.transaction():
            found = self._active_key(name)
            if found is None:
                raise UnknownKeyError(f"no active key named {name!r} in {self.folder}")
            self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), found[0]))
            self._audit("key_revoke", detail={"key": name, "scope": found[1]})

    def audit_log(self, limit: int | None = 100) -> list[AuditEvent]:
        if limit is not None and limit < 0:
            raise GalleryError(f"log limit {limit}: must be 0 or more")
        with self._reads():
            rows = self.db.execute(
                "SELECT a.at, a.actor, a.action, p.name, a.detail, a.person_id FROM audit a "
                "LEFT JOIN people p ON p.id = a.person_id ORDER BY a.id DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [
            AuditEvent(at, actor, action, person, json.loads(detail), person_id)
            for at, actor, action, person, detail, person_id in rows
        ]

    def salvage_keys_and_log(self) -> Carried:
        keys = []
        for name, scope, key_hash, created, revoked in self._salvage_rows(
            "api_keys", "name, scope, key_hash, created_at, revoked_at"
        ):
            with contextlib.suppress(GalleryError, TypeError, ValueError):
                check_new_key(name, scope, key_hash)
                keys.append((ApiKey(name, scope, float(created), None if revoked is None else float(revoked)), key_hash))
        names: dict[int, str | None] = {}
        events = []
        for at, actor, action, person_id, detail in self._salvage_rows("audit", "at, actor, action, person_id, detail"):
            with contextlib.suppress(TypeError, ValueError, RecursionError):
                parsed = json.loads(detail)
                if not (isinstance(actor, str) and isinstance(action, str) and isinstance(parsed, dict)):
                    continue
                person = None if person_id is None else self._salvaged_name(int(person_id), names)
                events.append(AuditEvent(float(at), actor, action, person, parsed, None if person_id is None else int(person_id)))
        return Carried(keys, events)

    def _salvage_rows(self, table: str, columns: str) -> list[tuple]:
        """The rows of ``table`` (id order) that can still be read: all at once, else one by one by
        id (1 up to the highest id readable), skipping those whose read fails."""
        try:
            return self.db.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
        except sqlite3.DatabaseError:
            pass
        try:
            highest = min(int(self.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0), MAX_SALVAGE_ID)
        except (sqlite3.DatabaseError, TypeError, ValueError):
            return []
        rows = []
        for row_id in range(1, highest + 1):
            with contextlib.suppress(sqlite3.DatabaseError):
                if (row := self.db.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchone()) is not None:
                    rows.append(row)
        return rows

    def restore_keys_and_log(self, carried: Carried, detail: dict) -> None:
        with self.transaction():
            own = self.db.execute("SELECT id, at, actor, action, person_id, detail FROM audit ORDER BY id").fetchall()
            for key, key_hash in carried.keys:
                taken = self.db.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
                if taken or (key.active and self._active_key(key.name) is not None):
                    continue
                self.db.execute(
                    "INSERT INTO api_keys(name, scope, key_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
                    (key.name, key.scope, key_hash, key.created_at, key.revoked_at),
                )
                self._set_meta({KEYS_REQUIRED: 1})
            new_ids: dict[int, int] = {}
            for event in carried.events:
                if event.person_id is not None and event.person_id not in new_ids:
                    here = self._person_row(event.person) if event.person is not None else None
                    new_ids[event.person_id] = here[0] if here else self._next_id("last_person_id", "people")
                person_id = None if event.person_id is None else new_ids[event.person_id]
                self._write_event(AuditEvent(event.at, event.actor, event.action, None, event.detail, person_id))
            # the log is read in the order written: the history carried over goes before the rebuild's own events
            self.db.executemany("DELETE FROM audit WHERE id = ?", [(row[0],) for row in own])
            self.db.executemany(
                "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)", [row[1:] for row in own]
            )
            self._audit("repair", detail=detail)

    # -- administration -------------------------------------------------------------------------

    def check(self) -> list[str]:
        """SQLite's integrity check, embeddings of the wrong size, not finite or not unit length,
        faces of another model, crops that are not JPEG, people without faces. A damaged database
        is reported (lines starting "sqlite:"), never raised."""
        problems: list[str] = []
        try:
            self._check(problems)
        except sqlite3.DatabaseError as exc:
            problems.insert(0, f"sqlite: {exc} ({DAMAGE_HINT})")
        except GalleryError as exc:  # from meta(): it names the database and the damage
            problems.insert(0, f"sqlite: {exc}")
        return problems

    def _check(self, problems: list[str]) -> None:
        """Append the problems found to ``problems`` (those found before a damaged page stopped it stay)."""
        damage = [f"sqlite: {row[0]}" for row in self.db.execute("PRAGMA integrity_check(20)") if row[0] != "ok"]
        if damage:
            problems += [*damage, f"sqlite: the database is damaged ({DAMAGE_HINT})"]
        meta = self.meta()
        dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
        for face_id, blob, face_model, crop in self.db.execute("SELECT id, embedding, model_id, substr(crop, 1, 2) FROM faces"):
            problems += face_problems(face_id, blob, face_model, crop, dim, model_id)
        for (name,) in self.db.execute("SELECT name FROM people WHERE id NOT IN (SELECT person_id FROM faces)"):
            problems.append(f"person {name!r} has no face")
        query = "SELECT id, embedding, model_id, substr(crop, 1, 2) FROM library_faces ORDER BY id"
        for face_id, blob, face_model, crop in self.db.execute(query):
            problems += library_face_problems(face_id, blob, face_model, crop, dim, model_id)

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
            parsed = self._salvaged_row(row, dim, model_id, names)
            if parsed is None:
                failed += 1
            else:
                rows.append(parsed)
        return rows, max(failed, counted - len(rows))

    def _salvaged_row(
        self, row: tuple, dim: int, model_id: str | None, names: dict[int, str | None]
    ) -> tuple[FaceRecord, np.ndarray, bytes] | None:
        """A face row read from a damaged database as (record, embedding, crop), or None when a
        field does not parse or its person cannot be read (``names`` caches person id -> name)."""
        face_id, person_id, *fields = row
        return salvaged_face((face_id, self._salvaged_name(person_id, names), *fields), dim, model_id)

    def _salvaged_name(self, person_id: int, names: dict[int, str | None]) -> str | None:
        """The name of person ``person_id`` read from a damaged database, or None when unreadable
        (or removed); ``names`` caches person id -> name."""
        if person_id not in names:
            try:
                found = self.db.execute("SELECT name FROM people WHERE id = ?", (person_id,)).fetchone()
                names[person_id] = found[0] if found and isinstance(found[0], str) else None
            except sqlite3.DatabaseError:
                names[person_id] = None
        return names[person_id]

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

    def remove_empty_people(self) -> int:
        with self.transaction():
            count = self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT DISTINCT person_id FROM faces)").rowcount
            self._detach_orphans()
            if count:
                self._bump_generation()
                self._audit("remove_empty_people", detail={"people": count})
        return count

    def stats(self) -> dict[str, object]:
        meta = self.meta()
        with self._reads():
            people = self.db.execute("SELECT COUNT(*) FROM people").fetchone()[0]
            faces = self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
            library = self.db.execute(
                "SELECT (SELECT COUNT(*) FROM library_photos), COUNT(*), COUNT(*) - COUNT(person_id) FROM library_faces"
            ).fetchone()
        size = sum(p.stat().st_size for p in self.folder.glob(DB_NAME + "*"))
        return {
            "gallery": self.location,
            "people": people,
            "faces": faces,
            "model_id": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "gallery_schema_version": int(meta["schema_version"]),
            "database_bytes": size,
        } | dict(zip(("library_photos", "library_faces", "library_unnamed_faces"), library, strict=True))
