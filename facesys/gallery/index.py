"""The FAISS index of a gallery: derived from the store, saved beside it, rebuilt when stale.

The file is ``index-<generation>.faiss``: the store's generation counter (bumped by every change)
is in the name, so an index that does not match the store is never used; a missing, stale or
unreadable index is rebuilt from the store's embeddings and saved atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facesys.gallery.store import GalleryStore


def build_index(ids: np.ndarray, vectors: np.ndarray):
    """An exact FAISS index (L2) over (N, D) float32 ``vectors`` keyed by (N,) int64 ``ids``."""
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatL2(vectors.shape[1]))
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
    return index


class FaceIndex:
    """Nearest-neighbour search over a gallery's faces; distances are Euclidean (not squared)."""

    def __init__(self, index, names_by_id: dict[int, str], generation: int = -1):
        self.index = index
        self.names_by_id = names_by_id
        self.generation = generation  # the store's generation this index was built from

    @classmethod
    def for_store(cls, store: GalleryStore) -> FaceIndex:
        """The index of ``store``'s current generation, loaded or rebuilt (and then saved)."""
        import faiss

        generation, ids, vectors, names = store.snapshot()
        path = store.folder / f"index-{generation}.faiss"
        names_by_id = dict(zip(ids.tolist(), names, strict=True))
        index = None
        if path.is_file():
            try:
                index = faiss.read_index(str(path))
                if index.ntotal != len(ids) or index.d != vectors.shape[1]:
                    index = None
            except RuntimeError:
                index = None
        if index is None:
            index = build_index(ids, vectors)
            _save(index, path)
        return cls(index, names_by_id, generation)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 queries -> (Q, k) Euclidean distances and (Q, k) face ids (-1 = none)."""
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.full((len(queries), 1), np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        squared, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return np.sqrt(np.maximum(squared, 0)), ids


def rebuild_index(store: GalleryStore) -> FaceIndex:
    """Drop every saved index of ``store`` and build the current one afresh."""
    for old in store.folder.glob("index-*.faiss"):
        old.unlink(missing_ok=True)
    return FaceIndex.for_store(store)


def index_problems(store: GalleryStore) -> list[str]:
    """How the saved index disagrees with the store (empty when it agrees exactly)."""
    import faiss

    generation, ids, vectors, _ = store.snapshot()
    path = store.folder / f"index-{generation}.faiss"
    if not path.is_file():
        return [f"index: no index for generation {generation} (it is rebuilt on the next search, or by 'gallery repair')"]
    try:
        index = faiss.read_index(str(path))
    except RuntimeError:
        return [f"index: {path.name} is unreadable"]
    if index.ntotal != len(ids):
        return [f"index: {index.ntotal} vectors, the database has {len(ids)} faces"]
    if len(ids) and not np.array_equal(np.sort(faiss.vector_to_array(index.id_map)), np.sort(ids)):
        return ["index: face ids differ from the database's"]
    if len(ids) and not np.allclose(index.reconstruct_batch(ids), vectors, atol=1e-6):
        return ["index: vectors differ from the database's embeddings"]
    return []


def _save(index, path: Path) -> None:
    """Write ``index`` to ``path`` atomically and remove indexes of older generations."""
    import faiss

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(temporary))
        os.replace(temporary, path)
    except (OSError, RuntimeError):
        temporary.unlink(missing_ok=True)  # a read-only gallery still answers; it just rebuilds next time
        return
    for old in path.parent.glob("index-*.faiss"):
        if old != path:
            old.unlink(missing_ok=True)
