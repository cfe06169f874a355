"""The truth-store interface: what every gallery backend (SQLite today) keeps and answers.

A store holds people, their faces (source, image hash, box, landmarks, score, JPEG crop,
embedding) and a few named settings; it counts its changes in a ``generation`` and can say which
faces were added or removed since an earlier generation, so a derived vector index can follow it
without reading everything again. Face ids and person ids are never reused. Embeddings are (dim,)
float32 unit vectors compared by Euclidean distance. Every change is one transaction, and writes
one audit event (facesys/gallery/audit.py) in it. It also keeps the service's API keys, by hash.

A backend subclasses :class:`TruthStore`; ``tests/gallery/test_store_interface.py`` runs the same
suite against every backend listed in ``facesys.gallery.store.STORE_BACKENDS``.
"""

from __future__ import annotations

import json
import operator
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from facesys.errors import (
    MAX_ID,
    ChangedMeanwhileError,
    ConflictError,
    InvalidIdError,
    InvalidValueError,
    UnknownFaceError,
    UnknownPersonError,
)
from facesys.gallery.audit import AuditEvent
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


class TruthStore(ABC):
    """A gallery's source of truth. Use as a context manager or call :meth:`close`.

    Names given to methods are normalised with :func:`normalize_name`; a new name equal to an
    existing one ignoring case is refused. Errors are GalleryErrors naming the store.
    """

    location: str  # for messages: a folder, or a database URL without its password

    def __enter__(self) -> TruthStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    @abstractmethod
    def exists(cls, location: str) -> bool:
        """Whether a gallery of this backend exists at ``location`` (creates nothing)."""

    @abstractmethod
    def close(self) -> None: ...

    # -- identity, settings and change tracking --------------------------------------------------

    @abstractmethod
    def meta(self) -> dict[str, str]:
        """Everything in meta: gallery_id, schema_version, model_id, model_name, weights_sha256, dim,
        metric, generation, and settings."""

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

    @abstractmethod
    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        """Bind an empty store to a model (the first enrollment does this)."""

    def setting(self, key: str) -> str | None:
        """A named setting (e.g. ``verify_threshold``, ``index_kind``), or None."""
        return self.meta().get(key)

    @abstractmethod
    def set_setting(self, key: str, value: object | None) -> None:
        """Store a named setting (None removes it)."""

    @abstractmethod
    def changes_since(self, generation: int) -> Changes | None:
        """Faces added and removed after ``generation``, or None when the store cannot tell (its
        change log starts later, or every embedding was replaced since)."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[None]:
        """One read snapshot: every query inside sees the same committed state."""

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

    @abstractmethod
    def people(self) -> list[tuple[str, int]]:
        """(name, number of faces) of everyone, by name."""

    @abstractmethod
    def person_named(self, name: str) -> str | None:
        """The stored name of the person called ``name`` (compared ignoring case and form), or None."""

    @abstractmethod
    def person_of_image(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if it is."""

    @abstractmethod
    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        """Enroll one face of ``name`` (created if new) in one transaction; returns its face id.
        DuplicatePhotoError when the photo is already enrolled."""

    @abstractmethod
    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str, action: str = "enroll") -> list[int]:
        """Enroll several (name, face) in ONE transaction: all or nothing. Logs one ``action``
        event ("enroll", "import" or "repair") per person, detail {"face_ids": [...]}."""

    @abstractmethod
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

    @abstractmethod
    def remove_faces(self, face_ids: list[int]) -> dict[int, str]:
        """Delete faces by id in one transaction (people left with no face are deleted too); returns
        face id -> person name of those that existed (ids that do not are ignored: none, no change)."""

    @abstractmethod
    def rename_person(self, old: str, new: str, seen: list[int] | None = None) -> None:
        """UnknownPersonError when nobody is named ``old``; NameConflictError when ``new`` is another's.
        ``seen``: ``old``'s face ids as the caller read them; ChangedMeanwhileError naming who has
        them now when ``old`` was renamed or removed meanwhile (:meth:`_seen_person`)."""

    @abstractmethod
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Face records (no pixels, no embeddings), of one person or everyone, oldest first."""

    @abstractmethod
    def face_count(self) -> int: ...

    @abstractmethod
    def face_ids(self) -> np.ndarray:
        """(N,) int64 ids of every face, ascending."""

    @abstractmethod
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(face ids (N,) int64 ascending, embeddings (N, dim) float32, person name of each face)."""

    @abstractmethod
    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """(len(face_ids), dim) float32 embeddings of these faces, in the order given."""

    @abstractmethod
    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        """Face id -> person name for those of ``face_ids`` that exist (-1 is ignored)."""

    @abstractmethod
    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        """(face id, JPEG crop, crop origin, landmarks in source pixels) of every face."""

    @abstractmethod
    def crop(self, face_id: int) -> bytes | None:
        """The stored JPEG crop of one face, or None when there is no such face."""

    @abstractmethod
    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        """Switch every face to another model in one transaction; calibrated thresholds are dropped."""

    # -- the photo library: faces found by scans, unnamed until named -----------------------------
    # Library faces live in their own tables, never in ``faces``: identify cannot see them. Naming
    # one copies it into ``faces`` (logged in the change log, so the index follows); a scan's
    # automatic match only links it to the person, without a copy. Library face ids are never
    # reused. Changes that touch only the library do not bump the generation.

    @abstractmethod
    def record_photo(self, photo: ScannedPhoto, faces: list[NewLibraryFace] | None, model_id: str | None) -> list[int]:
        """Record one scanned file with all its faces in ONE transaction (all or nothing),
        replacing an earlier record of the same path and its faces (their enrolled copies stay);
        returns the new library face ids. A face's ``person`` attaches it automatically to that
        enrolled person (ignored when nobody has that name now). ``faces=None``: the file's content
        is unchanged, only its size, modification time and scan time are updated. Freed space is
        erased by the next :meth:`erase_freed_pages`. GalleryError when faces are given and
        ``model_id`` is not the store's model."""

    @abstractmethod
    def library_photos(self) -> list[LibraryPhoto]:
        """Every recorded library file, by path."""

    @abstractmethod
    def move_photo(self, old_path: str, photo: ScannedPhoto) -> bool:
        """Record that the library file ``old_path`` now lies at ``photo.path`` with the same bytes
        (``photo.sha256``), in one transaction: it keeps its id, faces, names, clusters and links
        to enrolled copies (whose source follows the file). False, nothing changed, when
        ``old_path`` is not recorded with that sha256 or ``photo.path`` is recorded already."""

    @abstractmethod
    def erased_photos(self) -> set[str]:
        """The sha256 of the files no longer recorded because every face of theirs was erased with
        a removed person: a scan leaves them out (see :meth:`remove_person`)."""

    @abstractmethod
    def forget_photos(self, paths: list[str]) -> int:
        """Forget these recorded files (unknown paths are ignored) with their library faces, in one
        transaction, and erase the freed space; returns how many faces went. Enrolled copies of
        named faces stay enrolled."""

    @abstractmethod
    def library_faces(
        self, ids: list[int] | None = None, person: str | None = None, cluster: int | None = None, unnamed: bool = False
    ) -> list[LibraryFace]:
        """Library faces by id ascending: those of ``ids`` that exist, of ``person`` (any spelling
        of the name; [] for nobody), of ``cluster``, unnamed only; filters combine."""

    @abstractmethod
    def library_vectors(self, ids: list[int]) -> np.ndarray:
        """(len(ids), dim) float32 unit embeddings of these library faces, in the order given.
        UnknownFaceError naming the ids that do not exist; GalleryError for one of another dimension."""

    @abstractmethod
    def library_crops(self, ids: list[int]) -> dict[int, bytes]:
        """Library face id -> its JPEG crop, for those of ``ids`` that exist."""

    @abstractmethod
    def set_clusters(self, ids: list[int], clusters: list[int]) -> None:
        """Set the cluster of each library face (ids that do not exist, or are named meanwhile, are
        left alone) in one transaction; meta ``last_cluster_id`` keeps the highest cluster id ever
        set, so new clusters can be given ids never used before."""

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

    # What naming library faces needs of a backend; each runs inside :meth:`transaction`.

    @abstractmethod
    def transaction(self) -> AbstractContextManager:
        """One write transaction: committed on leaving, rolled back on an exception."""

    @abstractmethod
    def _person_row(self, name: str) -> tuple[int, str] | None:
        """(id, stored name) of the person named ``name`` (compared ignoring case), or None."""

    @abstractmethod
    def _person_id(self, name: str, create: bool) -> int | None:
        """The id of the person ``name``, created when ``create`` and missing."""

    @abstractmethod
    def _bump_generation(self) -> int:
        """Advance the store's generation; returns the new one."""

    @abstractmethod
    def _log(self, generation: int, face_ids: list[int], added: bool) -> None:
        """Record in the change log that ``face_ids`` were added (or removed) at ``generation``."""

    @abstractmethod
    def _audit(self, action: str, person_id: int | None = None, detail: dict | None = None) -> None:
        """Append an event to the audit log."""

    @abstractmethod
    def _library_rows(self, ids: list[int]) -> list[tuple]:
        """(id, person id, enrolled face id, photo sha256, score, model id) of the library faces
        ``ids``, locked for this transaction; UnknownFaceError naming those that do not exist."""

    @abstractmethod
    def _drop_copies(self, rows: list[tuple]) -> list[int]:
        """Delete the enrolled copies of library face ``rows`` (from :meth:`_library_rows`), logged
        and audited per person, and the people left without faces (their library faces detached);
        returns the copies' face ids."""

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

    @abstractmethod
    def _orphaned_copies(self, sha: str, copies: list[int]) -> list[tuple[int, int, bytes]]:
        """(face id, person id, embedding bytes) of the enrolled copies made by naming a library face
        (``faces.from_library``) that no library face links to any more, among those of photo ``sha``
        and the face ids ``copies``."""

    @abstractmethod
    def _enrolled_photos(self, hashes: list[str]) -> set[str]:
        """Those of the image sha256 ``hashes`` that have an enrolled face."""

    @abstractmethod
    def _copy_library_face(self, face_id: int, person_id: int) -> int:
        """Copy library face ``face_id`` into ``faces`` as ``person_id``'s; returns the new face id."""

    @abstractmethod
    def _assign_library_faces(self, person_id: int, faces: list[tuple[int, int | None]]) -> None:
        """Name (library face id, its enrolled copy or None) ``faces`` ``person_id``'s, assigned by the user, unclustered."""

    @abstractmethod
    def _clear_library_faces(self, ids: list[int]) -> None:
        """Take library faces ``ids`` from their person: no person, assignment, copy or cluster."""

    @abstractmethod
    def _delete_library_faces(self, ids: list[int]) -> None:
        """Delete the library faces ``ids``."""

    # -- API keys and the audit log ----------------------------------------------------------------

    @abstractmethod
    def add_api_key(self, name: str, scope: str, key_hash: str) -> None:
        """Store a new key by its sha256 hash (never the key). GalleryError when an active key has
        that name already, or the name or scope is refused (:func:`check_new_key`)."""

    @abstractmethod
    def api_keys(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""

    @abstractmethod
    def api_key_for_hash(self, key_hash: str) -> ApiKey | None:
        """The ACTIVE key with this hash, or None (one indexed lookup: called once per request)."""

    def has_api_keys(self) -> bool:
        """Whether any key is active."""
        return any(key.active for key in self.api_keys())

    def keys_required(self) -> bool:
        """Whether requests must carry a key: the gallery has or ever had one (KEYS_REQUIRED is set
        with the first key; a gallery from before counts its revoked keys)."""
        return self.setting(KEYS_REQUIRED) is not None or bool(self.api_keys())

    @abstractmethod
    def revoke_api_key(self, name: str) -> None:
        """Mark the active key ``name`` revoked (now); UnknownKeyError when there is none."""

    @abstractmethod
    def audit_log(self, limit: int | None = 100) -> list[AuditEvent]:
        """The latest ``limit`` events (None: all), newest first: in the order written (the audit
        id), not by their clock time, so a writer whose clock is behind hides nothing."""

    @abstractmethod
    def salvage_keys_and_log(self) -> Carried:
        """For a damaged store: the API keys and audit events that can still be read (best effort:
        never raises for damage)."""

    @abstractmethod
    def restore_keys_and_log(self, carried: Carried, detail: dict) -> None:
        """Into a store rebuilt from a damaged one: add ``carried`` keys (those whose hash or active
        name is not taken) and events, and a "repair" event with ``detail``, in one transaction.
        A carried event's person gets the id of the person of that name here; a person not here
        (removed, or lost to the damage) gets a new id, one per old id, so it names nobody."""

    # -- administration ----------------------------------------------------------------------------

    @abstractmethod
    def check(self) -> list[str]:
        """Problems found (empty when healthy)."""

    @abstractmethod
    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """For a damaged store: every face that can still be read and parsed, row by row, as
        (record, (dim,) float32 unit embedding, JPEG crop) in id order, and how many face rows
        could not be. Raises GalleryError only when the metadata (model) itself is unreadable."""

    @abstractmethod
    def set_aside(self, suffix: str) -> str:
        """Close the store and move its data aside, kept whole and unchanged, so a new store can
        be created at the same location (a damaged store is rebuilt this way); returns where it
        now lies. GalleryError, with nothing moved, when it cannot be."""

    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable from the store's files (removals do this themselves;
        repair calls it again after a removal that could not finish). Nothing to do by default."""
        return None

    @abstractmethod
    def remove_empty_people(self) -> int:
        """Delete people left without faces; returns how many."""

    @abstractmethod
    def stats(self) -> dict[str, object]:
        """People, faces, model, dimension, schema version and size."""
