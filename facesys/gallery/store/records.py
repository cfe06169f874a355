"""What a truth store holds, and how its rows are written and read: the records passed in and out
of :class:`~facesys.gallery.store.base.TruthStore`, the meta keys every backend knows, and the
encoding of a row's columns (geometry as JSON text, embeddings as little-endian float32) shared by
the backends. Pure functions, no SQL run here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facesys.gallery.audit import AuditEvent
from facesys.keys import ApiKey

# meta key set with the first API key, in its transaction: from then on every request needs a key
# (revoking the last one never opens the service to anonymous callers)
KEYS_REQUIRED = "keys_required"
ENCRYPTION = "encryption"  # meta key of an encrypted gallery: its key check (facesys/gallery/sealing.py)
ERASE_PENDING = "erase_pending"  # meta key: a removal committed, its freed space not yet erased
MAX_SALVAGE_ID = 2**31  # a row id above this read from a damaged page is taken for garbage


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
    the model they were embedded with (None when it had none), ``scanned_at``: when (seconds since
    the epoch) it was read and its faces found (a touch or a move keeps it; retention counts from
    it), and ``erased``: where the faces erased with a removed person (or expired) were, as [frame
    or None, x1, y1, x2, y2] (a scan reading the same bytes again leaves faces there out)."""

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
class CarriedLibraryFace:
    """A library face as an export carries it: its photo's ``path``, what :class:`NewLibraryFace`
    holds, the model, cluster, ``person`` by name and how ``assigned``, and ``enrolled_sha256``:
    the image_sha256 of its enrolled copy (None: none)."""

    path: str
    face: NewLibraryFace
    model_id: str
    cluster: int | None
    assigned: str | None
    enrolled_sha256: str | None


@dataclass(frozen=True)
class CarriedLibrary:
    """The photo library as an export carries it: photos (their ``id`` is ignored), faces and the
    erased files (sha256, faces)."""

    photos: list[LibraryPhoto]
    faces: list[CarriedLibraryFace]
    erased: list[tuple[str, int]]


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


# -- row encoding shared by the backends -----------------------------------------------------------

FACES_FROM = "faces f JOIN people p ON p.id = f.person_id"
FACE_COLUMNS = "f.id, p.name, f.source, f.image_sha256, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, f.created_at"
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
