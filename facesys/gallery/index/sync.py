"""Keeping a vector index in step with its truth store, in memory and in saved files.

An index is used only when it provably belongs to the store's current state: its header names
the store's gallery id, generation and model, its payload checksum holds, its size equals the
store's face count, and a sample of its vectors equals the store's. A stale index of the same
gallery and model follows the store's change log (faces added and removed since its
generation); anything else is rebuilt from the store. Saved files are
``index-<gallery id>-<generation>-<model tag>.<backend>``; files of other galleries, older
generations and temporary files left by killed processes are deleted when an index is saved.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from facesys.gallery.index import DEFAULT_INDEX_BACKEND, index_class
from facesys.gallery.index.base import TEMPORARY_PREFIX, IndexHeader, VectorIndex
from facesys.gallery.store.base import TruthStore

SAMPLE = 16  # vectors compared with the store when a saved index is loaded
INDEX_KIND_SETTING = "index_kind"


def index_file(folder: Path, header: IndexHeader) -> Path:
    """Where the index described by ``header`` is saved in ``folder``."""
    tag = hashlib.sha1(header.model_id.encode()).hexdigest()[:8]
    return folder / f"index-{header.gallery_id}-{header.generation}-{tag}.{header.backend}"


def current_header(store: TruthStore, backend: str = DEFAULT_INDEX_BACKEND, known: IndexHeader | None = None) -> IndexHeader:
    """The header an index of ``store``'s current state has (call inside ``store.reading()``).
    ``known``: a header made earlier; when the store is still at its generation, its face count is
    reused instead of counting again (a count of 1M rows costs a database server ~0.1 s)."""
    meta = store.meta()
    gallery_id, generation, model_id = meta["gallery_id"], int(meta["generation"]), str(meta.get("model_id"))
    if known is not None and (known.gallery_id, known.generation, known.model_id) == (gallery_id, generation, model_id):
        faces = known.count
    else:
        faces = store.face_count()
    kind = index_class(backend).chosen_kind(faces, meta.get(INDEX_KIND_SETTING) or "auto")
    return IndexHeader(gallery_id, generation, model_id, backend, kind, faces)


def belongs(index: VectorIndex | None, header: IndexHeader) -> bool:
    """Whether ``index`` was made for the same store state as ``header``."""
    return index is not None and index.header == header


def agrees_with(index: VectorIndex, store: TruthStore, sample: int = SAMPLE) -> bool:
    """A cheap content check: ``sample`` of the index's vectors (spread over its ids) equal the store's."""
    ids = index.ids()
    if len(ids) == 0:
        return True
    chosen = ids[np.linspace(0, len(ids) - 1, min(sample, len(ids))).astype(int)]
    names = store.names_of(chosen)
    return len(names) == len(chosen) and np.allclose(index.vectors(chosen), store.vectors(chosen), atol=1e-6)


def synced(
    store: TruthStore,
    folder: Path | None,
    cached: VectorIndex | None = None,
    backend: str = DEFAULT_INDEX_BACKEND,
    save: bool = True,
) -> VectorIndex:
    """The index of ``store``'s current state: ``cached`` (updated in place when it can follow),
    one saved in ``folder``, or a new one; saved in ``folder`` when it changed and ``save``."""
    cls = index_class(backend)
    with store.reading():
        header = current_header(store, backend, cached.header if cached is not None else None)
        if belongs(cached, header):
            return cached
        index = _followed(store, cached, header)
        if index is None and folder is not None:
            saved = cls.load(index_file(folder, header))
            if belongs(saved, header) and agrees_with(saved, store):
                return saved
            index = _followed(store, _newest_saved(cls, folder, header), header)
        if index is None:
            ids, vectors, _ = store.embeddings()
            index = cls.build(ids, vectors, header.kind)
        index.header = header
    if folder is not None and save:
        write(index, folder)
    return index


def _followed(store: TruthStore, index: VectorIndex | None, header: IndexHeader) -> VectorIndex | None:
    """``index`` (of the same gallery and model, an older generation) brought up to ``header``'s
    state through the store's change log, or None when it cannot be."""
    if index is None or index.header is None:
        return None
    old = index.header
    if (old.gallery_id, old.model_id, old.backend) != (header.gallery_id, header.model_id, header.backend):
        return None
    if old.generation > header.generation:
        return None
    changes = store.changes_since(old.generation)
    if changes is None:
        return None
    if not index.follow(changes.added, store.vectors(changes.added), changes.removed, header.kind) or len(index) != header.count:
        return None
    return index


def _newest_saved(cls: type[VectorIndex], folder: Path, header: IndexHeader) -> VectorIndex | None:
    """The newest readable saved index of this gallery and model, or None."""
    prefix = f"index-{header.gallery_id}-"
    candidates = []
    for path in folder.glob(f"{prefix}*.{header.backend}"):
        generation = path.name[len(prefix) :].split("-")[0]
        if generation.isdigit() and int(generation) < header.generation:
            candidates.append((int(generation), path))
    for _, path in sorted(candidates, reverse=True):
        index = cls.load(path)
        if index is not None and index.header.gallery_id == header.gallery_id:
            return index
    return None


def write(index: VectorIndex, folder: Path) -> None:
    """Save ``index`` and delete every other index file and stale temporary file in ``folder``.
    A read-only or full folder is not an error: the index is simply rebuilt next time, and the
    older files are deleted all the same (they may hold a removed person's vectors)."""
    path = index_file(folder, index.header)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # a database gallery's index lives in a cache folder
        index.save(path)
    except OSError:
        clean(folder)
        return
    clean(folder, keep=path)


def clean(folder: Path, keep: Path | None = None) -> list[Path]:
    """Delete index files other than ``keep`` and temporary files of processes no longer alive;
    returns what was deleted."""
    removed = []
    for path in [*folder.glob("index-*"), *folder.glob(f"{TEMPORARY_PREFIX}*.tmp")]:
        if path == keep or (path.suffix == ".tmp" and _writer_alive(path)):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _writer_alive(temporary: Path) -> bool:
    """Whether the process that is writing ``temporary`` (pid in its name) still runs."""
    digits = temporary.name[len(TEMPORARY_PREFIX) :].split("-")[0]
    if not digits.isdigit() or int(digits) == os.getpid():
        return False
    try:
        os.kill(int(digits), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def problems(store: TruthStore, folder: Path | None, backend: str = DEFAULT_INDEX_BACKEND, required: bool = True) -> list[str]:
    """How the saved index disagrees with the store (empty when it agrees exactly): every id and
    every vector is compared. ``required=False`` (a database gallery's index, a local cache that
    other servers' changes make stale) makes a missing index of the current state no problem."""
    if folder is None:
        return []
    cls = index_class(backend)
    with store.reading():
        header = current_header(store, backend)
        path = index_file(folder, header)
        if not path.is_file():
            if not required:
                return []
            return [
                f"index: no index for generation {header.generation} (it is rebuilt on the next search, or by 'gallery repair')"
            ]
        index = cls.load(path)
        if index is None:
            return [f"index: {path.name} is unreadable or damaged (checksum)"]
        if index.header != header:
            return [f"index: {path.name} was made for another state of the gallery"]
        ids, vectors, _ = store.embeddings()
    if not np.array_equal(index.ids(), ids):
        return ["index: face ids differ from the database's"]
    if len(ids) and not np.allclose(index.vectors(ids), vectors, atol=1e-6):
        return ["index: vectors differ from the database's embeddings"]
    return []
