"""Export a gallery to a portable file and import it back: a zip of JSON, .npy and JPEG (no pickle).

Layout of the zip (format ``facesys-gallery-export``, version 2; version 1 files, without the
library, still import):

- ``manifest.json``: format, version, model_id, model_name, weights_sha256, dim, metric,
  exported_at, ``faces``: a list of {person, source, image_sha256, box, landmarks, score,
  crop_origin, created_at, crop} in the row order of the embeddings, the optional
  ``settings``: {verify_threshold, identify_threshold, index_kind, retention_library,
  retention_audit (periods such as "90d")}, those the gallery had set
  (files written before settings were exported simply have none), and ``library`` (version 2):
  {photos: [{path, size, mtime_ns, sha256, faces, error, model_id, scanned_at, erased}],
  faces: [{photo (its number in photos), frame, box, landmarks, score, crop_origin, crop,
  model_id, cluster, person (a name), assigned, enrolled (the image_sha256 of its enrolled
  copy)}] in the row order of the library embeddings, erased: [[sha256, faces]]};
- ``embeddings.npy``: (N, dim) float32 little-endian, saved without pickle;
  ``library_embeddings.npy``: the library faces' (M, dim), when there are any;
- ``crops/<n>.jpg``: each face's stored crop; ``library/<n>.jpg``: each library face's.

An encrypted gallery's export is sealed whole with the gallery's key (facesys/gallery/sealing.py:
chunks of AES-256-GCM, never a byte of it in clear on disk): it imports into any gallery opened
with that key. An export holds faces, settings and the photo library: not the API keys nor the audit log, which
belong to the gallery they were made in (``Gallery.repair`` carries those over itself). Library
faces embedded by another model than the gallery's (a reindex under way) are left out: a scan
reads their files again.

An export is untrusted input: :func:`import_gallery` checks the whole archive (sizes before
reading anything, then every field, embedding and crop) before it writes anything, and refuses
a bad one with one GalleryError naming the file, the face and the problem.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesys.errors import GalleryError
from facesys.gallery.sealing import opened_file, sealed_output
from facesys.gallery.store import NewFace, TruthStore, name_key, normalize_name
from facesys.gallery.store.records import CarriedLibrary, CarriedLibraryFace, LibraryPhoto, NewLibraryFace
from facesys.gallery.store.retention import RETENTION_SETTINGS, parse_period

FORMAT, VERSION = "facesys-gallery-export", 2  # 2: the photo library (version 1 files import, with none)
METRIC = "euclidean-unit"
MAX_MANIFEST_BYTES = 512 * 2**20
MAX_TOTAL_BYTES = 4 * 2**30  # sum of the uncompressed sizes of every entry
MAX_CROP_BYTES = 8 * 2**20  # one crop entry, uncompressed
MAX_CROP_SIDE = 4096  # pixels, read from the JPEG header before decoding
MAX_COMPRESSION_RATIO = 100  # for entries above RATIO_CHECK_BYTES: real exports compress a few times at most
RATIO_CHECK_BYTES = 2**20
MAX_DIM = 65536
MAX_TEXT = 4096  # model name, source path...
NORM_TOLERANCE = 1e-3  # |norm - 1| allowed for a stored unit embedding
THRESHOLD_SETTINGS = ("verify_threshold", "identify_threshold")
INDEX_KIND_SETTING = "index_kind"
MODEL_KEYS = ("model_id", "model_name", "weights_sha256", "dim", "metric")
FACE_KEYS = ("person", "source", "image_sha256", "box", "landmarks", "score", "crop_origin", "crop")
_CROP_NAME = re.compile(r"crops/[0-9]{1,12}\.jpg")
_LIBRARY_CROP_NAME = re.compile(r"library/[0-9]{1,12}\.jpg")
LIBRARY_VECTORS = "library_embeddings.npy"
LIBRARY_PHOTO_KEYS = ("path", "size", "mtime_ns", "sha256", "faces", "error", "model_id", "scanned_at", "erased")
LIBRARY_FACE_KEYS = (
    *("photo", "frame", "box", "landmarks", "score", "crop_origin", "crop"),
    *("model_id", "cluster", "person", "assigned", "enrolled"),
)
ASSIGNED = ("auto", "user")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What reading a damaged or hostile zip entry can raise.
_READ_ERRORS = (KeyError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


def _index_kinds() -> tuple[str, ...]:
    from facesys.gallery.index import INDEX_KINDS

    return tuple(INDEX_KINDS)


def _threshold(value: object) -> float | None:
    """A stored or exported threshold as a float when it is a distance in (0, 2], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and 0.0 < number <= 2.0 else None


class _OneCrop:
    """What the checks read a crop from, so each salvaged row is checked exactly as import will."""

    def __init__(self, jpeg: bytes):
        self.jpeg = jpeg

    def getinfo(self, name: str) -> str:
        return name

    def read(self, _name: str) -> bytes:
        return self.jpeg


def _library_section(
    library: CarriedLibrary | None, model_id: str | None, dim: int, faces: list[dict], salvaged: bool
) -> tuple[dict, np.ndarray, list[bytes], int]:
    """(manifest ``library``, its (M, dim) embeddings, its crops, faces left out) for ``library``
    exported with the enrolled ``faces`` entries: faces of another model or dimension (a reindex
    under way: a scan reads their photos again) are left out; a person enrolled in no exported
    face is written unnamed and a link to a face not exported is dropped, so the file imports.
    ``salvaged``: each face is also checked as import will, and left out when it fails."""
    if library is None:
        return {"photos": [], "faces": [], "erased": []}, np.zeros((0, dim), np.float32), [], 0
    owners = {face["image_sha256"]: name_key(face["person"]) for face in faces}
    names = set(owners.values())
    photos: list[dict] = []
    for photo in library.photos:
        entry = {key: getattr(photo, key) for key in LIBRARY_PHOTO_KEYS}
        if salvaged:
            try:
                _check_library_photo("", entry)
            except GalleryError:
                continue
        photos.append(entry)
    paths = {photo["path"]: n for n, photo in enumerate(photos)}
    entries: list[dict] = []
    vectors: list[np.ndarray] = []
    crops: list[bytes] = []
    left_out = 0
    for carried in library.faces:
        face = carried.face
        if carried.model_id != model_id or face.embedding.shape != (dim,) or carried.path not in paths:
            left_out += 1
            continue
        person = face.person if face.person is not None and name_key(face.person) in names else None
        copy = carried.enrolled_sha256 if person is not None and owners.get(carried.enrolled_sha256) == name_key(person) else None
        entry = {
            "photo": paths[carried.path],
            "frame": face.frame,
            "box": [float(v) for v in face.box],
            "landmarks": [[float(x), float(y)] for x, y in face.landmarks],
            "score": face.score,
            "crop_origin": [float(v) for v in face.crop_origin],
            "crop": f"library/{len(entries)}.jpg",
            "model_id": carried.model_id,
            "cluster": carried.cluster,
            "person": person,
            "assigned": carried.assigned if person is not None else None,
            "enrolled": copy,
        }
        if person is not None and entry["assigned"] not in ASSIGNED:
            entry["assigned"] = "user"
        if salvaged:
            try:
                _check_library_face("", entry, face.embedding, _OneCrop(face.crop_jpeg), model_id or "", list(paths))  # type: ignore[arg-type]
            except GalleryError:
                left_out += 1
                continue
        entries.append(entry)
        vectors.append(face.embedding)
        crops.append(face.crop_jpeg)
    erased = [[sha, count] for sha, count in library.erased]
    stacked = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return {"photos": photos, "faces": entries, "erased": erased}, stacked, crops, left_out


def export_gallery(store: TruthStore, path: str | Path, on_unreadable=None) -> int:
    """Write every face of ``store`` to the zip ``path`` (atomically); returns the number of faces.

    The calibrated thresholds, a forced index kind and the retention periods travel in the
    manifest's ``settings``.

    A damaged store (reading the faces fails) is salvaged: its faces are read row by row
    (``store.salvage()``) and those that can be read and that an import would accept are written.
    ``on_unreadable``, a callable, when given is called once with the number of face rows left out (0 when
    the store could be read whole). GalleryError when even the store's metadata is unreadable."""
    path = Path(path)

    def read_settings() -> dict[str, object]:
        settings: dict[str, object] = {}
        for key in THRESHOLD_SETTINGS:
            value = _threshold(store.setting(key))
            if value is not None:
                settings[key] = value
        kind = store.setting(INDEX_KIND_SETTING)
        if kind in _index_kinds():
            settings[INDEX_KIND_SETTING] = kind
        for what, period in store.retention().items():
            if period is not None:
                settings[RETENTION_SETTINGS[what]] = period
        return settings

    try:
        with store.reading():
            meta = store.meta()
            records = store.faces()
            _, vectors, _ = store.embeddings()  # rows in face-id order, as faces()
            crops = {face_id: jpeg for face_id, jpeg, _, _ in store.crops()}
            settings = read_settings()
            library = store.carried_library()
        rows = [(record, vectors[row], crops[record.id]) for row, record in enumerate(records)]
        unreadable, damaged = 0, False
    except (GalleryError, ValueError, KeyError):  # a damaged page or row: salvage what can be read
        meta = store.meta()
        settings = read_settings()
        salvaged, unreadable = store.salvage()
        damaged = True
        try:
            library = store.carried_library()
        except (GalleryError, ValueError, KeyError, TypeError):  # the library is lost with the damage
            library = None
        rows = []
        spelling: dict[str, str] = {}
        seen: set[str] = set()

        for record, vector, jpeg in salvaged:
            entry = {
                **{key: getattr(record, key) for key in ("person", "source", "image_sha256", "box", "landmarks", "score")},
                **{"crop_origin": record.crop_origin, "created_at": record.created_at, "crop": f"crops/{len(rows)}.jpg"},
            }
            try:
                person, _ = _check_face(path, record.id, entry, vector, _OneCrop(jpeg))  # type: ignore[arg-type]
            except GalleryError:
                unreadable += 1
                continue
            if record.image_sha256 in seen or spelling.setdefault(name_key(person), person) != person:
                unreadable += 1  # a damaged page can hold a stale copy of a row: keep the first
                continue
            seen.add(record.image_sha256)
            rows.append((record, vector, jpeg))
        vectors = np.stack([vector for _, vector, _ in rows]) if rows else np.zeros((0, int(meta.get("dim", 0))), np.float32)
    faces = []
    for row, (record, _, _) in enumerate(rows):
        faces.append(
            {
                "person": record.person,
                "source": record.source,
                "image_sha256": record.image_sha256,
                "box": record.box,
                "landmarks": record.landmarks,
                "score": record.score,
                "crop_origin": record.crop_origin,
                "created_at": record.created_at,
                "crop": f"crops/{row}.jpg",
            }
        )
    dim = int(meta.get("dim", 0))
    section, library_vectors, library_crops, left_out = _library_section(library, meta.get("model_id"), dim, faces, damaged)
    unreadable += left_out if damaged else 0  # a reindex under way leaves faces out of a sound store: not unreadable
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **{k: meta.get(k) for k in ("model_id", "model_name", "weights_sha256", "metric")},
        "dim": int(meta.get("dim", 0)),
        "exported_at": time.time(),
        "settings": settings,
        "faces": faces,
        "library": section,
    }
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with (
            open(temporary, "wb") as raw,
            sealed_output(raw, store.key) as out,
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
            buffer = io.BytesIO()
            np.save(buffer, vectors.astype("<f4"), allow_pickle=False)
            archive.writestr("embeddings.npy", buffer.getvalue())
            for row, (_, _, jpeg) in enumerate(rows):
                archive.writestr(f"crops/{row}.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
            if section["faces"]:
                buffer = io.BytesIO()
                np.save(buffer, library_vectors.astype("<f4"), allow_pickle=False)
                archive.writestr(LIBRARY_VECTORS, buffer.getvalue())
            for row, jpeg in enumerate(library_crops):
                archive.writestr(f"library/{row}.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise GalleryError(f"{path}: cannot write the export ({exc.strerror})") from None
    if on_unreadable is not None:
        on_unreadable(unreadable)
    return len(rows)


# -- reading and validating an export ------------------------------------------------------------


@dataclass
class _Export:
    """A fully validated export: model, settings, and (person, face) in row order."""

    model_id: str | None
    model_name: str
    weights_sha256: str
    dim: int
    settings: dict[str, object]
    faces: list[tuple[str, NewFace]]
    library: CarriedLibrary


def _shown(value: object) -> str:
    """A value for a message, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _numbers(value: object, count: int) -> list[float] | None:
    if isinstance(value, list) and len(value) == count and all(_is_number(v) for v in value):
        return [float(v) for v in value]
    return None


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sizes(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse zip bombs from the central directory alone, before any entry is read."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if info.filename.startswith(("crops/", "library/")) and info.file_size > MAX_CROP_BYTES:
            raise GalleryError(
                f"{path}: {info.filename} is {info.file_size:,} bytes uncompressed; a crop may be at most {MAX_CROP_BYTES:,}"
            )
        if info.filename == "manifest.json" and info.file_size > MAX_MANIFEST_BYTES:
            raise GalleryError(f"{path}: manifest is implausibly large ({info.file_size:,} bytes)")
        if info.file_size > RATIO_CHECK_BYTES and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size:
            raise GalleryError(
                f"{path}: {info.filename} would expand {info.file_size:,} bytes from {info.compress_size:,}; "
                "refused as a zip bomb"
            )
    if total > MAX_TOTAL_BYTES:
        raise GalleryError(f"{path}: the archive holds {total:,} bytes uncompressed; at most {MAX_TOTAL_BYTES:,} are read")


def _read_embeddings(path: Path, data: bytes, count: int, dim: int, name: str = "embeddings.npy") -> np.ndarray:
    """The (count, dim) float32 rows of an .npy file, its header checked before any allocation."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise GalleryError(f"{path}: {name} is not a plain .npy array ({exc})") from None
    if dtype != np.dtype("<f4") or tuple(shape) != (count, dim):
        raise GalleryError(
            f"{path}: {name} holds {tuple(shape)} {dtype} values; the manifest needs ({count}, {dim}) float32 "
            f"({count} faces of dimension {dim})"
        )
    offset = buffer.tell()
    if len(data) - offset != count * dim * 4:
        raise GalleryError(f"{path}: {name} is truncated or has trailing bytes")
    vectors = np.frombuffer(data, "<f4", count=count * dim, offset=offset).reshape((count, dim), order="F" if fortran else "C")
    return np.ascontiguousarray(vectors, np.float32)


def _read_manifest(path: Path, archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except (*_READ_ERRORS, ValueError, RecursionError) as exc:
        raise GalleryError(f"{path}: not a facesys gallery export ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalleryError(f"{path}: not a facesys gallery export")
    version = manifest.get("version")
    if not _is_whole(version) or version < 1:
        raise GalleryError(f"{path}: manifest version must be a whole number >= 1, not {_shown(version)}")
    if version > VERSION:
        raise GalleryError(f"{path}: export version {version} is newer than this facesys")
    for key in MODEL_KEYS:
        if key not in manifest:
            raise GalleryError(f"{path}: manifest has no {key}")
    return manifest


def _check_model(path: Path, manifest: dict) -> tuple[str | None, str, str, int]:
    """(model_id, model_name, weights_sha256, dim); model_id None for the export of an empty
    gallery bound to no model (which imports as nothing)."""
    model_id, model_name, weights, dim = (manifest[k] for k in ("model_id", "model_name", "weights_sha256", "dim"))
    if model_id is None and manifest.get("faces") == []:
        return None, "", "", 0
    for key, value in (("model_id", model_id), ("model_name", model_name), ("weights_sha256", weights)):
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            raise GalleryError(f"{path}: manifest {key} must be non-empty text, not {_shown(value)}")
    if not _is_whole(dim) or not 1 <= dim <= MAX_DIM:
        raise GalleryError(f"{path}: manifest dim must be a whole number in [1, {MAX_DIM}], not {_shown(dim)}")
    if manifest["metric"] not in (None, METRIC):
        raise GalleryError(f"{path}: embeddings compared by {_shown(manifest['metric'])}; facesys uses {METRIC}")
    return model_id, model_name, weights, dim


def _check_settings(path: Path, manifest: dict) -> dict[str, object]:
    """The exported settings (absent in older files); unknown keys are ignored."""
    raw = manifest.get("settings", {})
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GalleryError(f"{path}: manifest settings must be an object, not {type(raw).__name__}")
    settings: dict[str, object] = {}
    for key in THRESHOLD_SETTINGS:
        if raw.get(key) is None:
            continue
        value = raw[key]
        if not _is_number(value) or _threshold(value) is None:
            raise GalleryError(f"{path}: setting {key} must be a distance in (0, 2], not {_shown(value)}")
        settings[key] = float(value)
    kind = raw.get(INDEX_KIND_SETTING)
    if kind is not None:
        if not isinstance(kind, str) or kind not in _index_kinds():
            raise GalleryError(f"{path}: setting index_kind must be one of {', '.join(_index_kinds())}, not {_shown(kind)}")
        settings[INDEX_KIND_SETTING] = kind
    for what, key in RETENTION_SETTINGS.items():
        if raw.get(key) is not None:
            try:
                settings[key] = parse_period(raw[key], what)
            except GalleryError:
                raise GalleryError(f"{path}: setting {key} must be a period such as 90d or 1y, not {_shown(raw[key])}") from None
    return settings


def _check_crop(where: str, jpeg: bytes) -> None:
    """A crop must be a JPEG of sane declared size that really decodes."""
    import cv2
    from PIL import Image

    if not jpeg.startswith(b"\xff\xd8\xff"):
        raise GalleryError(f"{where} is not a JPEG")
    if not jpeg.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise GalleryError(f"{where} is truncated (no JPEG end marker)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(jpeg)) as image:
                kind, (width, height) = image.format, image.size
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise GalleryError(f"{where} is not a readable JPEG ({exc})") from None
    if kind != "JPEG":
        raise GalleryError(f"{where} is not a JPEG (it is {kind})")
    if not (0 < width <= MAX_CROP_SIDE and 0 < height <= MAX_CROP_SIDE):
        raise GalleryError(f"{where} is {width}x{height} pixels; at most {MAX_CROP_SIDE}x{MAX_CROP_SIDE} are allowed")
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape[:2] != (height, width):
        raise GalleryError(f"{where} does not decode as a JPEG")


def _check_face(path: Path, row: int, entry: object, vector: np.ndarray, archive: zipfile.ZipFile) -> tuple[str, NewFace]:
    where = f"{path}: face {row}"
    if not isinstance(entry, dict):
        raise GalleryError(f"{where}: must be an object, not {type(entry).__name__}")
    for key in FACE_KEYS:
        if key not in entry:
            raise GalleryError(f"{where}: missing {key!r}")
    try:
        person = normalize_name(entry["person"])
    except GalleryError as exc:
        raise GalleryError(f"{where}: {exc}") from None
    source, sha = entry["source"], entry["image_sha256"]
    if not isinstance(source, str) or len(source) > MAX_TEXT:
        raise GalleryError(f"{where}: source must be a text of at most {MAX_TEXT} characters")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise GalleryError(f"{where}: image_sha256 must be 64 lowercase hex digits")
    created = entry.get("created_at")
    if created is not None and not _is_number(created):
        raise GalleryError(f"{where}: created_at must be a finite number")
    box, landmarks, score, origin, jpeg = _check_detection(where, entry, vector, archive, _CROP_NAME)
    return person, NewFace(source, sha, box, landmarks, score, jpeg, origin, vector)


def _check_detection(
    where: str, entry: dict, vector: np.ndarray, archive: zipfile.ZipFile, crop_name: re.Pattern
) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float, float], bytes]:
    """(box, landmarks, score, crop origin, JPEG crop) of an enrolled or library face entry, its
    unit embedding and its crop (named as ``crop_name`` says) checked; GalleryError from ``where``."""
    box = _numbers(entry["box"], 4)
    if box is None:
        raise GalleryError(f"{where}: box must be 4 finite numbers [x1, y1, x2, y2]")
    landmarks = entry["landmarks"]
    if not isinstance(landmarks, list) or len(landmarks) != 5 or any(_numbers(p, 2) is None for p in landmarks):
        raise GalleryError(f"{where}: landmarks must be 5 [x, y] points of finite numbers")
    score = entry["score"]
    if not _is_number(score) or not 0.0 <= float(score) <= 1.0:
        raise GalleryError(f"{where}: score must be a finite number in [0, 1]")
    origin = _numbers(entry["crop_origin"], 3)
    if origin is None or origin[2] <= 0:
        raise GalleryError(f"{where}: crop_origin must be 3 finite numbers [x0, y0, scale] with scale > 0")
    norm = float(np.linalg.norm(vector.astype(np.float64))) if np.isfinite(vector).all() else math.nan
    if not math.isfinite(norm):
        raise GalleryError(f"{where}: embedding is not finite")
    if norm < 0.5:
        raise GalleryError(f"{where}: embedding is (near) zero (norm {norm:.3g})")
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise GalleryError(f"{where}: embedding is not unit length (norm {norm:.6g})")
    name = entry["crop"]
    if not isinstance(name, str) or not crop_name.fullmatch(name):
        raise GalleryError(f"{where}: crop name {_shown(name)} is not {crop_name.pattern.split('/')[0]}/<n>.jpg")
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise GalleryError(f"{where}: crop {name} is missing from the archive") from None
    try:
        jpeg = archive.read(info)
    except _READ_ERRORS as exc:
        raise GalleryError(f"{where}: crop {name} cannot be read ({type(exc).__name__}: {exc})") from None
    _check_crop(f"{where}: crop {name}", jpeg)
    points = np.asarray(landmarks, float).reshape(5, 2)
    return np.asarray(box, float), points, float(score), (origin[0], origin[1], origin[2]), jpeg


def _check_library_photo(where: str, entry: object) -> LibraryPhoto:
    """One library photo entry of an export, checked."""
    if not isinstance(entry, dict):
        raise GalleryError(f"{where}: must be an object, not {type(entry).__name__}")
    for key in LIBRARY_PHOTO_KEYS:
        if key not in entry:
            raise GalleryError(f"{where}: missing {key!r}")
    path, sha, error, model_id = (entry[k] for k in ("path", "sha256", "error", "model_id"))
    if not isinstance(path, str) or not path or len(path) > MAX_TEXT or "\x00" in path:
        raise GalleryError(f"{where}: path must be a non-empty text of at most {MAX_TEXT} characters")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise GalleryError(f"{where}: sha256 must be 64 lowercase hex digits")
    for key in ("size", "mtime_ns", "faces"):
        if not _is_whole(entry[key]) or not 0 <= entry[key] < 2**63:
            raise GalleryError(f"{where}: {key} must be a whole number >= 0, not {_shown(entry[key])}")
    for key, value in (("error", error), ("model_id", model_id)):
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise GalleryError(f"{where}: {key} must be null or a text of at most {MAX_TEXT} characters")
    if not _is_number(entry["scanned_at"]):
        raise GalleryError(f"{where}: scanned_at must be a finite number")
    erased = entry["erased"]
    if erased is not None and (
        not isinstance(erased, list)
        or any(
            not isinstance(e, list) or len(e) != 5 or not (e[0] is None or _is_whole(e[0])) or _numbers(e[1:], 4) is None
            for e in erased
        )
    ):
        raise GalleryError(f"{where}: erased must be null or a list of [frame or null, x1, y1, x2, y2]")
    values = (entry["size"], entry["mtime_ns"], sha, entry["faces"], error, model_id, float(entry["scanned_at"]), erased)
    return LibraryPhoto(0, path, *values)


def _check_library_face(
    where: str, entry: object, vector: np.ndarray, archive: zipfile.ZipFile, model_id: str, paths: list[str]
) -> CarriedLibraryFace:
    """One library face entry of an export (its photo an index into ``paths``), checked; the
    person's name and the enrolled link are checked against the export by :func:`_check_library`."""
    if not isinstance(entry, dict):
        raise GalleryError(f"{where}: must be an object, not {type(entry).__name__}")
    for key in LIBRARY_FACE_KEYS:
        if key not in entry:
            raise GalleryError(f"{where}: missing {key!r}")
    photo, frame, cluster, person, assigned, copy = (
        entry[k] for k in ("photo", "frame", "cluster", "person", "assigned", "enrolled")
    )
    if not _is_whole(photo) or not 0 <= photo < len(paths):
        raise GalleryError(f"{where}: photo must be the number of a library photo (0 to {len(paths) - 1}), not {_shown(photo)}")
    if entry["model_id"] != model_id:
        raise GalleryError(f"{where}: embedded by {_shown(entry['model_id'])}; the export holds {model_id} embeddings")
    for key, value in (("frame", frame), ("cluster", cluster)):
        if value is not None and (not _is_whole(value) or not 0 <= value < 2**62):
            raise GalleryError(f"{where}: {key} must be null or a whole number >= 0, not {_shown(value)}")
    if person is not None:
        try:
            person = normalize_name(person)
        except GalleryError as exc:
            raise GalleryError(f"{where}: person: {exc}") from None
    if (person is None) != (assigned is None) or (assigned is not None and assigned not in ASSIGNED):
        raise GalleryError(f"{where}: assigned must be {' or '.join(ASSIGNED)} for a named face and null otherwise")
    if copy is not None and (person is None or not isinstance(copy, str) or not _SHA256.fullmatch(copy)):
        raise GalleryError(f"{where}: enrolled must be null or, for a named face, its enrolled copy's image_sha256")
    box, landmarks, score, origin, jpeg = _check_detection(where, entry, vector, archive, _LIBRARY_CROP_NAME)
    face = NewLibraryFace(box, landmarks, score, jpeg, origin, vector, frame, person)
    return CarriedLibraryFace(paths[photo], face, model_id, cluster, assigned, copy)


def _check_library(
    path: Path,
    manifest: dict,
    archive: zipfile.ZipFile,
    model_id: str,
    dim: int,
    faces: list[tuple[str, NewFace]],
    people: set[str],
) -> CarriedLibrary:
    """The photo library of an export (none in version 1 files), every entry checked: a library
    face's person must be enrolled in the export or in this gallery (``people``: name keys), its
    link must name an enrolled face of the export by image_sha256 and of the same person."""
    raw = manifest.get("library")
    if raw is None:
        return CarriedLibrary([], [], [])
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), list) for k in ("photos", "faces", "erased")):
        raise GalleryError(f"{path}: manifest library must be an object of photos, faces and erased lists")
    photos = [_check_library_photo(f"{path}: library photo {n}", entry) for n, entry in enumerate(raw["photos"])]
    paths = [photo.path for photo in photos]
    if len(set(paths)) != len(paths):
        repeated = next(p for n, p in enumerate(paths) if p in paths[:n])
        raise GalleryError(
            f"{path}: library photo {paths.index(repeated, paths.index(repeated) + 1)}: path repeats an earlier one's"
        )
    entries = raw["faces"]
    try:
        info = archive.getinfo(LIBRARY_VECTORS) if entries else None
        if info is not None and info.file_size > len(entries) * dim * 4 + 2**16:
            raise GalleryError(f"{path}: {LIBRARY_VECTORS} is {info.file_size:,} bytes; {len(entries)} faces need far less")
        data = archive.read(info) if info is not None else None
    except _READ_ERRORS as exc:
        raise GalleryError(f"{path}: {LIBRARY_VECTORS} cannot be read ({type(exc).__name__}: {exc})") from None
    vectors = _read_embeddings(path, data, len(entries), dim, LIBRARY_VECTORS) if data is not None else None
    enrolled = {face.image_sha256: name_key(person) for person, face in faces}
    known = people | set(enrolled.values())
    carried, crops = [], set()
    for n, entry in enumerate(entries):
        where = f"{path}: library face {n}"
        face = _check_library_face(where, entry, vectors[n], archive, model_id, paths)  # type: ignore[index]
        if entry["crop"] in crops:
            raise GalleryError(f"{where}: crop {entry['crop']} is another library face's too")
        crops.add(entry["crop"])
        person = face.face.person
        if person is not None and name_key(person) not in known:
            raise GalleryError(f"{where}: person {person!r} is enrolled neither in the export nor in this gallery")
        if face.enrolled_sha256 is not None and enrolled.get(face.enrolled_sha256) != name_key(person or ""):
            raise GalleryError(
                f"{where}: enrolled copy {face.enrolled_sha256[:12]}... is no enrolled face of {person!r} in the export"
            )
        carried.append(face)
    erased = []
    for n, entry in enumerate(raw["erased"]):
        if (
            not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str) or not _SHA256.fullmatch(entry[0])
            or not _is_whole(entry[1]) or not 0 < entry[1] < 2**31
        ):  # fmt: skip
            raise GalleryError(f"{path}: library erased {n}: must be [sha256 (64 lowercase hex digits), faces >= 1]")
        erased.append((entry[0], entry[1]))
    return CarriedLibrary(photos, carried, erased)


def _read_export(path: Path, store: TruthStore) -> _Export:
    """Open, size-check and validate a whole export for ``store`` (its model first, the cheap
    refusal); GalleryError naming ``path`` otherwise. Writes nothing."""
    try:
        archive = zipfile.ZipFile(opened_file(path, store.key))
    except FileNotFoundError:
        raise GalleryError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise GalleryError(f"{path}: not a facesys gallery export ({exc})") from None
    with archive:
        _check_sizes(path, archive)
        manifest = _read_manifest(path, archive)
        model_id, model_name, weights, dim = _check_model(path, manifest)
        if model_id is not None and store.model_id is not None:
            if store.model_id != model_id:
                raise GalleryError(f"{path}: export holds {model_id} embeddings; this gallery holds {store.model_id}")
            if store.dim != dim:
                raise GalleryError(f"{path}: export holds {dim}-D embeddings; this gallery holds {store.dim}-D ones")
        settings = _check_settings(path, manifest)
        entries = manifest.get("faces")
        if not isinstance(entries, list):
            raise GalleryError(f"{path}: manifest faces must be a list, not {type(entries).__name__}")
        if model_id is None:
            return _Export(None, "", "", 0, settings, [], CarriedLibrary([], [], []))
        try:
            info = archive.getinfo("embeddings.npy")
            if info.file_size > len(entries) * dim * 4 + 2**16:
                raise GalleryError(f"{path}: embeddings.npy is {info.file_size:,} bytes; {len(entries)} faces need far less")
            data = archive.read(info)
        except _READ_ERRORS as exc:
            raise GalleryError(f"{path}: not a facesys gallery export ({type(exc).__name__}: {exc})") from None
        vectors = _read_embeddings(path, data, len(entries), dim)
        faces: list[tuple[str, NewFace]] = []
        first_row: dict[str, int] = {}  # image sha -> first face with it
        crop_row: dict[str, int] = {}  # crop name -> the face that uses it
        spelling: dict[str, str] = {}  # name key -> spelling in this export
        for row, entry in enumerate(entries):
            person, face = _check_face(path, row, entry, vectors[row], archive)
            if face.image_sha256 in first_row:
                raise GalleryError(f"{path}: face {row}: image_sha256 repeats face {first_row[face.image_sha256]}'s")
            first_row[face.image_sha256] = row
            if entry["crop"] in crop_row:
                raise GalleryError(f"{path}: face {row}: crop {entry['crop']} is face {crop_row[entry['crop']]}'s too")
            crop_row[entry["crop"]] = row
            if spelling.setdefault(name_key(person), person) != person:
                raise GalleryError(f"{path}: face {row}: person {person!r} is spelled {spelling[name_key(person)]!r} elsewhere")
            faces.append((person, face))
        people = {name_key(name) for name, _ in store.people()}
        library = _check_library(path, manifest, archive, model_id, dim, faces, people)
    return _Export(model_id, model_name, weights, dim, settings, faces, library)


def import_gallery(store: TruthStore, path: str | Path, action: str = "import") -> tuple[int, int]:
    """Add the faces of an export to ``store``; returns (added, skipped as already present). The
    audit log names the faces added, per person, as ``action`` ("import"; "repair" for a rebuild).

    The store must be empty or hold embeddings of the export's model and dimension. The whole
    archive is validated first (sizes before reading, manifest fields, every face, embedding and
    crop); a bad one raises one GalleryError naming the file and the problem, and nothing is
    written. The new faces are then added in ONE transaction.

    - A face whose photo (image_sha256) is already in the store is skipped, even when it is
      enrolled there under a different person: the gallery keeps its own answer and the import
      goes on.
    - The same image_sha256 (or crop entry) twice in one export is refused: a real export never
      holds it, so the file was altered.
    - A name that equals an existing person's ignoring case but is spelled differently is refused.
    - Into a gallery bound to no model yet, the export's model and its settings (calibrated
      thresholds, forced index kind, retention periods) are restored; a gallery that has a model keeps its own settings.
      Binding and settings are written just before the faces' transaction and undone (best effort)
      when that transaction fails.
    """
    path = Path(path)
    export = _read_export(path, store)
    if export.model_id is None:
        return 0, 0
    bind = store.model_id is None
    existing = {name_key(name): name for name, _ in store.people()}
    new: list[tuple[str, NewFace]] = []
    skipped = 0
    for row, (person, face) in enumerate(export.faces):
        if store.person_of_image(face.image_sha256) is not None:
            skipped += 1
            continue
        if existing.setdefault(name_key(person), person) != person:
            raise GalleryError(
                f"{path}: face {row}: person {person!r} is named {existing[name_key(person)]!r} in this gallery; "
                "rename one of them first"
            )
        new.append((person, face))
    restorable = (*MODEL_KEYS, *THRESHOLD_SETTINGS, INDEX_KIND_SETTING, *RETENTION_SETTINGS.values())
    before = {key: store.setting(key) for key in restorable} if bind else {}
    if bind:
        store.set_model(export.model_id, export.model_name, export.weights_sha256, export.dim)
    try:
        if bind:
            for key, value in export.settings.items():
                store.set_setting(key, None if value == "auto" else value)  # "auto" is the default: no setting
        library = export.library
        if library.photos or library.erased:
            store.add_faces_and_library(new, export.model_id, library, action=action)
        elif new:
            store.add_faces(new, export.model_id, action=action)
    except BaseException:
        if bind:  # best effort: leave the gallery bound to no model, as it was
            try:
                for key, value in before.items():
                    store.set_setting(key, value)
            except Exception:  # the first error is the one to report
                pass
        raise
    return len(new), skipped
