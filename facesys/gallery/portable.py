"""Export a gallery to a portable file and import it back: a zip of JSON, .npy and JPEG (no pickle).

Layout of the zip (format ``facesys-gallery-export``, version 1):

- ``manifest.json``: format, version, model_id, model_name, weights_sha256, dim, metric,
  exported_at, ``faces``: a list of {person, source, image_sha256, box, landmarks, score,
  crop_origin, created_at, crop} in the row order of the embeddings, and the optional
  ``settings``: {verify_threshold, identify_threshold, index_kind}, those the gallery had set
  (files written before settings were exported simply have none);
- ``embeddings.npy``: (N, dim) float32 little-endian, saved without pickle;
- ``crops/<n>.jpg``: each face's stored crop.

An export holds faces and settings only: not the API keys nor the audit log, which belong to the
gallery they were made in (``Gallery.repair`` carries those over itself), nor the photo library
(``library_photos`` / ``library_faces``: unnamed faces found by ``facesys scan``; a scan of the
same folders rebuilds them, and named library faces are exported as the enrolled faces they were
copied to). ``Gallery.repair`` of a damaged database therefore loses the library too.

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
from facesys.gallery.store import NewFace, TruthStore, name_key, normalize_name

FORMAT, VERSION = "facesys-gallery-export", 1
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


def export_gallery(store: TruthStore, path: str | Path, on_unreadable=None) -> int:
    """Write every face of ``store`` to the zip ``path`` (atomically); returns the number of faces.

    The calibrated thresholds and a forced index kind travel in the manifest's ``settings``.

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
        return settings

    try:
        with store.reading():
            meta = store.meta()
            records = store.faces()
            _, vectors, _ = store.embeddings()  # rows in face-id order, as faces()
            crops = {face_id: jpeg for face_id, jpeg, _, _ in store.crops()}
            settings = read_settings()
        rows = [(record, vectors[row], crops[record.id]) for row, record in enumerate(records)]
        unreadable = 0
    except (GalleryError, ValueError, KeyError):  # a damaged page or row: salvage what can be read
        meta = store.meta()
        settings = read_settings()
        salvaged, unreadable = store.salvage()
        rows = []
        spelling: dict[str, str] = {}
        seen: set[str] = set()

        class OneCrop:  # what _check_face reads a crop from, so each row is checked exactly as import will
            def __init__(self, jpeg: bytes):
                self.jpeg = jpeg

            def getinfo(self, name: str) -> str:
                return name

            def read(self, _name: str) -> bytes:
                return self.jpeg

        for record, vector, jpeg in salvaged:
            entry = {
                **{key: getattr(record, key) for key in ("person", "source", "image_sha256", "box", "landmarks", "score")},
                **{"crop_origin": record.crop_origin, "created_at": record.created_at, "crop": f"crops/{len(rows)}.jpg"},
            }
            try:
                person, _ = _check_face(path, record.id, entry, vector, OneCrop(jpeg))  # type: ignore[arg-type]
            except GalleryError:
                unreadable += 1
                continue
            if record.image_sha256 in seen or spelling.setdefault(name_key(person), person) != person:
                unreadable += 1  # a damaged page can hold a stale copy of a row: keep the first
                continue
            seen.add(record.image_sha256)
            rows.append((record, vector, jpeg))
        dim = int(meta.get("dim", 0))
        vectors = np.stack([vector for _, vector, _ in rows]) if rows else np.zeros((0, dim), np.float32)
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
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **{k: meta.get(k) for k in ("model_id", "model_name", "weights_sha256", "metric")},
        "dim": int(meta.get("dim", 0)),
        "exported_at": time.time(),
        "settings": settings,
        "faces": faces,
    }
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
            buffer = io.BytesIO()
            np.save(buffer, vectors.astype("<f4"), allow_pickle=False)
            archive.writestr("embeddings.npy", buffer.getvalue())
            for row, (_, _, jpeg) in enumerate(rows):
                archive.writestr(f"crops/{row}.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
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
        if info.filename.startswith("crops/") and info.file_size > MAX_CROP_BYTES:
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


def _read_embeddings(path: Path, data: bytes, count: int, dim: int) -> np.ndarray:
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
        raise GalleryError(f"{path}: embeddings.npy is not a plain .npy array ({exc})") from None
    if dtype != np.dtype("<f4") or tuple(shape) != (count, dim):
        raise GalleryError(
            f"{path}: embeddings.npy holds {tuple(shape)} {dtype} values; the manifest needs ({count}, {dim}) float32 "
            f"({count} faces of dimension {dim})"
        )
    offset = buffer.tell()
    if len(data) - offset != count * dim * 4:
        raise GalleryError(f"{path}: embeddings.npy is truncated or has trailing bytes")
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
    created = entry.get("created_at")
    if created is not None and not _is_number(created):
        raise GalleryError(f"{where}: created_at must be a finite number")
    norm = float(np.linalg.norm(vector.astype(np.float64))) if np.isfinite(vector).all() else math.nan
    if not math.isfinite(norm):
        raise GalleryError(f"{where}: embedding is not finite")
    if norm < 0.5:
        raise GalleryError(f"{where}: embedding is (near) zero (norm {norm:.3g})")
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise GalleryError(f"{where}: embedding is not unit length (norm {norm:.6g})")
    name = entry["crop"]
    if not isinstance(name, str) or not _CROP_NAME.fullmatch(name):
        raise GalleryError(f"{where}: crop name {_shown(name)} is not crops/<n>.jpg")
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise GalleryError(f"{where}: crop {name} is missing from the archive") from None
    try:
        jpeg = archive.read(info)
    except _READ_ERRORS as exc:
        raise GalleryError(f"{where}: crop {name} cannot be read ({type(exc).__name__}: {exc})") from None
    _check_crop(f"{where}: crop {name}", jpeg)
    face = NewFace(
        source,
        sha,
        np.asarray(box, float),
        np.asarray(landmarks, float).reshape(5, 2),
        float(score),
        jpeg,
        (origin[0], origin[1], origin[2]),
        vector,
    )
    return person, face


def _read_export(path: Path, store: TruthStore) -> _Export:
    """Open, size-check and validate a whole export for ``store`` (its model first, the cheap
    refusal); GalleryError naming ``path`` otherwise. Writes nothing."""
    try:
        archive = zipfile.ZipFile(path)
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
            return _Export(None, "", "", 0, settings, [])
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
    return _Export(model_id, model_name, weights, dim, settings, faces)


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
      thresholds, forced index kind) are restored; a gallery that has a model keeps its own settings.
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
    restorable = (*MODEL_KEYS, *THRESHOLD_SETTINGS, INDEX_KIND_SETTING)
    before = {key: store.setting(key) for key in restorable} if bind else {}
    if bind:
        store.set_model(export.model_id, export.model_name, export.weights_sha256, export.dim)
    try:
        if bind:
            for key, value in export.settings.items():
                store.set_setting(key, None if value == "auto" else value)  # "auto" is the default: no setting
        if new:
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
