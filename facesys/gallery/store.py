"""The gallery's source of truth: one SQLite database (WAL mode) in the gallery folder.

Tables (schema version 2; older galleries are migrated when opened):

- ``meta(key, value)``: schema_version, model_id (``name@sha256[:16]``), model_name,
  weights_sha256, dim, metric, generation (bumped by every change, so derived data can tell it is
  stale), last_face_id (face ids are never reused, so a derived index can be updated by id),
  created_at, optional calibrated thresholds (verify_threshold, identify_threshold) and the
  forced FAISS index kind (index_kind; absent = chosen by size).
- ``people(id, name UNIQUE, created_at)``: names are stored verbatim.
- ``faces(id, person_id, source, image_sha256 UNIQUE, box, landmarks, score, crop, crop_origin,
  embedding, model_id, created_at)``: one enrolled photo each. ``box`` and ``landmarks`` are JSON in
  source pixels; ``crop`` is a JPEG of the face with a wide margin, model-independent, so any model
  can re-align from it (``crop pixel = (source pixel - crop_origin[:2]) * crop_origin[2]``);
  ``embedding`` is float32 little-endian bytes of length ``dim``; ``sharpness`` is the enrollment
  quality measure (NULL for faces enrolled before schema version 2).

Every change is one transaction; nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesys.errors import GalleryError

SCHEMA_VERSION = 2
DB_NAME = "gallery.sqlite3"
BUSY_TIMEOUT_S = 60.0
MAX_NAME_LENGTH = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
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
"""
# Statements that bring a gallery from version N to N + 1; applied in one transaction on open.
_MIGRATIONS: dict[int, list[str]] = {
    1: ["ALTER TABLE faces ADD COLUMN sharpness REAL"],  # v2: the enrollment photo's sharpness
}


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as stored (see the module docstring for units)."""

    id: int
    person: str
    source: str
    image_sha256: str
    box: list[float]
    landmarks: list[list[float]]
    score: float
    crop_origin: list[float]
    model_id: str
    created_at: float


@dataclass(frozen=True)
class NewFace:
    """A face to enroll: source path, image sha256, box (4,), landmarks (5, 2), detection score,
    JPEG crop bytes, crop origin (x0, y0, scale), a (dim,) float32 unit embedding and the chip's sharpness."""

    source: str
    image_sha256: str
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    crop_jpeg: bytes
    crop_origin: tuple[float, float, float]
    embedding: np.ndarray
    sharpness: float | None = None


def check_name(name: str) -> str:
    """``name`` if it can name a person; GalleryError saying why not otherwise.

    Names are stored verbatim (unicode, quotes, slashes are fine); refused are empty or
    whitespace-only names, control characters and names over MAX_NAME_LENGTH characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise GalleryError("a person's name must not be empty or only whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise GalleryError(f"name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise GalleryError(f"name {name!r} contains control characters")
    return name


class GalleryStore:
    """The SQLite store of one gallery folder. Use as a context manager or call close().

    ``create``: make the folder and database when missing (enrolling does; reading does not).
    """

    def __init__(self, folder: str | Path, create: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not self.path.exists():
            if not create:
                raise GalleryError(f"{self.folder}: no gallery here (enroll someone first, or pass --gallery DIR)")
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{self.folder}: cannot create gallery folder ({exc.strerror})") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: cannot open gallery database ({exc})") from None

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    def _init_schema(self) -> None:
        if not self._has_schema():
            with self.transaction():
                if not self._has_schema():  # another process may have created it meanwhile
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self._set_meta({"schema_version": SCHEMA_VERSION, "generation": 0, "created_at": time.time()})
        version = int(self.meta().get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path}: gallery schema version {version} is newer than this facesys supports "
                f"({SCHEMA_VERSION}); upgrade facesys"
            )
        if version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Bring an older gallery to SCHEMA_VERSION, all steps in one transaction."""
        with self.transaction():
            version = int(self.meta()["schema_version"])  # another process may have migrated it
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    self.db.execute(statement)
                version += 1
            self._set_meta({"schema_version": version})

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    # -- metadata -----------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _set_meta(self, values: dict[str, object]) -> None:
        self.db.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def _bump_generation(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @property
    def generation(self) -> int:
        return int(self.meta()["generation"])

    @property
    def model_id(self) -> str | None:
        return self.meta().get("model_id")

    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        """Bind an empty gallery to a model (the first enrollment does this)."""
        with self.transaction():
            self._set_meta(
                {"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim}
                | {"metric": "euclidean-unit"}
            )

    def set_threshold(self, kind: str, value: float | None) -> None:
        """Store (or, with None, remove) a calibrated ``verify`` or ``identify`` threshold."""
        if kind not in ("verify", "identify"):
            raise ValueError(kind)
        with self.transaction():
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key = ?", (f"{kind}_threshold",))
            else:
                self._set_meta({f"{kind}_threshold": float(value)})

    def threshold(self, kind: str) -> float | None:
        value = self.meta().get(f"{kind}_threshold")
        return None if value is None else float(value)

    # -- people and faces ---------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """(name, number of faces) of everyone, by name."""
        rows = self.db.execute(
            "SELECT p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
        )
        return [(name, count) for name, count in rows]

    def person_of_image(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if it is."""
        row = self.db.execute(
            "SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?", (image_sha256,)
        ).fetchone()
        return row[0] if row else None

    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        """Enroll one face of ``name`` (created if new) in one transaction; returns the face id."""
        check_name(name)
        with self.transaction():
            if self.model_id != model_id:
                raise GalleryError(f"{self.folder}: gallery model is {self.model_id}, not {model_id}")
            self.db.execute("INSERT OR IGNORE INTO people(name, created_at) VALUES (?, ?)", (name, time.time()))
            (person_id,) = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            face_id = self._next_face_id()
            self.db.execute(
                "INSERT INTO faces(id, person_id, source, image_sha256, box, landmarks, score, crop, crop_origin, embedding, "
                "model_id, created_at, sharpness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    face_id,
                    person_id,
                    face.source,
                    face.image_sha256,
                    json.dumps([round(float(v), 2) for v in face.box]),
                    json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]),
                    float(face.score),
                    face.crop_jpeg,
                    json.dumps([float(v) for v in face.crop_origin]),
                    np.asarray(face.embedding, "<f4").tobytes(),
                    model_id,
                    time.time(),
                    face.sharpness,
                ),
            )
            self._bump_generation()
            return face_id

    def _next_face_id(self) -> int:
        """A face id never used before in this gallery (SQLite alone would reuse a deleted highest id)."""
        (last,) = self.db.execute(
            "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_face_id'), 0), "
            "COALESCE((SELECT MAX(id) FROM faces), 0))"
        ).fetchone()
        self._set_meta({"last_face_id": last + 1})
        return last + 1

    def remove_person(self, name: str) -> int:
        """Delete a person and all their faces; returns how many faces went. GalleryError if unknown."""
        with self.transaction():
            row = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"no person named {name!r} in {self.folder}")
            count = self.db.execute("DELETE FROM faces WHERE person_id = ?", row).rowcount
            self.db.execute("DELETE FROM people WHERE id = ?", row)
            self._bump_generation()
        self.erase_freed_pages()
        return count

    def remove_faces(self, face_ids: list[int]) -> None:
        """Delete faces by id (people left with no face are deleted too)."""
        with self.transaction():
            self.db.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in face_ids])
            self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT DISTINCT person_id FROM faces)")
            self._bump_generation()
        self.erase_freed_pages()

    def rename_person(self, old: str, new: str) -> None:
        check_name(new)
        with self.transaction():
            if self.db.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"a person named {new!r} already exists in {self.folder}")
            if self.db.execute("UPDATE people SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise GalleryError(f"no person named {old!r} in {self.folder}")
            self._bump_generation()

    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable: checkpoint the WAL into the database and VACUUM it."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Face records (no pixels, no embeddings), of one person or everyone, oldest first."""
        query = (
            "SELECT f.id, p.name, f.source, f.image_sha256, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, "
            "f.created_at FROM faces f JOIN people p ON p.id = f.person_id"
        )
        rows = self.db.execute(
            query + (" WHERE p.name = ?" if name is not None else "") + " ORDER BY f.id", (name,) if name else ()
        )
        return [
            FaceRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6], json.loads(r[7]), r[8], r[9])
            for r in rows
        ]

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state (WAL snapshot)."""
        self.db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray, list[str]]:
        """(generation, face ids, embeddings, names) read together, so they always agree."""
        with self.reading():
            return (self.generation, *self.embeddings())

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(face ids (N,) int64, embeddings (N, dim) float32, person name of each face)."""
        rows = self.db.execute(
            "SELECT f.id, f.embedding, p.name FROM faces f JOIN people p ON p.id = f.person_id ORDER BY f.id"
        ).fetchall()
        dim = int(self.meta().get("dim", 0))
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = (
            np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dim) if rows else np.zeros((0, dim), np.float32)
        )
        return ids, vectors.astype(np.float32), [r[2] for r in rows]

    def face_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def face_ids(self) -> np.ndarray:
        """(N,) int64 ids of every face, ascending."""
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM faces ORDER BY id")), np.int64)

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """(len(face_ids), dim) float32 embeddings of these faces, in the order given."""
        out = np.zeros((len(face_ids), int(self.meta().get("dim", 0))), np.float32)
        position = {int(face_id): i for i, face_id in enumerate(face_ids)}
        for face_id, blob in self._rows_of_faces("SELECT f.id, f.embedding", face_ids):
            out[position[face_id]] = np.frombuffer(blob, "<f4")
        return out

    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        """Face id -> person name for those of ``face_ids`` that exist."""
        return dict(self._rows_of_faces("SELECT f.id, p.name", face_ids))

    def _rows_of_faces(self, select: str, face_ids: np.ndarray) -> Iterator[tuple]:
        """Rows of ``select`` (over faces f joined to people p) for the existing faces among ``face_ids``
        (-1 = none), queried 500 ids at a time."""
        ids = sorted({int(i) for i in np.ravel(face_ids) if i >= 0})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            where = f"WHERE f.id IN ({','.join('?' * len(chunk))})"
            yield from self.db.execute(f"{select} FROM faces f JOIN people p ON p.id = f.person_id {where}", chunk)

    def index_kind(self) -> str:
        """The FAISS index kind forced for this gallery, or ``auto``."""
        return self.meta().get("index_kind", "auto")

    def set_index_kind(self, kind: str) -> None:
        with self.transaction():
            self._set_meta({"index_kind": kind})

    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        """(face id, JPEG crop, crop origin, landmarks in source pixels) of every face."""
        yield from (
            (r[0], r[1], json.loads(r[2]), json.loads(r[3]))
            for r in self.db.execute("SELECT id, crop, crop_origin, landmarks FROM faces ORDER BY id")
        )

    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        """Switch the whole gallery to another model in one transaction (``gallery reindex``)."""
        with self.transaction():
            self.db.executemany(
                "UPDATE faces SET embedding = ?, model_id = ? WHERE id = ?",
                [(np.asarray(v, "<f4").tobytes(), model_id, face_id) for face_id, v in vectors.items()],
            )
            self._set_meta({"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim})
            self.db.execute("DELETE FROM meta WHERE key IN ('verify_threshold', 'identify_threshold')")
            self._bump_generation()

    def check(self) -> list[str]:
        """Problems found in the database (empty when healthy): SQLite's integrity check, embeddings
        of the wrong size, not finite or not unit length, faces of another model, crops that are not
        JPEG, people without faces."""
        problems = [f"sqlite: {row[0]}" for row in self.db.execute("PRAGMA integrity_check") if row[0] != "ok"]
        meta = self.meta()
        dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
        for face_id, blob, face_model, crop in self.db.execute("SELECT id, embedding, model_id, substr(crop, 1, 2) FROM faces"):
            if len(blob) != 4 * dim:
                problems.append(f"face {face_id}: embedding has {len(blob) // 4} values, the gallery's dimension is {dim}")
                continue
            vector = np.frombuffer(blob, "<f4")
            if not np.isfinite(vector).all():
                problems.append(f"face {face_id}: embedding is not finite")
            elif abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
                problems.append(f"face {face_id}: embedding is not unit length ({np.linalg.norm(vector):.4f})")
            if face_model != model_id:
                problems.append(f"face {face_id}: made by {face_model}, the gallery's model is {model_id}")
            if crop != b"\xff\xd8":
                problems.append(f"face {face_id}: stored crop is not a JPEG")
        for (name,) in self.db.execute("SELECT name FROM people WHERE id NOT IN (SELECT person_id FROM faces)"):
            problems.append(f"person {name!r} has no face")
        return problems

    def remove_empty_people(self) -> int:
        """Delete people left without faces; returns how many."""
        with self.transaction():
            count = self.db.execute("DELETE FROM people WHERE id NOT IN (SELECT DISTINCT person_id FROM faces)").rowcount
            if count:
                self._bump_generation()
        return count

    def stats(self) -> dict[str, object]:
        meta = self.meta()
        people = self.db.execute("SELECT COUNT(*) FROM people").fetchone()[0]
        faces = self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        size = sum(p.stat().st_size for p in self.folder.glob(DB_NAME + "*"))
        return {
            "gallery": str(self.folder),
            "people": people,
            "faces": faces,
            "model_id": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "gallery_schema_version": int(meta["schema_version"]),
            "verify_threshold": self.threshold("verify"),
            "identify_threshold": self.threshold("identify"),
            "database_bytes": size,
        }
