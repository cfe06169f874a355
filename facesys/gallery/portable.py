"""Export a gallery to a portable file and import it back: a zip of JSON, .npy and JPEG (no pickle).

Layout of the zip (format ``facesys-gallery-export``, version 1):

- ``manifest.json``: format, version, model_id, model_name, weights_sha256, dim, metric,
  exported_at, and ``faces``: a list of {person, source, image_sha256, box, landmarks, score,
  crop_origin, created_at, crop} in the row order of the embeddings;
- ``embeddings.npy``: (N, dim) float32 little-endian, saved without pickle;
- ``crops/<n>.jpg``: each face's stored crop.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from facesys.errors import GalleryError
from facesys.gallery.store import GalleryStore, NewFace

FORMAT, VERSION = "facesys-gallery-export", 1
MAX_MANIFEST_BYTES = 512 * 2**20


def export_gallery(store: GalleryStore, path: str | Path) -> int:
    """Write every face of ``store`` to the zip ``path`` (atomically); returns the number of faces."""
    path = Path(path)
    meta = store.meta()
    with store.reading():
        records = store.faces()
        _, vectors, _ = store.embeddings()  # rows in face-id order, as faces()
        crops = {face_id: jpeg for face_id, jpeg, _, _ in store.crops()}
    faces = []
    for row, record in enumerate(records):
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
        "faces": faces,
    }
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
            buffer = io.BytesIO()
            np.save(buffer, vectors.astype("<f4"), allow_pickle=False)
            archive.writestr("embeddings.npy", buffer.getvalue())
            for row, record in enumerate(records):
                archive.writestr(f"crops/{row}.jpg", crops[record.id], compress_type=zipfile.ZIP_STORED)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise GalleryError(f"{path}: cannot write the export ({exc.strerror})") from None
    return len(records)


def _read_export(path: Path) -> tuple[dict, np.ndarray, zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise GalleryError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise GalleryError(f"{path}: not a facesys gallery export ({exc})") from None
    try:
        info = archive.getinfo("manifest.json")
        if info.file_size > MAX_MANIFEST_BYTES:
            raise GalleryError(f"{path}: manifest is implausibly large")
        manifest = json.loads(archive.read(info))
        vectors = np.load(io.BytesIO(archive.read("embeddings.npy")), allow_pickle=False)
    except (KeyError, ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        archive.close()
        raise GalleryError(f"{path}: not a facesys gallery export ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        archive.close()
        raise GalleryError(f"{path}: not a facesys gallery export")
    if manifest.get("version", 0) > VERSION:
        archive.close()
        raise GalleryError(f"{path}: export version {manifest['version']} is newer than this facesys")
    faces = manifest.get("faces", [])
    if vectors.dtype != np.float32 or vectors.ndim != 2 or len(vectors) != len(faces) or vectors.shape[1] != manifest.get("dim"):
        archive.close()
        raise GalleryError(f"{path}: embeddings do not match the manifest")
    return manifest, vectors, archive


def import_gallery(store: GalleryStore, path: str | Path) -> tuple[int, int]:
    """Add the faces of an export to ``store``; returns (added, skipped as already present).

    The store must be empty or hold embeddings of the export's model.
    """
    path = Path(path)
    manifest, vectors, archive = _read_export(path)
    with archive:
        if store.model_id is None:
            store.set_model(manifest["model_id"], manifest["model_name"], manifest["weights_sha256"], manifest["dim"])
        elif store.model_id != manifest["model_id"]:
            raise GalleryError(f"{path}: export holds {manifest['model_id']} embeddings; this gallery holds {store.model_id}")
        added = skipped = 0
        for face, vector in zip(manifest["faces"], vectors, strict=True):
            if store.person_of_image(face["image_sha256"]) is not None:
                skipped += 1
                continue
            try:
                crop = archive.read(face["crop"])
                new = NewFace(
                    str(face["source"]),
                    str(face["image_sha256"]),
                    np.asarray(face["box"], float),
                    np.asarray(face["landmarks"], float),
                    float(face["score"]),
                    crop,
                    tuple(float(v) for v in face["crop_origin"]),
                    vector,
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise GalleryError(f"{path}: face {added + skipped} is malformed ({exc})") from None
            if not crop.startswith(b"\xff\xd8"):
                raise GalleryError(f"{path}: {face['crop']} is not a JPEG")
            store.add_face(str(face["person"]), new, manifest["model_id"])
            added += 1
    return added, skipped
