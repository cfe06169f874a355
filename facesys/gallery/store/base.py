"""The truth store: what every gallery backend (SQLite, PostgreSQL) keeps and answers, and how.

A store holds people, their faces (source, image hash, box, landmarks, score, JPEG crop,
embedding) and a few named settings; it counts its changes in a ``generation`` and can say which
faces were added or removed since an earlier generation, so a derived vector index can follow it
without reading everything again. Face ids and person ids are never reused. Embeddings are (dim,)
float32 unit vectors compared by Euclidean distance. Every change is one transaction, and writes
one audit event (facesys/gallery/audit.py) in it. It also keeps the service's API keys, by hash.

:class:`TruthStore` holds every workflow and rule, in SQL written once; a backend subclasses it
with its connection, transactions, SQL dialect, schema and a few primitives (marked "backend"
there). ``tests/gallery/test_store_interface.py`` runs the same suite against every backend
listed in ``facesys.gallery.store.STORE_BACKENDS``.
"""

from __future__ import annotations

import contextlib
import json
import operator
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from facesys.errors import (
    MAX_ID,
    ChangedMeanwhileError,
    ConflictError,
    DuplicatePhotoError,
    GalleryError,
    GalleryVersionError,
    InvalidIdError,
    InvalidValueError,
    NameConflictError,
    UnknownFaceError,
    UnknownKeyError,
    UnknownPersonError,
)
from facesys.gallery.audit import AuditEvent, current_actor
from facesys.keys import MAX_KEY_NAME_LENGTH, SCOPES, ApiKey

MAX_NAME_LENGTH = 200
RESERVED_NAMES = ("unknown",)  # identify's answer for nobody: never a person's name
# Unicode categories refused in names: control, format (bidi overrides, zero-width joiners...),
# line and paragraph separators. They break one-name-per-line output or hide what a name says.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# meta key set with the first API key, in its transaction: from then on every request needs a key
# (revoking the last one never opens the service to anonymous callers)
KEYS_REQUIRED = "keys_required"


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as stored: ``box`` [x1, y1, x2, y2] and ``landmarks`` (5 x [x, y]) in
    source pixels; ``crop_origin`` (x0, y0, scale): crop pixel = (source pixel - (x0, y0)) * scale."""

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


@dataclass(frozen=True)
class ScannedPhoto:
    """A file of the photo library as a scan found it: resolved absolute ``path``, ``size`` in
    bytes, modification time ``mtime_ns`` (nanoseconds), sha256 of its bytes, and ``error``: why it
    could not be read (then it has no faces)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    error: str | None = None


@dataclass(frozen=True)
class LibraryPhoto:
    """A library file as stored: what :class:`ScannedPhoto` holds, its id, how many faces it holds,
    the model they were embedded with (None when it had none), when (seconds since the epoch) it
    was scanned, and ``erased``: where the faces erased with a removed person were, as [frame or
    None, x1, y1, x2, y2] (a scan reading the same bytes again leaves faces there out)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    faces: int
    error: str | None
    model_id: str | None
    scanned_at: float
    erased: list[list[float | None]] | None = None


@dataclass(frozen=True)
class NewLibraryFace:
    """A face found by a scan, not enrolled: box (4,), landmarks (5, 2) and detection score in
    source pixels, JPEG crop and its origin (x0, y0, scale), a (dim,) float32 unit embedding, the
    video ``frame`` it was seen in (None for a photo) and ``person``: the enrolled person it
    matched, to attach it to automatically (None: unnamed)."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    crop_jpeg: bytes
    crop_origin: tuple[float, float, float]
    embedding: np.ndarray
    frame: int | None = None
    person: str | None = None


@dataclass(frozen=True)
class LibraryFace:
    """A library face as stored (no pixels, no embedding): its photo (id, path, sha256) and video
    frame, geometry as :class:`FaceRecord`'s, ``cluster`` (None: not clustered, or named),
    ``person`` (None: unnamed), ``assigned`` ("auto" by a scan's match, "user" by naming, None) and
    ``enrolled_face_id``: its copy among the enrolled faces (what identify searches), if any."""

    id: int
    photo_id: int
    path: str
    image_sha256: str
    frame: int | None
    box: list[float]
    landmarks: list[list[float]]
    score: float
    crop_origin: list[float]
    model_id: str
    cluster: int | None
    person: str | None
    assigned: str | None
    enrolled_face_id: int | None


@dataclass(frozen=True)
class NamedFaces:
    """What naming library faces did: the person's stored ``name`` (an existing person's spelling
    when the name matched one), the library faces named, ``enrolled``: library face id -> the id of
    its new enrolled copy, and ``not_enrolled``: library faces named without a copy because their
    photo has an enrolled face already (one enrolled face per photo, as enroll keeps)."""

    name: str
    faces: list[int]
    enrolled: dict[int, int]
    not_enrolled: list[int]


LIBRARY_FACE_COLUMNS = (
    "lf.id, lf.photo_id, lp.path, lp.sha256, lf.frame, lf.box, lf.landmarks, lf.score, lf.crop_origin, lf.model_id, "
    "lf.cluster, p.name, lf.assigned, lf.enrolled_face_id"
)
LIBRARY_FACES_FROM = "library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id LEFT JOIN people p ON p.id = lf.person_id"


def library_face(row: tuple) -> LibraryFace:
    """A LibraryFace from a row of LIBRARY_FACE_COLUMNS (box, landmarks and crop origin as JSON text)."""
    face_id, photo_id, path, sha, frame, box, landmarks, score, origin, model_id, cluster, person, assigned, enrolled = row
    return LibraryFace(
        face_id, photo_id, path, sha, frame, json.loads(box), json.loads(landmarks), score, json.loads(origin), model_id,
        cluster, person, assigned, enrolled,
    )  # fmt: skip


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (not a bool), else None."""
    try:
        return operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        return None


def valid_id(value: object, what: str = "face", low: int = 1) -> int:
    """``value`` as an int id; InvalidIdError when it is not a whole number from ``low`` to MAX_ID
    (no row can have it: checked before it reaches SQL, where it would overflow)."""
    number = _whole_number(value)
    if number is None or not low <= number <= MAX_ID:
        raise InvalidIdError(f"{value!r}: no {what} has this id (ids are whole numbers from {low} to {MAX_ID})")
    return number


def valid_ids(values: Iterable[object], what: str = "face") -> list[int]:
    """Each of ``values`` through :func:`valid_id` (ids >= 1)."""
    return [valid_id(value, what) for value in values]


def possible_ids(values: Iterable[object], what: str = "face") -> list[int]:
    """The whole numbers among ``values`` that a row could have (1 to MAX_ID); the others are left
    out like any id no row has. InvalidIdError for a value that is not a whole number."""
    numbers = [_whole_number(value) for value in values]
    for value, number in zip(values, numbers, strict=True):
        if number is None:
            raise InvalidIdError(f"{value!r}: no {what} has this id (ids are whole numbers from 1 to {MAX_ID})")
    return [number for number in numbers if 1 <= number <= MAX_ID]


def missing_library_faces(wanted: Iterable[int], found: Iterable[int], location: str) -> None:
    """UnknownFaceError naming the ids of ``wanted`` that are not in ``found``, if any."""
    missing = sorted(set(wanted) - set(found))
    if missing:
        shown = ", ".join(f"#{i}" for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise UnknownFaceError(f"no library face {shown} in {location}")


@dataclass(frozen=True)
class Changes:
    """Faces added and removed between two generations: (N,) int64 face ids each."""

    added: np.ndarray
    removed: np.ndarray


@dataclass(frozen=True)
class Carried:
    """What a store rebuilt from a damaged one keeps besides its faces: API keys as (key, sha256
    hash), and audit events, oldest first, each naming its person as that store knew them."""

    keys: list[tuple[ApiKey, str]]
    events: list[AuditEvent]


@dataclass(frozen=True)
class SeenFace:
    """A library face as a caller saw it before changing it: its ``person`` (None: unnamed) and
    how it was ``assigned`` ("auto", "user"; None: either). A change given these is made only
    while the face is still so (compare-and-set), else ChangedMeanwhileError."""

    person: str | None
    assigned: str | None = None


def seen_faces(faces: Iterable[LibraryFace]) -> dict[int, SeenFace]:
    """Library face id -> SeenFace of ``faces`` as read (:meth:`TruthStore.library_faces`)."""
    return {face.id: SeenFace(face.person, face.assigned if face.person is not None else None) for face in faces}


def _same_face(seen: SeenFace, now: LibraryFace) -> bool:
    """Whether library face ``now`` is still as ``seen`` (names compared ignoring case and form)."""
    if (seen.person is None) != (now.person is None):
        return False
    if seen.person is None:
        return True
    return name_key(seen.person) == name_key(now.person) and seen.assigned in (None, now.assigned)


def _changed_meanwhile(face_id: int, seen: SeenFace, now: LibraryFace | None) -> ChangedMeanwhileError:
    """The error for library face ``face_id`` seen as ``seen`` and found as ``now`` (None: gone)."""
    was = f"named {seen.person!r}" if seen.person is not None else "unnamed"
    if now is None:
        what, owner = "was removed", None
    elif now.person is None:
        what, owner = "was unnamed", None
    else:
        how = " automatically" if now.assigned == "auto" else ""
        what, owner = f"was named {now.person!r}{how}", now.person
    return ChangedMeanwhileError(
        f"library face #{face_id} {what} meanwhile by another change (this one saw it {was}); nothing was changed", owner
    )


def normalize_name(name: object) -> str:
    """A person's name as stored: NFC, trimmed, inner whitespace collapsed to one space.

    GalleryError when it cannot name a person: empty, longer than MAX_NAME_LENGTH, holding
    control/format characters or line separators, or a reserved word ("unknown").
    """
    if not isinstance(name, str):
        raise InvalidValueError(f"a person's name must be text, not {type(name).__name__}")
    normal = " ".join(unicodedata.normalize("NFC", name).split())
    if not normal:
        raise InvalidValueError("a person's name must not be empty or only whitespace")
    if len(normal) > MAX_NAME_LENGTH:
        raise InvalidValueError(f"name is {len(normal)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    _refuse_invisible("name", name)
    if normal.casefold() in RESERVED_NAMES:
        raise InvalidValueError(f"{normal!r} is reserved (identify's answer for nobody); choose another name")
    return normal


def _refuse_invisible(what: str, text: str) -> None:
    """GalleryError naming the control, format or separator characters in ``text``, if any."""
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if bad:
        raise InvalidValueError(f"{what} {text!r} contains control or invisible characters ({', '.join(bad)})")
    if "\ufffd" in text:  # what a decoder leaves for bytes that were not UTF-8: never stored as a name
        raise InvalidValueError(f"{what} {text!r} contains U+FFFD (text that was not valid UTF-8); send it as UTF-8")


def key_name(name: object) -> str:
    """An API key's name as stored: trimmed. GalleryError when it is not text, empty, longer than
    MAX_KEY_NAME_LENGTH or holds control or invisible characters."""
    if not isinstance(name, str):
        raise InvalidValueError(f"a key's name must be text, not {type(name).__name__}")
    trimmed = name.strip()
    if not trimmed:
        raise InvalidValueError("a key's name must not be empty")
    if len(trimmed) > MAX_KEY_NAME_LENGTH:
        raise InvalidValueError(f"key name is {len(trimmed)} characters long; at most {MAX_KEY_NAME_LENGTH} are allowed")
    _refuse_invisible("key name", trimmed)
    return trimmed


def check_new_key(name: object, scope: object, key_hash: object) -> str:
    """The name a new key is stored under (:func:`key_name`); GalleryError for an unknown scope,
    or a hash that is not 64 lowercase hex digits (so a clear key is never stored by mistake)."""
    if scope not in SCOPES:
        raise InvalidValueError(f"key scope {scope!r}: choose from {', '.join(SCOPES)}")
    if not isinstance(key_hash, str) or not _SHA256_HEX.fullmatch(key_hash):
        raise InvalidValueError("a key is stored by its sha256 hash (facesys.keys.hash_key), 64 lowercase hex digits")
    return key_name(name)


def check_key_spelling(name: str, taken: list[str], where: object) -> None:
    """ConflictError when a key name in ``taken`` (active or revoked) differs from ``name`` only in
    case: key names are unique ignoring case, so the audit log's "key NAME" means one key name."""
    for other in taken:
        if other != name and other.casefold() == name.casefold():
            raise ConflictError(
                f"a key named {other!r} exists already in {where}; key names are unique ignoring case (use {other!r} or another)"
            )


def name_key(name: str) -> str:
    """The form two names are compared in: "Ann" and "ann " are the same person."""
    return unicodedata.normalize("NFC", " ".join(name.split())).casefold()


# -- row encoding shared by the backends -----------------------------------------------------------


def geometry_json(face: NewFace) -> tuple[str, str, str]:
    """(box, landmarks, crop origin) of a new face as stored: JSON text, pixels rounded to 0.01."""
    return (
        json.dumps([round(float(v), 2) for v in face.box]),
        json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]),
        json.dumps([float(v) for v in face.crop_origin]),
    )


def embedding_bytes(vector: np.ndarray) -> bytes:
    """A (dim,) embedding as stored: little-endian float32, 4 * dim bytes."""
    return np.asarray(vector, "<f4").tobytes()


def face_record(row: tuple) -> FaceRecord:
    """A FaceRecord from (id, person, source, image_sha256, box, landmarks, score, crop_origin,
    model_id, created_at) as stored (box, landmarks and crop origin as JSON text)."""
    face_id, person, source, sha, box, landmarks, score, origin, model_id, created = row
    box, landmarks, origin = json.loads(box), json.loads(landmarks), json.loads(origin)
    return FaceRecord(face_id, person, source, sha, box, landmarks, score, origin, model_id, created)


def detail_json(detail: dict) -> str:
    """An audit event's detail as stored: JSON text (see facesys/gallery/audit.py for what it may hold)."""
    return json.dumps(detail, ensure_ascii=False, default=str)


def faces_by_person(faces: list[tuple[int, int]]) -> dict[int, list[int]]:
    """(face id, person id) pairs grouped as person id -> face ids, in the order given (one audit
    event per person)."""
    grouped: dict[int, list[int]] = {}
    for face_id, person_id in faces:
        grouped.setdefault(person_id, []).append(face_id)
    return grouped


def fold_changes(rows: Iterable[tuple[int, object]]) -> Changes:
    """The net Changes of change-log rows (face id, added) in the order they were written: a face
    added and removed in between is simply gone (ids are never reused)."""
    first: dict[int, bool] = {}
    last: dict[int, bool] = {}
    for face_id, added in rows:
        first.setdefault(face_id, bool(added))
        last[face_id] = bool(added)
    added_ids = np.array(sorted(i for i, a in last.items() if a), np.int64)
    removed_ids = np.array(sorted(i for i, a in last.items() if not a and not first[i]), np.int64)
    return Changes(added_ids, removed_ids)


def face_problems(face_id: int, blob: bytes, face_model: str, crop_head: bytes, dim: int, model_id: str | None) -> list[str]:
    """What is wrong with one stored face (for ``check``): an embedding of the wrong size (then
    nothing else is looked at), not finite or not unit length, another model, a crop (its first
    two bytes) that is not a JPEG."""
    if len(blob) != 4 * dim:
        return [f"face {face_id}: embedding has {len(blob) // 4} values, the gallery's dimension is {dim}"]
    problems = []
    vector = np.frombuffer(blob, "<f4")
    if not np.isfinite(vector).all():
        problems.append(f"face {face_id}: embedding is not finite")
    elif abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
        problems.append(f"face {face_id}: embedding is not unit length ({np.linalg.norm(vector):.4f})")
    if face_model != model_id:
        problems.append(f"face {face_id}: made by {face_model}, the gallery's model is {model_id}")
    if crop_head != b"\xff\xd8":
        problems.append(f"face {face_id}: stored crop is not a JPEG")
    return problems


def library_face_problems(
    face_id: int, blob: bytes, face_model: str, crop_head: bytes, dim: int, model_id: str | None
) -> list[str]:
    """What is wrong with one stored library face (for ``check``), as :func:`face_problems` says it."""
    problems = face_problems(face_id, blob, face_model, crop_head, dim, model_id)
    hint = " (scan the library again)"
    return [f"library {p}{hint if 'made by' in p else ''}" for p in problems]


def choose_copies(rows: list[tuple], taken: set[str]) -> list[int]:
    """Which library faces to copy into ``faces`` when naming them: of ``rows`` (id, person id,
    enrolled face id, photo sha256, detection score, ...), the best-scored face of each photo whose
    sha256 is not ``taken`` by an enrolled face (image_sha256 is unique there); ids ascending."""
    chosen: dict[str, int] = {}
    for row in sorted(rows, key=lambda row: (-row[4], row[0])):
        if row[3] not in taken:
            chosen.setdefault(row[3], row[0])
    return sorted(chosen.values())


SAME_FACE_DISTANCE = 0.4  # an enrolled face and a library face of the same photo closer than this are one face


def same_faces(enrolled: list[tuple[str, bytes]], library: list[tuple[int, str, bytes]]) -> set[int]:
    """Which library faces are an enrolled face again: of ``library`` (id, photo sha256, embedding
    bytes), for each of ``enrolled`` (image sha256, embedding bytes), the nearest face of the same
    photo when it lies within SAME_FACE_DISTANCE (the same detection, embedded by the same model)."""
    found: set[int] = set()
    for sha, blob in enrolled:
        vector = np.frombuffer(blob, "<f4")
        best = None
        for face_id, photo_sha, other in library:
            if photo_sha != sha or len(other) != len(blob):
                continue
            distance = float(np.linalg.norm(np.frombuffer(other, "<f4") - vector))
            if distance < SAME_FACE_DISTANCE and (best is None or distance < best[0]):
                best = (distance, face_id)
        if best is not None:
            found.add(best[1])
    return found


def erased_boxes(old: str | None, faces: list[tuple[int | None, str]]) -> str:
    """The ``erased`` column of a photo (JSON) once ``faces`` (frame, box as JSON text) are erased
    from it too; only positions, no pixels nor embeddings."""
    boxes = json.loads(old) if old else []
    return json.dumps(boxes + [[frame, *json.loads(box)] for frame, box in faces])


def salvaged_face(row: tuple, dim: int, model_id: str | None) -> tuple[FaceRecord, np.ndarray, bytes] | None:
    """A face row read for salvage as (record, (dim,) float32 embedding, crop), or None when a field
    does not parse: ``row`` is (id, person name or None when unreadable, source, image_sha256, box,
    landmarks, score, crop_origin, model_id, created_at, embedding bytes, crop bytes)."""
    face_id, person, source, sha, box, landmarks, score, origin, face_model, created, blob, crop = row
    if person is None or face_model != model_id or not isinstance(source, str) or not isinstance(sha, str):
        return None
    if not isinstance(blob, bytes) or len(blob) != 4 * dim or not isinstance(crop, bytes) or not crop.startswith(b"\xff\xd8"):
        return None
    vector = np.frombuffer(blob, "<f4").astype(np.float32)
    if not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
        return None
    try:
        box, landmarks, origin = json.loads(box), json.loads(landmarks), json.loads(origin)
        if not (isinstance(box, list) and isinstance(landmarks, list) and isinstance(origin, list)):
            return None
        score = float(score)
        created = float(created) if created is not None else 0.0
    except (ValueError, TypeError, RecursionError):
        return None
    return FaceRecord(face_id, person, source, sha, box, landmarks, score, origin, face_model, created), vector, crop


ERASE_PENDING = "erase_pending"  # meta key: a removal committed, its freed space not yet erased
STREAM_BYTES = 16 * 2**20  # about this many bytes per chunk when reading every embedding
MAX_SALVAGE_ID = 2**31  # a row id above this read from a damaged page is taken for garbage
_FACES = "faces f JOIN people p ON p.id = f.person_id"
_FACE_COLUMNS = "f.id, p.name, f.source, f.image_sha256, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, f.created_at"
_KEY_COLUMNS = "name, scope, created_at, revoked_at"


class TruthStore(ABC):
    """A gallery's source of truth. Use as a context manager or call :meth:`close`.

    Names given to methods are normalised with :func:`normalize_name`; a new name equal to an
    existing one ignoring case is refused. Errors are GalleryErrors naming the store.

    Every rule (the generation, the change log, the audit event, erasure, library faces detached
    when their person goes) is written here once, in SQL valid for every backend: ``?``
    placeholders, ``= ANY(?)`` with a list parameter, values both backends store alike. A backend
    provides the abstract methods: connection, transactions (writers queue, so no row locks are
    needed), the translation of that SQL, how ids are made, erasure, check and size.
    """

    location: str  # for messages: a folder, or a database URL without its password
    _changed = False  # whether the open write transaction wrote an audit event

    def __enter__(self) -> TruthStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- backend: connection, transactions, queries ------------------------------------------------

    @classmethod
    @abstractmethod
    def exists(cls, location: str) -> bool:
        """Whether a gallery of this backend exists at ``location`` (creates nothing)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager:
        """One write transaction: writers queue; committed on leaving, rolled back on an exception."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[None]:
        """One read snapshot: every query inside sees the same committed state."""

    @abstractmethod
    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Every row of ``sql`` (``?`` placeholders; ``= ANY(?)`` takes a list); bytes as bytes."""

    def _row(self, sql: str, params: Sequence = ()) -> tuple | None:
        """The first row of ``sql``, or None."""
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    def _execute(self, sql: str, params: Sequence = ()) -> int:
        """Run one statement; returns how many rows it changed."""

    @abstractmethod
    def _execute_many(self, sql: str, rows: list[Sequence]) -> None:
        """Run one statement for each of ``rows``."""

    @abstractmethod
    def _stream(self, sql: str, size: int = 500) -> Iterator[list[tuple]]:
        """The rows of ``sql``, ``size`` at a time, in one read snapshot (big tables)."""

    @abstractmethod
    def _insert(self, table: str, rows: list[dict[str, object]]) -> list[int]:
        """Insert ``rows`` (column -> value) into ``table``; returns their new ids, never used before."""

    @abstractmethod
    def _unused_id(self, table: str) -> int:
        """An id of ``table`` (people) that nobody has had nor will have."""

    @abstractmethod
    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable from the store's files, then clear ERASE_PENDING: every
        removal marks it in its transaction and calls this after commit; repair calls it again, and
        so does opening a SQLite gallery for writing when the mark is there (:meth:`_finish_erasure`:
        a removal killed before its erasure; PostgreSQL's autovacuum gets those rows too)."""

    def _erase_old_name(self) -> None:
        """After a rename: make the old name unrecoverable, where the update kept it (nothing by default)."""
        return None

    @abstractmethod
    def _database_bytes(self) -> int:
        """The size of the store's data, for :meth:`stats`."""

    # -- identity, settings and change tracking --------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Everything in meta: gallery_id, schema_version, model_id, model_name, weights_sha256, dim,
        metric, generation, and settings."""
        return dict(self._rows("SELECT key, value FROM meta"))

    def _set_meta(self, values: dict[str, object]) -> None:
        self._execute_many(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, str(value)) for key, value in values.items()],
        )

    def _refuse_newer(self, version: int, supported: int) -> None:
        """GalleryVersionError when the stored schema ``version`` is newer than this backend's ``supported``."""
        if version > supported:
            raise GalleryVersionError(
                f"{self.location}: gallery schema version {version} is newer than this facesys supports "
                f"({supported}); upgrade facesys"
            )

    def _finish_erasure(self) -> None:
        """On opening for writing: finish the erasure of a removal killed after its commit."""
        if ERASE_PENDING in self.meta():
            with contextlib.suppress(GalleryError):
                self.erase_freed_pages()

    @property
    def gallery_id(self) -> str:
        """A random id made when the store was created: derived files name it, so they are never
        taken for another store's."""
        return self.meta()["gallery_id"]

    @property
    def generation(self) -> int:
        """Bumped by every change (faces, people, names, model)."""
        return int(self.meta()["generation"])

    @property
    def model_id(self) -> str | None:
        return self.meta().get("model_id")

    @property
    def dim(self) -> int:
        return int(self.meta().get("dim", 0))

    def _bump_generation(self) -> int:
        """Inside a transaction: advance the store's generation; returns the new one."""
        bumped = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'generation' RETURNING value"
        return int(self._row(bumped)[0])

    def _log(self, generation: int, face_ids: list[int], added: bool) -> None:
        """Record in the change log that ``face_ids`` were added (or removed) at ``generation``."""
        rows = [(generation, int(face_id), added) for face_id in face_ids]
        self._execute_many("INSERT INTO changes(generation, face_id, added) VALUES (?, ?, ?)", rows)

    def _audit(self, action: str, person_id: int | None = None, detail: dict | None = None) -> None:
        """Write one audit event, now and by the current actor, inside the open transaction."""
        self._write_event(AuditEvent(time.time(), current_actor(), action, None, detail or {}, person_id))

    def _write_event(self, event: AuditEvent) -> None:
        self._execute(
            "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)",
            (event.at, event.actor, event.action, event.person_id, detail_json(event.detail)),
        )
        self._changed = True

    def _audit_faces(self, action: str, faces: list[tuple[int, int]]) -> None:
        """One ``action`` event per person of (face id, person id) ``faces``: detail {"face_ids": [...]}."""
        for person_id, face_ids in faces_by_person(faces).items():
            self._audit(action, person_id, {"face_ids": face_ids})

    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        """Bind an empty store to a model (the first enrollment does this)."""
        with self.transaction():
            self._set_meta(
                {"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim}
                | {"metric": "euclidean-unit"}
            )
            self._audit("set_model", detail={"model_id": model_id, "dim": dim})

    def setting(self, key: str) -> str | None:
        """A named setting (e.g. ``verify_threshold``, ``index_kind``), or None."""
        return self.meta().get(key)

    def set_setting(self, key: str, value: object | None) -> None:
        """Store a named setting (None removes it)."""
        with self.transaction():
            if value is None:
                self._execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._set_meta({key: value})
            self._audit("set_setting", detail={"key": key, "value": value})

    def changes_since(self, generation: int) -> Changes | None:
        """Faces added and removed after ``generation``, or None when the store cannot tell (its
        change log starts later, or every embedding was replaced since)."""
        with self.reading():
            meta = self.meta()
            if generation < int(meta.get("log_from", 0)) or generation > int(meta["generation"]):
                return None
            return fold_changes(
                self._rows("SELECT face_id, added FROM changes WHERE generation > ? ORDER BY generation", (generation,))
            )

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change committed to this gallery (by any process);
        True when one was seen, False when the time ran out.

        Used by a per-process follower that keeps the vector index current: it loops on this and
        refreshes the index after each return (cheap when nothing changed: the index header still
        matches the store). Backends that cannot be told of changes keep this default, sleep
        ``timeout`` seconds and return False, so the follower polls; one that can (PostgreSQL's
        LISTEN/NOTIFY) returns as soon as a change is committed."""
        time.sleep(timeout)
        return False

    # -- people and faces --------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """(name, number of faces) of everyone, by name (code-point order, as SQLite's BINARY and
        PostgreSQL's "C" collation sort)."""
        return sorted(
            (name, count)
            for name, count in self._rows(
                "SELECT p.name, COUNT(f.id) FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id, p.name"
            )
        )

    def person_named(self, name: str) -> str | None:
        """The stored name of the person called ``name`` (compared ignoring case and form), or None."""
        return row[1] if (row := self._person_row(normalize_name(name))) else None

    def person_of_image(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if it is."""
        row = self._row(f"SELECT p.name FROM {_FACES} WHERE f.image_sha256 = ?", (image_sha256,))
        return row[0] if row else None

    def _person_row(self, name: str) -> tuple[int, str] | None:
        """(id, stored name) of the person named ``name``, compared ignoring case. Galleries from
        before names were normalised may hold several spellings: the exact one comes first."""
        query = "SELECT id, name FROM people WHERE name_key = ? ORDER BY CASE WHEN name = ? THEN 0 ELSE 1 END LIMIT 1"
        return self._row(query, (name_key(name), name))

    def _person_id(self, name: str, create: bool) -> int | None:
        """The id of the person named ``name`` (compared ignoring case); created when ``create``.
        A different spelling of an existing name is refused, naming the existing one."""
        row = self._person_row(name)
        if row is None:
            person = {"name": name, "created_at": time.time(), "name_key": name_key(name)}
            return self._insert("people", [person])[0] if create else None
        person_id, existing = row
        if existing != name and create:
            raise NameConflictError(f"{name!r}: a person named {existing!r} exists already; use that exact name", existing)
        return person_id

    def _existing_person(self, name: str) -> int:
        """Inside a transaction: the id of the person named ``name``; UnknownPersonError when nobody is."""
        person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
        if person_id is None:
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        return person_id

    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        """Enroll one face of ``name`` (created if new) in one transaction; returns its face id.
        DuplicatePhotoError when the photo is already enrolled."""
        return self.add_faces([(name, face)], model_id)[0]

    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str = "enroll") -> list[int]:
        """Enroll several (name, face) in ONE transaction: all or nothing. Logs one ``action``
        event ("enroll", "import" or "repair") per person, detail {"face_ids": [...]}.
        DuplicatePhotoError for a photo enrolled already, or twice in ``faces``."""
        named = [(normalize_name(name), face) for name, face in faces]
        if not named:
            return []
        with self.transaction():
            if self.model_id != model_id:
                raise GalleryError(f"{self.location}: gallery model is {self.model_id}, not {model_id}")
            hashes = sorted({face.image_sha256 for _, face in named})
            owners = dict(self._rows(f"SELECT f.image_sha256, p.name FROM {_FACES} WHERE f.image_sha256 = ANY(?)", (hashes,)))
            for name, face in named:
                if (owner := owners.get(face.image_sha256)) is not None:
                    raise DuplicatePhotoError(f"{face.source}: this photo is already enrolled as {owner!r}", owner)
                owners[face.image_sha256] = name
            people = {name: self._person_id(name, create=True) for name in dict.fromkeys(name for name, _ in named)}
            now = time.time()
            rows = [
                {"person_id": people[name], "source": face.source, "image_sha256": face.image_sha256}
                | dict(zip(("box", "landmarks", "crop_origin"), geometry_json(face), strict=True))
                | {"score": float(face.score), "crop": face.crop_jpeg, "embedding": embedding_bytes(face.embedding)}
                | {"model_id": model_id, "created_at": now, "sharpness": face.sharpness}
                for name, face in named
            ]
            ids = self._insert("faces", rows)
            self._log(self._bump_generation(), ids, added=True)
            self._audit_faces(action, [(face_id, people[name]) for face_id, (name, _) in zip(ids, named, strict=True)])
            return ids

    def remove_person(self, name: str) -> int:
        """Delete a person and all their faces; returns how many enrolled faces went.
        UnknownPersonError when nobody has that name.

        Their library faces are erased too (crop, embedding, geometry; freed space erased as the
        enrolled faces'): those named or attached to them, and those that are one of their enrolled
        faces again (same photo sha256, embedding within SAME_FACE_DISTANCE). What is kept of them:
        a photo that still holds other faces keeps its row (path, size, time, sha256) and, in
        ``erased``, the frame and box of each erased face (positions only), so that reading the same
        bytes again leaves those faces out; a photo left without faces is deleted, its path too,
        and only its sha256 with the number of faces erased stays in ``library_erased``, so a scan
        does not read it again (enrolling the photo is still possible)."""
        with self.transaction():
            person_id = self._existing_person(name)
            library = self._erase_library_faces_of(person_id)
            ids = sorted(row[0] for row in self._rows("DELETE FROM faces WHERE person_id = ? RETURNING id", (person_id,)))
            self._execute("DELETE FROM people WHERE id = ?", (person_id,))
            self._log(self._bump_generation(), ids, added=False)
            self._audit("remove_person", person_id, {"faces": len(ids)} | ({"library_faces": library} if library else {}))
            self._set_meta({ERASE_PENDING: 1})
        self.erase_freed_pages()
        return len(ids)

    def _erase_library_faces_of(self, person_id: int) -> int:
        """Inside a transaction: delete the library faces of ``person_id`` and those that are one of
        their enrolled faces again, remembering them as :meth:`remove_person` says; returns how many."""
        enrolled = self._rows("SELECT image_sha256, embedding FROM faces WHERE person_id = ?", (person_id,))
        same = self._rows(
            "SELECT lf.id, lp.sha256, lf.embedding FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id "
            "WHERE lp.sha256 = ANY(?)",
            (sorted({sha for sha, _ in enrolled}),),
        )
        rows = self._rows(
            "DELETE FROM library_faces WHERE person_id = ? OR id = ANY(?) RETURNING id, photo_id, frame, box",
            (person_id, sorted(same_faces(enrolled, same))),
        )
        for photo_id in sorted({row[1] for row in rows}):
            erased = [(frame, box) for _, photo, frame, box in rows if photo == photo_id]
            sha, old, left = self._row(
                "SELECT sha256, erased, (SELECT COUNT(*) FROM library_faces WHERE photo_id = ?) FROM library_photos WHERE id = ?",
                (photo_id, photo_id),
            )
            if left:
                self._execute(
                    "UPDATE library_photos SET faces = ?, erased = ? WHERE id = ?", (left, erased_boxes(old, erased), photo_id)
                )
            else:
                self._execute("DELETE FROM library_photos WHERE id = ?", (photo_id,))
                self._execute(
                    "INSERT INTO library_erased(sha256, faces) VALUES (?, ?) ON CONFLICT (sha256) DO UPDATE SET faces = "
                    "CASE WHEN excluded.faces > library_erased.faces THEN excluded.faces ELSE library_erased.faces END",
                    (sha, len(erased)),
                )
        return len(rows)

    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        """Delete faces by id in one transaction (their people left with no face are deleted too);
        returns face id -> person name of those that existed (ids that do not are ignored: none, no change)."""
        wanted = sorted(set(possible_ids(face_ids)))
        with self.transaction():
            found = self._rows(f"SELECT f.id, f.person_id, p.name FROM {_FACES} WHERE f.id = ANY(?) ORDER BY f.id", (wanted,))
            if not found:
                return {}
            self._delete_faces([(face_id, person_id) for face_id, person_id, _ in found])
        self.erase_freed_pages()
        return {face_id: name for face_id, _, name in found}

    def _delete_faces(self, faces: list[tuple[int, int]]) -> list[int]:
        """Inside a transaction: delete (face id, person id) ``faces`` and those of their people left
        without a face (people not touched stay, even without faces: :meth:`remove_empty_people`
        repairs those), library faces of people gone detached; logged, audited per person and
        marked for erasure. Returns the face ids."""
        ids = sorted(face_id for face_id, _ in faces)
        self._execute("DELETE FROM faces WHERE id = ANY(?)", (ids,))
        self._execute(
            "DELETE FROM people WHERE id = ANY(?) AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)",
            (sorted({person_id for _, person_id in faces}),),
        )
        self._detach_orphans()
        self._log(self._bump_generation(), ids, added=False)
        self._audit_faces("remove_faces", sorted(faces))
        self._set_meta({ERASE_PENDING: 1})
        return ids

    def _detach_orphans(self) -> None:
        """Inside a transaction: library faces whose person went lose their assignment too."""
        self._execute(
            "UPDATE library_faces SET assigned = NULL, enrolled_face_id = NULL "
            "WHERE person_id IS NULL AND (assigned IS NOT NULL OR enrolled_face_id IS NOT NULL)"
        )

    def rename_person(self, old: str, new: str, seen: list[int] | None = None) -> None:
        """UnknownPersonError when nobody is named ``old``; NameConflictError when ``new`` is another's.
        ``seen``: ``old``'s face ids as the caller read them; ChangedMeanwhileError naming who has
        them now when ``old`` was renamed or removed meanwhile (:meth:`_seen_person`)."""
        new = normalize_name(new)
        with self.transaction():
            person_id = self._seen_person(old, seen)
            other = self._person_row(new)
            if other is not None and other[0] != person_id:
                raise NameConflictError(f"a person named {other[1]!r} already exists in {self.location}", other[1])
            self._execute("UPDATE people SET name = ?, name_key = ? WHERE id = ?", (new, name_key(new), person_id))
            self._bump_generation()
            self._audit("rename", person_id)  # no names: the log shows the person's current one
        self._erase_old_name()

    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Face records (no pixels, no embeddings), of one person or everyone, oldest first."""
        query = f"SELECT {_FACE_COLUMNS} FROM {_FACES}"
        with self.reading():
            if name is None:
                rows = self._rows(query + " ORDER BY f.id")
            else:
                person_id = self._person_id(normalize_name(name), create=False) if name.strip() else None
                if person_id is None:
                    return []
                rows = self._rows(query + " WHERE p.id = ? ORDER BY f.id", (person_id,))
        return [face_record(row) for row in rows]

    def face_count(self) -> int:
        return int(self._row("SELECT COUNT(*) FROM faces")[0])

    def face_ids(self) -> np.ndarray:
        """(N,) int64 ids of every face, ascending."""
        return np.array([row[0] for row in self._rows("SELECT id FROM faces ORDER BY id")], np.int64)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(face ids (N,) int64 ascending, embeddings (N, dim) float32, person name of each face):
        rows streamed in chunks of about STREAM_BYTES, copied into arrays allocated once; names
        looked up by person id."""
        with self.reading():
            dim, count = self.dim, self.face_count()
            names = dict(self._rows("SELECT id, name FROM people"))
            ids, people = np.empty(count, np.int64), np.empty(count, np.int64)
            vectors = np.empty((count, dim), np.float32)
            done = 0
            for rows in self._stream("SELECT id, person_id, embedding FROM faces ORDER BY id", STREAM_BYTES // (4 * dim + 64)):
                n = len(rows)
                ids[done : done + n] = [row[0] for row in rows]
                people[done : done + n] = [row[1] for row in rows]
                vectors[done : done + n] = np.frombuffer(b"".join(row[2] for row in rows), "<f4").reshape(n, dim)
                done += n
        return ids[:done], vectors[:done], [names[person_id] for person_id in people[:done].tolist()]

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """(len(face_ids), dim) float32 embeddings of these faces, in the order given."""
        found = dict(self._rows("SELECT id, embedding FROM faces WHERE id = ANY(?)", (_ids(face_ids),)))
        out = np.zeros((len(face_ids), self.dim), np.float32)
        for row, face_id in enumerate(np.ravel(face_ids).tolist()):
            if face_id in found:
                out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        """Face id -> person name for those of ``face_ids`` that exist (-1 is ignored)."""
        return dict(self._rows(f"SELECT f.id, p.name FROM {_FACES} WHERE f.id = ANY(?)", (_ids(face_ids),)))

    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        """(face id, JPEG crop, crop origin, landmarks in source pixels) of every face."""
        for rows in self._stream("SELECT id, crop, crop_origin, landmarks FROM faces ORDER BY id"):
            for face_id, jpeg, origin, landmarks in rows:
                yield face_id, jpeg, json.loads(origin), json.loads(landmarks)

    def crop(self, face_id: int) -> bytes | None:
        """The stored JPEG crop of one face, or None when there is no such face."""
        row = self._row("SELECT crop FROM faces WHERE id = ?", (valid_id(face_id),))
        return row[0] if row else None

    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        """Switch every face to another model in one transaction; calibrated thresholds are dropped."""
        with self.transaction():
            self._execute_many(
                "UPDATE faces SET embedding = ?, model_id = ? WHERE id = ?",
                [(embedding_bytes(vector), model_id, int(face_id)) for face_id, vector in vectors.items()],
            )
            self._set_meta({"model_id": model_id, "model_name": model_name, "weights_sha256": weights_sha256, "dim": dim})
            self._execute("DELETE FROM meta WHERE key IN ('verify_threshold', 'identify_threshold')")
            self._set_meta({"log_from": self._bump_generation()})  # every vector changed: no index can follow
            self._audit("replace_embeddings", detail={"model_id": model_id, "faces": len(vectors)})

    # -- the photo library: faces found by scans, unnamed until named -----------------------------
    # Library faces live in their own tables, never in ``faces``: identify cannot see them. Naming
    # one copies it into ``faces`` (logged in the change log, so the index follows); a scan's
    # automatic match only links it to the person, without a copy. Library face ids are never
    # reused. Changes that touch only the library do not bump the generation.

    def record_photo(self, photo: ScannedPhoto, faces: list[NewLibraryFace] | None, model_id: str | None) -> list[int]:
        """Record one scanned file with all its faces in ONE transaction (all or nothing),
        replacing an earlier record of the same path and its faces (their enrolled copies stay);
        returns the new library face ids. A face's ``person`` attaches it automatically to that
        enrolled person (ignored when nobody has that name now). ``faces=None``: the file's content
        is unchanged, only its size, modification time and scan time are updated. Freed space is
        erased by the next :meth:`erase_freed_pages`. GalleryError when faces are given and
        ``model_id`` is not the store's model."""
        with self.transaction():
            row = self._row("SELECT id FROM library_photos WHERE path = ?", (photo.path,))
            now = time.time()
            if faces is None:
                if row is None:
                    raise GalleryError(f"{photo.path}: not in the library of {self.location}; nothing to update")
                self._execute(
                    "UPDATE library_photos SET size = ?, mtime_ns = ?, scanned_at = ? WHERE id = ?",
                    (photo.size, photo.mtime_ns, now, row[0]),
                )
                return []
            if faces and self.model_id != model_id:
                raise GalleryError(f"{self.location}: gallery model is {self.model_id}, not {model_id}")
            values = (photo.size, photo.mtime_ns, photo.sha256, len(faces), photo.error, model_id, now)
            copies: list[int] = []  # enrolled copies of the faces replaced now
            if row is None:
                columns = ("size", "mtime_ns", "sha256", "faces", "error", "model_id", "scanned_at", "path")
                photo_id = self._insert("library_photos", [dict(zip(columns, (*values, photo.path), strict=True))])[0]
            else:
                photo_id = row[0]
                deleted = self._rows("DELETE FROM library_faces WHERE photo_id = ? RETURNING enrolled_face_id", (photo_id,))
                copies = [copy for (copy,) in deleted if copy is not None]
                if deleted:
                    self._set_meta({ERASE_PENDING: 1})
                self._execute(  # faces erased with a removed person stay remembered while the bytes are the same
                    "UPDATE library_photos SET erased = CASE WHEN sha256 = ? THEN erased END, size = ?, mtime_ns = ?, "
                    "sha256 = ?, faces = ?, error = ?, model_id = ?, scanned_at = ? WHERE id = ?",
                    (photo.sha256, *values, photo_id),
                )
            people: dict[str, int | None] = {}
            for name in dict.fromkeys(face.person for face in faces if face.person is not None):
                found = self._person_row(name)
                people[name] = found[0] if found else None
            persons = [people.get(face.person) if face.person is not None else None for face in faces]
            rows = [
                {"photo_id": photo_id, "frame": face.frame, "score": float(face.score), "crop": face.crop_jpeg}
                | dict(zip(("box", "landmarks", "crop_origin"), geometry_json(face), strict=True))
                | {"embedding": embedding_bytes(face.embedding), "model_id": model_id, "person_id": person_id}
                | {"assigned": None if person_id is None else "auto"}
                for face, person_id in zip(faces, persons, strict=True)
            ]
            ids = self._insert("library_faces", rows)
            self._relink_copies(photo.sha256, copies, ids, faces)
            attached = [(face_id, person_id) for face_id, person_id in zip(ids, persons, strict=True) if person_id is not None]
            for person_id, face_ids in faces_by_person(attached).items():
                self._audit("auto_attach", person_id, {"library_faces": face_ids})
            return ids

    def library_photos(self) -> list[LibraryPhoto]:
        """Every recorded library file, by path (code-point order)."""
        rows = self._rows(
            "SELECT id, path, size, mtime_ns, sha256, faces, error, model_id, scanned_at, erased FROM library_photos"
        )
        return [LibraryPhoto(*row[:-1], json.loads(row[-1]) if row[-1] else None) for row in sorted(rows, key=lambda r: r[1])]

    def move_photo(self, old_path: str, photo: ScannedPhoto) -> bool:
        """Record that the library file ``old_path`` now lies at ``photo.path`` with the same bytes
        (``photo.sha256``), in one transaction: it keeps its id, faces, names, clusters and links
        to enrolled copies (whose source follows the file). False, nothing changed, when
        ``old_path`` is not recorded with that sha256 or ``photo.path`` is recorded already."""
        with self.transaction():
            row = self._row(
                "SELECT id FROM library_photos WHERE path = ? AND sha256 = ? AND NOT EXISTS "
                "(SELECT 1 FROM library_photos WHERE path = ?)",
                (old_path, photo.sha256, photo.path),
            )
            if row is None:
                return False
            self._execute(
                "UPDATE library_photos SET path = ?, size = ?, mtime_ns = ?, scanned_at = ? WHERE id = ?",
                (photo.path, photo.size, photo.mtime_ns, time.time(), row[0]),
            )
            self._execute(  # the enrolled copies of its named faces name the file where it is now
                "UPDATE faces SET source = ? WHERE id IN (SELECT enrolled_face_id FROM library_faces WHERE photo_id = ?)",
                (photo.path, row[0]),
            )
            self._audit("move_photos", detail={"photos": 1})
        return True

    def erased_photos(self) -> set[str]:
        """The sha256 of the files no longer recorded because every face of theirs was erased with
        a removed person: a scan leaves them out (see :meth:`remove_person`)."""
        return {sha for (sha,) in self._rows("SELECT sha256 FROM library_erased")}

    def forget_photos(self, paths: list[str]) -> int:
        """Forget these recorded files (unknown paths are ignored) with their library faces, in one
        transaction, and erase the freed space; returns how many faces went. Enrolled copies of
        named faces stay enrolled."""
        wanted = sorted(set(paths))
        with self.transaction():
            photos, faces = self._row(
                "SELECT COUNT(*), (SELECT COUNT(*) FROM library_faces WHERE photo_id IN "
                "(SELECT id FROM library_photos WHERE path = ANY(?))) FROM library_photos WHERE path = ANY(?)",
                (wanted, wanted),
            )
            if not photos:
                return 0
            self._execute("DELETE FROM library_photos WHERE path = ANY(?)", (wanted,))
            self._audit("forget_photos", detail={"photos": photos, "library_faces": faces})
            self._set_meta({ERASE_PENDING: 1})
        self.erase_freed_pages()
        return faces

    def library_faces(
        self, ids: list[int] | None = None, person: str | None = None, cluster: int | None = None, unnamed: bool = False
    ) -> list[LibraryFace]:
        """Library faces by id ascending: those of ``ids`` that exist, of ``person`` (any spelling
        of the name; [] for nobody), of ``cluster``, unnamed only; filters combine."""
        where, params = [], []
        with self.reading():
            if ids is not None:
                where.append("lf.id = ANY(?)")
                params.append(_ids(valid_ids(ids, "library face")))
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
            rows = self._rows(f"SELECT {LIBRARY_FACE_COLUMNS} FROM {LIBRARY_FACES_FROM}{clause} ORDER BY lf.id", params)
        return [library_face(row) for row in rows]

    def library_vectors(self, ids: list[int]) -> np.ndarray:
        """(len(ids), dim) float32 unit embeddings of these library faces, in the order given.
        UnknownFaceError naming the ids that do not exist; GalleryError for one of another dimension."""
        wanted = valid_ids(ids, "library face")
        with self.reading():
            dim = self.dim
            found = dict(self._rows("SELECT id, embedding FROM library_faces WHERE id = ANY(?)", (_ids(wanted),)))
        missing_library_faces(wanted, found, self.location)
        out = np.zeros((len(wanted), dim), np.float32)
        for row, face_id in enumerate(wanted):
            if len(found[face_id]) != 4 * dim:
                raise GalleryError(f"{self.location}: library face #{face_id} has {len(found[face_id]) // 4} values, not {dim}")
            out[row] = np.frombuffer(found[face_id], "<f4")
        return out

    def library_crops(self, ids: list[int]) -> dict[int, bytes]:
        """Library face id -> its JPEG crop, for those of ``ids`` that exist."""
        wanted = _ids(valid_ids(ids, "library face"))
        return dict(self._rows("SELECT id, crop FROM library_faces WHERE id = ANY(?)", (wanted,)))

    def set_clusters(self, ids: list[int], clusters: list[int]) -> None:
        """Set the cluster of each library face (ids that do not exist, or are named meanwhile, are
        left alone) in one transaction; meta ``last_cluster_id`` keeps the highest cluster id ever
        set, so new clusters can be given ids never used before."""
        pairs = [(int(c), int(i)) for i, c in zip(ids, clusters, strict=True)]
        with self.transaction():
            self._execute_many("UPDATE library_faces SET cluster = ? WHERE id = ? AND person_id IS NULL", pairs)
            last = max([int(self.meta().get("last_cluster_id", -1))] + [c for c, _ in pairs])
            self._set_meta({"last_cluster_id": last})
            self._audit("cluster", detail={"library_faces": len(pairs), "clusters": len({c for c, _ in pairs})})

    def name_library_faces(
        self, ids: list[int], name: str, seen: Mapping[int, SeenFace] | None = None, cluster: int | None = None
    ) -> NamedFaces:
        """Name library faces ``name`` in ONE transaction: the person is created, or the existing
        person of that name (compared ignoring case, :func:`name_key`) is used; each face is copied
        into ``faces`` (crop, embedding, geometry, path, sha256; logged in the change log) unless its
        photo has an enrolled face already, linked to its copy, and marked assigned "user". A face
        named another person before loses that copy. UnknownFaceError for ids that do not exist;
        GalleryError for a face of another model or when the person would have no enrolled face.
        ``seen``: the faces as the caller read them (:func:`seen_faces`); ChangedMeanwhileError,
        nothing changed, when one is no longer so (unless it is ``name``'s already). ``cluster``:
        the cluster these faces are, noted in the audit event (:meth:`cluster_naming`)."""
        name, ids = normalize_name(name), valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: face.assigned == "user" and name_key(face.person or "") == name_key(name))
            rows = self._library_rows(ids)
            model_id = self.model_id
            for face_id, _, _, _, _, face_model in rows:
                if face_model != model_id:
                    raise ConflictError(
                        f"library face #{face_id} was made by {face_model}; the gallery's model is {model_id} "
                        "(scan the library again)"
                    )
            existing = self._person_row(name)
            # faces named this person already, with their copy, stay as they are; the others are (re)named
            todo = [row for row in rows if not (existing and row[1] == existing[0] and row[2] is not None)]
            dropped = self._drop_copies(todo)  # copies made when they were named someone else
            name = existing[1] if existing else name
            chosen = choose_copies(todo, self._enrolled_photos(sorted({row[3] for row in todo})))
            if existing is None and not chosen:
                raise ConflictError(
                    f"{name!r} would have no enrolled face: the photos of these library faces are enrolled already "
                    "(one enrolled face per photo); name a face from another photo first"
                )
            person_id = self._person_id(name, create=True)
            enrolled = {face_id: self._copy_library_face(face_id, person_id) for face_id in chosen}
            self._assign_library_faces(person_id, [(row[0], enrolled.get(row[0])) for row in todo])
            if enrolled:
                self._log(self._bump_generation(), list(enrolled.values()), added=True)
            detail = {"library_faces": [row[0] for row in rows], "face_ids": list(enrolled.values())}
            self._audit("name_faces", person_id, detail | ({"cluster": int(cluster)} if cluster is not None else {}))
        if dropped:
            self.erase_freed_pages()
        return NamedFaces(name, [row[0] for row in rows], enrolled, [row[0] for row in todo if row[0] not in enrolled])

    def unname_library_faces(self, ids: list[int], seen: Mapping[int, SeenFace] | None = None) -> list[int]:
        """Take these library faces back from their person (automatic or not), removing their
        enrolled copies (a person left without faces goes too), in one transaction; returns those
        that were named. UnknownFaceError for ids that do not exist. ``seen``: as for
        :meth:`name_library_faces` (a face unnamed already is no conflict)."""
        ids = valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: face.person is None)
            named = [row for row in self._library_rows(ids) if row[1] is not None]
            dropped = self._drop_copies(named)
            self._clear_library_faces([row[0] for row in named])
            for person_id, face_ids in faces_by_person([(row[0], row[1]) for row in named]).items():
                self._audit("unname_faces", person_id, {"library_faces": face_ids})
        if dropped:
            self.erase_freed_pages()
        return [row[0] for row in named]

    def remove_library_faces(self, ids: list[int], seen: Mapping[int, SeenFace] | None = None) -> int:
        """Delete these library faces and their enrolled copies (crops and vectors gone, freed space
        erased), in one transaction; returns how many. The file stays recorded, so a re-scan does
        not find the face again until the file changes. UnknownFaceError for ids that do not exist.
        ``seen``: as for :meth:`name_library_faces`."""
        ids = valid_ids(ids, "library face")
        with self.transaction():
            self._check_seen(seen, lambda face: False)
            rows = self._library_rows(ids)
            self._drop_copies(rows)
            self._delete_library_faces([row[0] for row in rows])
            self._audit("remove_library_faces", detail={"library_faces": [row[0] for row in rows]})
        self.erase_freed_pages()
        return len(rows)

    def _check_seen(self, seen: Mapping[int, SeenFace] | None, done) -> None:
        """Inside a write transaction (writers queue, so nothing changes these faces until it ends):
        ChangedMeanwhileError naming who has it now for the first face of ``seen`` that is no
        longer as seen, unless ``done(face)``: it is already what the change makes it."""
        if not seen:
            return
        now = {face.id: face for face in self.library_faces(list(seen))}
        for face_id, was in sorted(seen.items()):
            face = now.get(face_id)
            if face is not None and (done(face) or _same_face(was, face)):
                continue
            raise _changed_meanwhile(face_id, was, face)

    def cluster_naming(self, cluster: int) -> AuditEvent | None:
        """The audit event of the naming of ``cluster`` (by :meth:`name_library_faces` with that
        cluster), newest first, or None; cluster ids are never reused, so it says who took it."""
        return next((e for e in self.audit_log(None) if e.action == "name_faces" and e.detail.get("cluster") == cluster), None)

    def _seen_person(self, name: str, seen: Collection[int] | None) -> int:
        """Inside a write transaction: the id of the person ``name``; UnknownPersonError when nobody
        is. ``seen``: the person's face ids as the caller read them; ChangedMeanwhileError naming
        who has them now when the person was renamed or removed meanwhile (compare-and-set)."""
        row = self._person_row(normalize_name(name)) if isinstance(name, str) and name.strip() else None
        if seen:
            owners = set(self.names_of(np.asarray(sorted(seen), np.int64)).values())
            if row is None or owners != {row[1]}:
                owner = min(owners - {row[1] if row else None}, default=None)
                gone = "was removed" if row is None else "changed (the faces read are gone)"
                what = f"was renamed {owner!r}" if owner else gone
                raise ChangedMeanwhileError(f"{name!r} {what} meanwhile by another change; nothing was changed", owner)
        if row is None:
            raise UnknownPersonError(f"no person named {name!r} in {self.location}")
        return row[0]

    # What naming library faces needs; each runs inside :meth:`transaction`.

    def _library_rows(self, ids: list[int]) -> list[tuple]:
        """(id, person id, enrolled face id, photo sha256, score, model id) of the library faces
        ``ids``; UnknownFaceError naming those that do not exist."""
        rows = self._rows(
            "SELECT lf.id, lf.person_id, lf.enrolled_face_id, lp.sha256, lf.score, lf.model_id FROM library_faces lf "
            "JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id = ANY(?) ORDER BY lf.id",
            (_ids(ids),),
        )
        missing_library_faces([int(i) for i in ids], [row[0] for row in rows], self.location)
        return rows

    def _drop_copies(self, rows: list[tuple]) -> list[int]:
        """Delete the enrolled copies of library face ``rows`` (from :meth:`_library_rows`) as
        :meth:`_delete_faces` does; returns the copies' face ids."""
        copies = [(row[2], row[1]) for row in rows if row[2] is not None]
        return self._delete_faces(copies) if copies else []

    def _relink_copies(self, sha: str, copies: list[int], ids: list[int], faces: list[NewLibraryFace]) -> None:
        """Inside a transaction: a new library face (``ids``, ``faces``) of the photo ``sha`` that is
        the same face as an enrolled copy no library face links to any more (one of the same bytes:
        its file was forgotten and found again; or one of the ``copies`` of the faces it replaces:
        only its metadata changed) is that copy's face again: linked to it and named its person by
        the user (never attached "auto")."""
        new = [(face_id, "", embedding_bytes(face.embedding)) for face_id, face in zip(ids, faces, strict=True)]
        for copy, person_id, blob in self._orphaned_copies(sha, copies):
            for face_id in same_faces([("", blob)], new):
                new = [row for row in new if row[0] != face_id]  # one copy per face
                self._assign_library_faces(person_id, [(face_id, copy)])

    def _orphaned_copies(self, sha: str, copies: list[int]) -> list[tuple[int, int, bytes]]:
        """(face id, person id, embedding bytes) of the enrolled copies made by naming a library face
        (``faces.from_library``) that no library face links to any more, among those of photo ``sha``
        and the face ids ``copies``."""
        return self._rows(
            "SELECT id, person_id, embedding FROM faces f WHERE (image_sha256 = ? OR id = ANY(?)) AND from_library "
            "AND NOT EXISTS (SELECT 1 FROM library_faces lf WHERE lf.enrolled_face_id = f.id)",
            (sha, sorted(copies)),
        )

    def _enrolled_photos(self, hashes: list[str]) -> set[str]:
        """Those of the image sha256 ``hashes`` that have an enrolled face."""
        return {sha for (sha,) in self._rows("SELECT image_sha256 FROM faces WHERE image_sha256 = ANY(?)", (list(hashes),))}

    def _copy_library_face(self, face_id: int, person_id: int) -> int:
        """Copy library face ``face_id`` into ``faces`` as ``person_id``'s; returns the new face id."""
        columns = ("source", "image_sha256", "box", "landmarks", "score", "crop", "crop_origin", "embedding", "model_id")
        row = self._row(
            "SELECT lp.path, lp.sha256, lf.box, lf.landmarks, lf.score, lf.crop, lf.crop_origin, lf.embedding, lf.model_id "
            "FROM library_faces lf JOIN library_photos lp ON lp.id = lf.photo_id WHERE lf.id = ?",
            (face_id,),
        )
        copy = {"person_id": person_id} | dict(zip(columns, row, strict=True))
        return self._insert("faces", [copy | {"created_at": time.time(), "from_library": True}])[0]

    def _assign_library_faces(self, person_id: int, faces: list[tuple[int, int | None]]) -> None:
        """Name (library face id, its enrolled copy or None) ``faces`` ``person_id``'s, assigned by the user, unclustered."""
        self._execute_many(
            "UPDATE library_faces SET person_id = ?, assigned = 'user', cluster = NULL, enrolled_face_id = ? WHERE id = ?",
            [(person_id, copy, face_id) for face_id, copy in faces],
        )

    def _clear_library_faces(self, ids: list[int]) -> None:
        """Take library faces ``ids`` from their person: no person, assignment, copy or cluster."""
        self._execute(
            "UPDATE library_faces SET person_id = NULL, assigned = NULL, enrolled_face_id = NULL, cluster = NULL "
            "WHERE id = ANY(?)",
            (sorted(ids),),
        )

    def _delete_library_faces(self, ids: list[int]) -> None:
        """Delete the library faces ``ids`` (marked for erasure)."""
        self._execute("DELETE FROM library_faces WHERE id = ANY(?)", (sorted(ids),))
        self._set_meta({ERASE_PENDING: 1})

    # -- API keys and the audit log ----------------------------------------------------------------

    def add_api_key(self, name: str, scope: str, key_hash: str) -> None:
        """Store a new key by its sha256 hash (never the key). GalleryError when an active key has
        that name already, or the name or scope is refused (:func:`check_new_key`)."""
        name = check_new_key(name, scope, key_hash)
        with self.transaction():
            if self._active_key(name) is not None:
                raise ConflictError(f"an active key named {name!r} exists already in {self.location}; revoke it first")
            check_key_spelling(name, [row[0] for row in self._rows("SELECT DISTINCT name FROM api_keys")], self.location)
            self._insert("api_keys", [{"name": name, "scope": scope, "key_hash": key_hash, "created_at": time.time()}])
            self._set_meta({KEYS_REQUIRED: 1})
            self._audit("key_create", detail={"key": name, "scope": scope})

    def _active_key(self, name: str) -> tuple[int, str] | None:
        """(row id, scope) of the active key ``name``, or None."""
        return self._row("SELECT id, scope FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,))

    def api_keys(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        return [ApiKey(*row) for row in self._rows(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def api_key_for_hash(self, key_hash: str) -> ApiKey | None:
        """The ACTIVE key with this hash, or None (one indexed lookup: called once per request)."""
        row = self._row(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,))
        return ApiKey(*row) if row else None

    def has_api_keys(self) -> bool:
        """Whether any key is active."""
        return bool(self._row("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")[0])

    def keys_required(self) -> bool:
        """Whether requests must carry a key: the gallery has or ever had one (KEYS_REQUIRED is set
        with the first key; a gallery from before counts its revoked keys)."""
        return self.setting(KEYS_REQUIRED) is not None or bool(self.api_keys())

    def revoke_api_key(self, name: str) -> None:
        """Mark the active key ``name`` revoked (now); UnknownKeyError when there is none."""
        name = key_name(name)
        with self.transaction():
            found = self._active_key(name)
            if found is None:
                raise UnknownKeyError(f"no active key named {name!r} in {self.location}")
            self._execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), found[0]))
            self._audit("key_revoke", detail={"key": name, "scope": found[1]})

    def audit_log(self, limit: int | None = 100) -> list[AuditEvent]:
        """The latest ``limit`` events (None: all), newest first: in the order written (the audit
        id), not by their clock time, so a writer whose clock is behind hides nothing."""
        if limit is not None and limit < 0:
            raise GalleryError(f"log limit {limit}: must be 0 or more")
        rows = self._rows(
            "SELECT a.at, a.actor, a.action, p.name, a.detail, a.person_id FROM audit a "
            "LEFT JOIN people p ON p.id = a.person_id ORDER BY a.id DESC" + ("" if limit is None else " LIMIT ?"),
            () if limit is None else (limit,),
        )
        return [
            AuditEvent(at, actor, action, person, json.loads(detail), person_id)
            for at, actor, action, person, detail, person_id in rows
        ]

    def salvage_keys_and_log(self) -> Carried:
        """For a damaged store: the API keys and audit events that can still be read (best effort:
        never raises for damage)."""
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
            return self._rows(f"SELECT {columns} FROM {table} ORDER BY id")
        except GalleryError:
            pass
        try:
            highest = min(int(self._row(f"SELECT MAX(id) FROM {table}")[0] or 0), MAX_SALVAGE_ID)
        except (GalleryError, TypeError, ValueError):
            return []
        rows = []
        for row_id in range(1, highest + 1):
            with contextlib.suppress(GalleryError):
                if (row := self._row(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,))) is not None:
                    rows.append(row)
        return rows

    def _salvaged_name(self, person_id: int, names: dict[int, str | None]) -> str | None:
        """The name of person ``person_id`` read from a damaged store, or None when unreadable
        (or removed); ``names`` caches person id -> name."""
        if person_id not in names:
            try:
                found = self._row("SELECT name FROM people WHERE id = ?", (person_id,))
                names[person_id] = found[0] if found and isinstance(found[0], str) else None
            except GalleryError:
                names[person_id] = None
        return names[person_id]

    def restore_keys_and_log(self, carried: Carried, detail: dict) -> None:
        """Into a store rebuilt from a damaged one: add ``carried`` keys (those whose hash or active
        name is not taken) and events, and a "repair" event with ``detail``, in one transaction.
        A carried event's person gets the id of the person of that name here; a person not here
        (removed, or lost to the damage) gets a new id, one per old id, so it names nobody."""
        with self.transaction():
            own = self._rows("SELECT id, at, actor, action, person_id, detail FROM audit ORDER BY id")
            for key, key_hash in carried.keys:
                taken = self._row("SELECT 1 FROM api_keys WHERE key_hash = ?", (key_hash,))
                if taken or (key.active and self._active_key(key.name) is not None):
                    continue
                row = {"name": key.name, "scope": key.scope, "key_hash": key_hash, "created_at": key.created_at}
                self._insert("api_keys", [row | {"revoked_at": key.revoked_at}])
                self._set_meta({KEYS_REQUIRED: 1})
            new_ids: dict[int, int] = {}
            for event in carried.events:
                if event.person_id is not None and event.person_id not in new_ids:
                    here = self._person_row(event.person) if event.person is not None else None
                    new_ids[event.person_id] = here[0] if here else self._unused_id("people")
                person_id = None if event.person_id is None else new_ids[event.person_id]
                self._write_event(AuditEvent(event.at, event.actor, event.action, None, event.detail, person_id))
            # the log is read in the order written: the history carried over goes before the rebuild's own events
            self._execute("DELETE FROM audit WHERE id = ANY(?)", ([row[0] for row in own],))
            self._execute_many(
                "INSERT INTO audit(at, actor, action, person_id, detail) VALUES (?, ?, ?, ?, ?)", [row[1:] for row in own]
            )
            self._audit("repair", detail=detail)

    # -- administration ----------------------------------------------------------------------------

    @abstractmethod
    def check(self) -> list[str]:
        """Problems found (empty when healthy): the backend's own, then :meth:`_check_rows`'."""

    def _check_rows(self, problems: list[str]) -> None:
        """Append to ``problems`` embeddings of the wrong size, not finite or not unit length, faces
        of another model, crops that are not JPEG, people without faces (those found before a read
        failed stay)."""
        meta = self.meta()
        dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
        for table, found in (("faces", face_problems), ("library_faces", library_face_problems)):
            for rows in self._stream(f"SELECT id, embedding, model_id, substr(crop, 1, 2) FROM {table} ORDER BY id"):
                for face_id, blob, face_model, head in rows:
                    problems += found(face_id, blob, face_model, head, dim, model_id)
            if table == "faces":
                empty = self._rows("SELECT name FROM people p WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)")
                problems += [f"person {name!r} has no face" for (name,) in sorted(empty)]

    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """For a damaged store: every face that can still be read and parsed, as (record, (dim,)
        float32 unit embedding, JPEG crop) in id order, and how many face rows could not be.
        Raises GalleryError only when the metadata (model) itself is unreadable. By default every
        row is read (a database on a server is not damaged the way a file is)."""
        with self.reading():
            meta = self.meta()
            dim, model_id = int(meta.get("dim", 0)), meta.get("model_id")
            rows, failed = [], 0
            for batch in self._stream(f"SELECT {_FACE_COLUMNS}, f.embedding, f.crop FROM {_FACES} ORDER BY f.id"):
                for row in batch:
                    parsed = salvaged_face(row, dim, model_id)
                    if parsed is None:
                        failed += 1
                    else:
                        rows.append(parsed)
        return rows, failed

    def set_aside(self, suffix: str) -> str:
        """Close the store and move its data aside, kept whole and unchanged, so a new store can
        be created at the same location (a damaged store is rebuilt this way); returns where it
        now lies. GalleryError, with nothing moved, when it cannot be: by default it is not
        applicable (a database on a server is not a file to move)."""
        raise GalleryError(f"{self.location}: setting the database aside is not applicable to this gallery; nothing was moved")

    def remove_empty_people(self) -> int:
        """Delete people left without faces (whoever left them); returns how many."""
        with self.transaction():
            count = self._execute("DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)")
            self._detach_orphans()
            if count:
                self._bump_generation()
                self._audit("remove_empty_people", detail={"people": count})
        return count

    def stats(self) -> dict[str, object]:
        """People, faces, model, dimension, schema version, size and the library's counts."""
        with self.reading():
            meta = self.meta()
            people, faces, *library = self._row(
                "SELECT (SELECT COUNT(*) FROM people), (SELECT COUNT(*) FROM faces), (SELECT COUNT(*) FROM library_photos), "
                "(SELECT COUNT(*) FROM library_faces), (SELECT COUNT(*) FROM library_faces WHERE person_id IS NULL)"
            )
            size = self._database_bytes()
        return {
            "gallery": self.location,
            "people": people,
            "faces": faces,
            "model_id": meta.get("model_id"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "gallery_schema_version": int(meta["schema_version"]),
            "database_bytes": size,
        } | dict(zip(("library_photos", "library_faces", "library_unnamed_faces"), library, strict=True))


def _ids(face_ids) -> list[int]:
    """Distinct ids >= 0 (-1 means none), ascending, as Python ints for ``= ANY(?)``."""
    return sorted({int(i) for i in np.ravel(np.asarray(face_ids, np.int64)) if i >= 0})
