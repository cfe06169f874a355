"""The FAISS index of a gallery: derived from the store, saved beside it, updated when stale.

Kinds (``choose_kind``): ``flat`` is exact and used up to ``EXACT_UP_TO`` faces; above that,
``ivf`` (inverted lists, k-means cells; supports adding and removing faces in place). ``hnsw``
(a graph) can be forced; it cannot remove faces, so a removal rebuilds it. A gallery can force a
kind (``facesys gallery index --kind``). Sizes and search parameters come from
``python benchmarks/gallery_search.py`` (recall@1 >= 0.99 of exact search on 1M faces).

The file is ``index-<generation>-<model tag>.faiss``: the store's generation counter (bumped by
every change) and the gallery model are in the name, so an index that does not match the store
is never used as is. A stale index of the same model is brought up to date by face id (ids are
never reused) — added faces are added, removed ones removed — and saved atomically; a missing or
unreadable one is rebuilt from the store.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from facesys.gallery.store import GalleryStore

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
EXACT_UP_TO = 50_000  # faces: above this, "auto" chooses ivf
IVF_MIN_FACES = 2_000  # fewer faces cannot train inverted lists well: such galleries stay exact
HNSW_LINKS = 32  # graph degree M
HNSW_BUILD_DEPTH = 64  # efConstruction
HNSW_SEARCH_DEPTH = 512  # efSearch: recall@1 0.99 at 1M faces in benchmarks/gallery_search.py


def choose_kind(faces: int, forced: str = "auto") -> str:
    """The index kind for a gallery of ``faces`` faces: ``forced`` unless ``auto`` (ivf only from
    ``IVF_MIN_FACES`` faces on)."""
    if forced not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {forced!r}; choose from {', '.join(INDEX_KINDS)}")
    kind = forced if forced != "auto" else ("flat" if faces <= EXACT_UP_TO else "ivf")
    return "flat" if kind == "ivf" and faces < IVF_MIN_FACES else kind


def ivf_cells(faces: int) -> int:
    """Number of k-means cells for ``faces`` faces: the power of two nearest 4 * sqrt(faces), and
    at most faces / 39 (k-means wants 39 training points per cell)."""
    cells = 2 ** round(math.log2(4 * math.sqrt(max(faces, 1))))
    return max(1, min(cells, 2 ** math.floor(math.log2(max(faces // 39, 1)))))


def ivf_probes(cells: int) -> int:
    """Cells searched per query (nprobe): 4 * sqrt(cells) and at least 256 (e.g. 256 of 1,024 for
    100k faces, 256 of 4,096 for 1M), or all of them."""
    return min(cells, max(256, round(4 * math.sqrt(cells))))


def build_index(ids: np.ndarray, vectors: np.ndarray, kind: str = "flat"):
    """A FAISS index (L2) of ``kind`` over (N, D) float32 ``vectors`` keyed by (N,) int64 ``ids``."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    ids = np.ascontiguousarray(ids, np.int64)
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
    elif kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, HNSW_LINKS)
        graph.hnsw.efConstruction = HNSW_BUILD_DEPTH
        index = faiss.IndexIDMap2(graph)
    elif kind == "ivf":
        cells = ivf_cells(len(ids))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, cells)
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * cells), replace=False)
        index.train(vectors[np.sort(sample)])
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets check() read vectors back by id
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def kind_of(index) -> str:
    """``flat``, ``ivf`` or ``hnsw``."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"


def ids_of(index) -> np.ndarray:
    """(N,) int64 face ids held by ``index``, ascending."""
    import faiss

    if kind_of(index) != "ivf":
        return np.sort(faiss.vector_to_array(index.id_map))
    lists = index.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy() for c in range(index.nlist) if lists.list_size(c)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def remove_ids(index, ids: np.ndarray) -> None:
    """Remove faces by id from a flat or ivf index (an hnsw graph cannot remove: rebuild it)."""
    import faiss

    ids = np.ascontiguousarray(ids, np.int64)
    if kind_of(index) == "ivf":  # its id hashtable takes only an id array
        index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
    else:
        index.remove_ids(faiss.IDSelectorBatch(ids))


def _tune(index) -> None:
    """Set the search parameters of ``index`` (they are not all kept in the file)."""
    import faiss

    kind = kind_of(index)
    if kind == "ivf":
        index.nprobe = ivf_probes(index.nlist)
        index.parallel_mode = 1  # one query's cells are scanned by all threads, not one thread per query
    elif kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = HNSW_SEARCH_DEPTH


class FaceIndex:
    """Nearest-neighbour search over a gallery's faces; distances are Euclidean (not squared)."""

    def __init__(self, index, generation: int = -1):
        self.index = index
        self.generation = generation  # the store's generation this index agrees with
        _tune(index)

    @property
    def kind(self) -> str:
        return kind_of(self.index)

    @classmethod
    def for_store(cls, store: GalleryStore) -> FaceIndex:
        """The index of ``store``'s current generation: loaded, updated from an older one, or built
        (and then saved)."""
        with store.reading():
            generation = store.generation
            path = index_path(store, generation)
            index = _read(path)
            faces = store.face_count()
            if index is None or index.ntotal != faces or kind_of(index) != choose_kind(faces, store.index_kind()):
                index = _updated(store, _newest_saved(store, exclude=path)) or _built(store)
                _save(index, path)
        return cls(index, generation)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 queries -> (Q, k) Euclidean distances and (Q, k) face ids (-1 = none)."""
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            return np.full((len(queries), 1), np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        squared, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return np.sqrt(np.maximum(squared, 0)), ids


def index_path(store: GalleryStore, generation: int) -> Path:
    """Where the index of ``generation`` of ``store`` is saved."""
    tag = hashlib.sha1(str(store.model_id).encode()).hexdigest()[:8]
    return store.folder / f"index-{generation}-{tag}.faiss"


def _read(path: Path):
    import faiss

    if not path.is_file():
        return None
    try:
        return faiss.read_index(str(path))
    except RuntimeError:
        return None


def _newest_saved(store: GalleryStore, exclude: Path):
    """The readable saved index of the newest older generation of the same model, or None."""
    suffix = index_path(store, 0).name.split("-", 2)[2]
    candidates = []
    for path in store.folder.glob(f"index-*-{suffix}"):
        generation = path.name.split("-")[1]
        if path != exclude and generation.isdigit():
            candidates.append((int(generation), path))
    return _read(max(candidates)[1]) if candidates else None


def _updated(store: GalleryStore, index):
    """``index`` brought up to date with ``store`` by face id, or None when it cannot be (other kind
    or dimension, grown too far for its cells, or a removal from an hnsw graph)."""
    if index is None or index.d != int(store.meta().get("dim", -1)):
        return None
    wanted = store.face_ids()
    kind = choose_kind(len(wanted), store.index_kind())
    if kind_of(index) != kind or (kind == "ivf" and ivf_cells(len(wanted)) >= 2 * index.nlist):
        return None
    held = ids_of(index)
    removed, added = np.setdiff1d(held, wanted), np.setdiff1d(wanted, held)
    if len(removed):
        if kind == "hnsw":
            return None
        remove_ids(index, removed)
    if len(added):
        index.add_with_ids(store.vectors(added), added)
    return index


def _built(store: GalleryStore):
    ids, vectors, _ = store.embeddings()
    return build_index(ids, vectors, choose_kind(len(ids), store.index_kind()))


def rebuild_index(store: GalleryStore) -> FaceIndex:
    """Drop every saved index of ``store`` and build the current one afresh."""
    for old in store.folder.glob("index-*.faiss"):
        old.unlink(missing_ok=True)
    return FaceIndex.for_store(store)


def index_problems(store: GalleryStore) -> list[str]:
    """How the saved index disagrees with the store (empty when it agrees exactly)."""
    with store.reading():
        generation = store.generation
        path = index_path(store, generation)
        if not path.is_file():
            return [f"index: no index for generation {generation} (it is rebuilt on the next search, or by 'gallery repair')"]
        index = _read(path)
        if index is None:
            return [f"index: {path.name} is unreadable"]
        ids, vectors, _ = store.embeddings()
    if index.ntotal != len(ids):
        return [f"index: {index.ntotal} vectors, the database has {len(ids)} faces"]
    if not np.array_equal(ids_of(index), ids):
        return ["index: face ids differ from the database's"]
    if len(ids) and not np.allclose(index.reconstruct_batch(ids), vectors, atol=1e-6):
        return ["index: vectors differ from the database's embeddings"]
    return []


def _save(index, path: Path) -> None:
    """Write ``index`` to ``path`` atomically and remove every other saved index."""
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
