"""Keeping a vector index in step with its truth store, in memory and in saved files.

An index is used only when it provably belongs to the store's current state: its header names
the store's gallery id, generation and model, its payload checksum holds, its size equals the
store's face count, and a sample of its vectors equals the store's. A stale index of the same
gallery and model follows the store's change log (faces added and removed since its
generation); anything else is rebuilt from the store. Saved files are
``index-<gallery id>-<generation>-<model tag>.<backend>``; files of other galleries, older
generations and temporary files left by killed processes are deleted when an index is saved.

Erasure: a saved file may hold the vectors of faces removed after its generation. Whoever brings
an index up to a new generation (the remover itself, a service told of the change, any process
opening the gallery: see :func:`erase_removed`) overwrites and deletes every such file, and
temporary files of dead writers, whether it saves its own index or not. A file of an older
generation with no removal since holds only faces still enrolled, and is kept when not saving.
Writing and erasing hold a lock on the folder (``flock`` on the folder itself), and a writer
checks the store again under it before writing, so an index read just before a removal committed
is never saved after the removal's own erasure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facesys.gallery.index import DEFAULT_INDEX_BACKEND, index_class
from facesys.gallery.index.base import TEMPORARY_PREFIX, IndexHeader, VectorIndex
from facesys.gallery.sealing import Sealer
from facesys.gallery.store.base import TruthStore

SAMPLE = 16  # vectors compared with the store when a saved index is loaded
# saved index file -> the generation up to which no face it holds was removed (in this process)
_clean_up_to: dict[str, int] = {}
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
        loaded = False
        if index is None and folder is not None:
            saved = cls.load(index_file(folder, header), store.sealer)
            if belongs(saved, header) and agrees_with(saved, store):
                index, loaded = saved, True
            else:
                index = _followed(store, _newest_saved(cls, folder, header, store.sealer), header)
        if index is None:
            ids, vectors, _ = store.embeddings()
            index = cls.build(ids, vectors, header.kind)
        index.header = header
    if folder is not None:
        keep(index, store, folder, save=save and not loaded)
    return index


def keep(index: VectorIndex, store: TruthStore, folder: Path, save: bool = True) -> None:
    """Save ``index`` in ``folder`` when ``save`` (deleting every other index file), and in any
    case erase the saved files that may hold faces removed since (:func:`erase_removed`), all
    under the folder's lock. An index of a state older than a removal that committed meanwhile
    is not saved: a remover erases after its commit, under the same lock, so whichever comes
    first, no file of the removed faces is left once the removal returns."""
    if save:
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)  # so that it can be locked
    with _locked(folder):
        if save:
            with store.reading():
                save = not _removed_since(store, index.header.generation, store.generation)
        if save:
            write(index, folder, _erase=lambda: _erase_removed(store, folder), sealer=store.sealer)
        else:
            _erase_removed(store, folder)


def _removed_since(store: TruthStore, generation: int, current: int) -> bool:
    """Inside ``store.reading()``: whether a face the store held at ``generation`` may have been
    removed by ``current`` (its change log says so, cannot tell, or ``generation`` is ahead)."""
    if generation == current:
        return False
    changes = store.changes_since(generation) if generation < current else None
    return changes is None or len(changes.removed) > 0


def erase_removed(store: TruthStore, folder: Path) -> list[Path]:
    """Overwrite and delete every index file in ``folder`` that may hold the vectors of a face
    removed since its generation (its store's change log says so, cannot tell, or the file is of
    a generation the store has not reached), and temporary files of writers no longer alive;
    returns what was erased. Files of other galleries are left to :func:`clean`. This finishes
    the erasure of a removal killed after its commit: every process that opens a gallery calls it."""
    with _locked(folder):
        return _erase_removed(store, folder)


def _erase_removed(store: TruthStore, folder: Path) -> list[Path]:
    """:func:`erase_removed` for a caller that holds the folder's lock."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(("index-", TEMPORARY_PREFIX))]
    except OSError:  # no folder (nothing saved yet), or it cannot be read
        return []
    if not names:
        return []
    doomed = [folder / name for name in names if name.endswith(".tmp") and not _writer_alive(folder / name)]
    with store.reading():
        meta = store.meta()
        prefix, generation = f"index-{meta['gallery_id']}-", int(meta["generation"])
        verdicts: dict[int, bool] = {}  # generation looked from -> whether a face present then was removed since
        for name in names:
            saved = name[len(prefix) :].split("-")[0] if name.startswith(prefix) else ""
            if not saved.isdigit() or int(saved) == generation:
                continue
            since = max(int(saved), _clean_up_to.get(str(folder / name), 0))  # no need to read the log twice
            if since not in verdicts:
                verdicts[since] = _removed_since(store, since, generation)
            if verdicts[since]:
                doomed.append(folder / name)
                _clean_up_to.pop(str(folder / name), None)
            else:
                _clean_up_to[str(folder / name)] = generation
    for path in doomed:
        shred(path)
    return doomed


def shred(path: Path) -> None:
    """Overwrite ``path`` with zeros, flushed to the disk, then delete it. On a journaling or
    copy-on-write file system or an SSD the old blocks may survive the overwrite: best effort,
    like SQLite's secure_delete. A file that cannot be written is still deleted if it can be."""
    with contextlib.suppress(OSError), open(path, "r+b") as out:
        size, chunk = os.fstat(out.fileno()).st_size, bytes(1 << 20)
        for start in range(0, size, len(chunk)):
            out.write(chunk[: size - start])
        out.flush()
        os.fsync(out.fileno())
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself (no lock file) while index files are written
    and erased there; nothing when the folder is missing or cannot be locked."""
    try:
        import fcntl

        descriptor = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


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


def _newest_saved(cls: type[VectorIndex], folder: Path, header: IndexHeader, sealer: Sealer | None) -> VectorIndex | None:
    """The newest readable saved index of this gallery and model, or None."""
    prefix = f"index-{header.gallery_id}-"
    candidates = []
    for path in folder.glob(f"{prefix}*.{header.backend}"):
        generation = path.name[len(prefix) :].split("-")[0]
        if generation.isdigit() and int(generation) < header.generation:
            candidates.append((int(generation), path))
    for _, path in sorted(candidates, reverse=True):
        index = cls.load(path, sealer)
        if index is not None and index.header.gallery_id == header.gallery_id:
            return index
    return None


def write(index: VectorIndex, folder: Path, _erase=None, sealer: Sealer | None = None) -> None:
    """Save ``index`` and delete every other index file and stale temporary file in ``folder``.
    A read-only or full folder is not an error: the index is simply rebuilt next time, and the
    older files are deleted all the same (they may hold a removed person's vectors).
    ``_erase`` (see :func:`keep`) runs between saving and deleting, to overwrite what must be."""
    path = index_file(folder, index.header)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # a database gallery's index lives in a cache folder
        index.save(path, sealer)
    except OSError:
        path = None
    if _erase is not None:
        _erase()
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


def problems(store: TruthStore, folder: Path | None, backend: str = DEFAULT_INDEX_BACKEND) -> list[str]:
    """How the saved index of the store's current state disagrees with the store (empty when it
    agrees exactly): every id and every vector is compared. A missing or stale saved index is no
    problem: it is derived, and rebuilt on the next search (see :func:`state`)."""
    if folder is None:
        return []
    cls = index_class(backend)
    with store.reading():
        header = current_header(store, backend)
        path = index_file(folder, header)
        if not path.is_file():
            return []
        index = cls.load(path, store.sealer)
        if index is None:
            return [f"index: {path.name} is unreadable or damaged (checksum, or sealed with another key)"]
        if index.header != header:  # another kind forced since: the next search rebuilds it
            return []
        ids, vectors, _ = store.embeddings()
    if not np.array_equal(index.ids(), ids):
        return ["index: face ids differ from the database's"]
    if len(ids) and not np.allclose(index.vectors(ids), vectors, atol=1e-6):
        return ["index: vectors differ from the database's embeddings"]
    return []


def state(store: TruthStore, folder: Path | None, backend: str = DEFAULT_INDEX_BACKEND) -> str | None:
    """A note when no saved index belongs to the store's current state (normal after a change
    made by a service, which keeps its index in memory, or by a process killed before it saved
    one); None when one does. Information, not a problem."""
    if folder is None:
        return None
    with store.reading():
        header = current_header(store, backend)
    if index_file(folder, header).is_file():  # whether it agrees is for problems()
        return None
    return (
        f"index: no saved index of generation {header.generation} yet (derived data: it is built on the next search, "
        "or by 'gallery index')"
    )
