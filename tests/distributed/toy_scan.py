"""A toy job shaped like ``scan --ray``: photo files hashed and "embedded" by Ray tasks in
batches, each result written to a real gallery (``TruthStore.record_photo``) by the driver,
idempotently by content hash. No face pipeline: the faces are synthetic, seeded by the photo's
sha256 (tests/gallery/conftest.py ``face``), so a recomputed batch gives the same faces.

Each attempt of a batch leaves ``<attempts>/<first photo>.<node id>.<uuid>`` with ``done`` appended
when it finishes, so a test sees which attempts ran where and which a kill cut short.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from facesys.gallery.store import TruthStore
from facesys.gallery.store.records import NewLibraryFace, ScannedPhoto
from tests.gallery.conftest import MODEL, face

MAX_FACES = 3  # a photo holds sha256 % 4 synthetic faces


def write_photos(folder: Path, count: int) -> list[Path]:
    """``count`` small distinct files standing for photos."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:04d}.jpg"
        path.write_bytes(f"photo {i}\n".encode() * (i % 7 + 1))
        paths.append(path)
    return paths


def faces_of(sha256: str) -> list[NewLibraryFace]:
    """The synthetic faces of a photo: a pure function of its content hash."""
    seed = int(sha256[:12], 16)
    found = []
    for k in range(seed % (MAX_FACES + 1)):
        f = face(seed * (MAX_FACES + 1) + k)
        found.append(NewLibraryFace(f.box, f.landmarks, f.score, f.crop_jpeg, f.crop_origin, f.embedding))
    return found


def embed_batch(paths: Sequence[str], attempts: str, delay: float) -> list[tuple[str, int, int, str, list[NewLibraryFace]]]:
    """One batch on a worker: (path, size, mtime_ns, sha256, faces) per photo, after ``delay``
    seconds per photo (the time a detector would take); logs the attempt under ``attempts``."""
    import ray

    log = Path(attempts) / f"{Path(paths[0]).stem}.{ray.get_runtime_context().get_node_id()}.{uuid.uuid4().hex[:8]}"
    log.write_text("started\n")
    out = []
    for path in paths:
        data = Path(path).read_bytes()
        stat = Path(path).stat()
        sha = hashlib.sha256(data).hexdigest()
        time.sleep(delay)
        out.append((path, stat.st_size, stat.st_mtime_ns, sha, faces_of(sha)))
    with log.open("a") as f:
        f.write("done\n")
    return out


class ToyEmbedActor:
    """A pool member (as the real scan's pipeline actors): :func:`embed_batch` per call."""

    def embed(self, paths: Sequence[str], attempts: str, delay: float) -> list[tuple[str, int, int, str, list[NewLibraryFace]]]:
        return embed_batch(paths, attempts, delay)


class GalleryWriter:
    """The driver's side: records each photo of a result once by its content hash; a photo already
    recorded with the same path and sha256 is left alone (a recomputed batch re-writes nothing)."""

    def __init__(self, store: TruthStore):
        self.store = store
        self.known = {photo.path: photo.sha256 for photo in store.library_photos()}
        self.written = 0
        self.skipped = 0

    def __call__(self, _batch: Sequence[str], result: list[tuple[str, int, int, str, list[NewLibraryFace]]]) -> None:
        for path, size, mtime_ns, sha, faces in result:
            if self.known.get(path) == sha:
                self.skipped += 1
                continue
            self.store.record_photo(ScannedPhoto(path, size, mtime_ns, sha), faces, MODEL)
            self.known[path] = sha
            self.written += 1


def attempts_by_batch(folder: Path) -> dict[str, list[tuple[str, bool]]]:
    """first photo of a batch -> [(node id, finished)] of its attempts."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for log in folder.iterdir():
        first, node, _ = log.name.split(".")
        found.setdefault(first, []).append((node, "done" in log.read_text()))
    return found
