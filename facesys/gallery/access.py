"""A data subject's access request: everything a gallery holds about one person, in one zip
(``facesys gallery export --person NAME PATH``).

Layout (format ``facesys-person-export``, version 1), no pickle:

- ``person.json``: format, version, exported_at, gallery model (model_id, model_name, dim),
  ``person`` {name, created_at}, ``faces``: every enrolled face {id, source, image_sha256, box,
  landmarks, score, crop_origin, model_id, created_at, sharpness, from_library, crop, embedding},
  ``library_faces``: their photo-library faces {id, how ("named" by the user, "attached" by a
  scan's match, "same_face": the same face as one of their enrolled photos), path, sha256,
  scanned_at, frame, box, landmarks, score, crop_origin, model_id, cluster, assigned,
  enrolled_face_id, crop, embedding}, and ``events``: the audit events about them, oldest first
  ({at, actor, action, detail});
- ``faces/<n>.jpg`` and ``faces/<n>.npy``: each enrolled face's stored JPEG crop and its
  embedding ((dim,) float32, saved without pickle), named in the face's ``crop`` and ``embedding``;
- ``library/<n>.jpg`` and ``library/<n>.npy``: the same for each library face.

The archive is built in memory (:func:`person_archive`) and written by :func:`write_export`
alone, atomically (a temporary file beside it, then replaced): a failure leaves nothing. From an
encrypted gallery it is sealed with the gallery's key unless the caller asks for it in clear (the
copy handed to the data subject: ``--clear``). The
service hands the same bytes to an admin (``GET /v1/export/people/{name}``).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from facesys.errors import GalleryError
from facesys.gallery.sealing import GalleryKey, sealed_output
from facesys.gallery.store import TruthStore
from facesys.gallery.store.subjects import HeldAbout

FORMAT, VERSION = "facesys-person-export", 1


def _npy(blob: bytes) -> bytes:
    """Stored embedding bytes (little-endian float32) as a .npy file, without pickle."""
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(blob, "<f4"), allow_pickle=False)
    return buffer.getvalue()


def person_export(held: HeldAbout, meta: dict[str, str]) -> bytes:
    """The zip (bytes) of everything in ``held``; ``meta``: the store's, for its model."""
    files: dict[str, bytes] = {}

    def entries(rows: list[dict], folder: str) -> list[dict]:
        out = []
        for n, row in enumerate(rows):
            entry = {key: value for key, value in row.items() if key not in ("crop", "embedding")}
            files[f"{folder}/{n}.jpg"], files[f"{folder}/{n}.npy"] = row["crop"], _npy(row["embedding"])
            out.append(entry | {"crop": f"{folder}/{n}.jpg", "embedding": f"{folder}/{n}.npy"})
        return out

    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.time(),
        "model": {"model_id": meta.get("model_id"), "model_name": meta.get("model_name"), "dim": int(meta.get("dim", 0))},
        "person": {"name": held.name, "created_at": held.created_at},
        "faces": entries(held.faces, "faces"),
        "library_faces": entries(held.library_faces, "library"),
        "events": [{"at": e.at, "actor": e.actor, "action": e.action, "detail": e.detail} for e in held.events],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("person.json", json.dumps(document, ensure_ascii=False, indent=1))
        for name, data in files.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def write_export(path: str | Path, data: bytes, key: GalleryKey | None = None) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, flushed to disk, then
    renamed over ``path``; on failure the temporary file is removed and GalleryError names
    ``path``. The one place an export of personal data reaches the disk. ``key``: sealed with it
    (facesys/gallery/sealing.py), never in clear on disk, not even in the temporary file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb") as file:
            with sealed_output(file, key) as out:
                out.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise GalleryError(f"{path}: cannot write the export ({exc.strerror or exc})") from None


def person_archive(store: TruthStore, name: str) -> tuple[HeldAbout, bytes]:
    """Everything ``store`` holds about ``name``, read in one snapshot, and its zip (bytes).
    UnknownPersonError when nobody has that name."""
    with store.reading():
        held, meta = store.held_about(name), store.meta()
    return held, person_export(held, meta)


def export_person(store: TruthStore, name: str, path: str | Path) -> HeldAbout:
    """Write everything ``store`` holds about ``name`` to the zip ``path``; returns what was written.
    UnknownPersonError (nothing written) when nobody has that name."""
    held, data = person_archive(store, name)
    write_export(path, data)
    return held
