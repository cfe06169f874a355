"""The FAISS vector index (the default backend).

Kinds (``chosen_kind``): ``flat`` is exact and used up to ``EXACT_UP_TO`` faces; above that,
``ivf`` (inverted lists, k-means cells; supports adding and removing faces in place). ``hnsw``
(a graph) can be forced; it cannot remove faces, so a removal rebuilds it. Sizes and search
parameters come from ``python benchmarks/gallery_search.py`` (recall@1 >= 0.99 of exact search
on 1M faces). FAISS computes squared L2; ``search`` returns its square root.
"""

from __future__ import annotations

import math

import numpy as np

from facesys import threads
from facesys.errors import GalleryError
from facesys.gallery.index.base import VectorIndex

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
EXACT_UP_TO = 50_000  # faces: above this, "auto" chooses ivf
IVF_MIN_FACES = 2_000  # fewer faces cannot train inverted lists well: such galleries stay exact
HNSW_LINKS = 32  # graph degree M
HNSW_BUILD_DEPTH = 64  # efConstruction
HNSW_SEARCH_DEPTH = 512  # efSearch: recall@1 0.99 at 1M faces in benchmarks/gallery_search.py


def choose_kind(faces: int, forced: str = "auto") -> str:
    """The index kind for a gallery of ``faces`` faces: ``forced`` unless ``auto`` (ivf only from
    ``IVF_MIN_FACES`` faces on). GalleryError for an unknown kind (e.g. a gallery's index_kind setting)."""
    if forced not in INDEX_KINDS:
        raise GalleryError(
            f"index_kind setting {forced!r}: choose from {', '.join(INDEX_KINDS)} ('facesys gallery index --kind auto' resets it)"
        )
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
    """A raw FAISS index (L2) of ``kind`` over (N, D) float32 ``vectors`` keyed by (N,) int64 ``ids``."""
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
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # lets vectors() read vectors back by id
    else:
        raise GalleryError(f"index kind {kind!r}: choose from flat, ivf, hnsw")
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def kind_of(index) -> str:
    """``flat``, ``ivf`` or ``hnsw`` of a raw FAISS index."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"


def remove_ids(index, ids: np.ndarray) -> None:
    """Remove faces by id from a raw flat or ivf index (an hnsw graph cannot remove: rebuild it)."""
    import faiss

    ids = np.ascontiguousarray(ids, np.int64)
    if kind_of(index) == "ivf":  # its id hashtable takes only an id array
        index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
    else:
        index.remove_ids(faiss.IDSelectorBatch(ids))


class FaissIndex(VectorIndex):
    """A FAISS index of kind flat, ivf or hnsw (see the module docstring)."""

    backend = "faiss"
    kinds = INDEX_KINDS

    def __init__(self, index) -> None:
        import faiss

        super().__init__()
        self.index = index
        if self.kind == "ivf":
            index.nprobe = ivf_probes(index.nlist)
            index.parallel_mode = 1  # one query's cells are scanned by all threads, not one thread per query
        elif self.kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_SEARCH_DEPTH

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, kind: str = "auto") -> FaissIndex:
        return cls(build_index(ids, vectors, choose_kind(len(ids), kind)))

    @classmethod
    def chosen_kind(cls, faces: int, setting: str = "auto") -> str:
        return choose_kind(faces, setting)

    @property
    def kind(self) -> str:
        return kind_of(self.index)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        import faiss

        if self.kind != "ivf":
            return np.sort(faiss.vector_to_array(self.index.id_map))
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy() for c in range(self.index.nlist) if lists.list_size(c)
        ]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, np.int64))

    def follow(self, added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray, kind: str) -> bool:
        faces = len(self) + len(added_ids) - len(removed_ids)
        if self.kind != kind or (kind == "ivf" and ivf_cells(faces) >= 2 * self.index.nlist):
            return False
        if len(removed_ids):
            if kind == "hnsw":
                return False
            remove_ids(self.index, removed_ids)
        if len(added_ids):
            self.index.add_with_ids(np.ascontiguousarray(added_vectors, np.float32), np.ascontiguousarray(added_ids, np.int64))
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            return np.full((len(queries), 1), np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        k = max(1, min(k, len(self)))
        threads.adapt()
        squared, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return np.sqrt(np.maximum(squared, 0)), ids

    def to_bytes(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, payload: bytes | memoryview) -> FaissIndex:
        import faiss

        return cls(faiss.deserialize_index(np.frombuffer(payload, np.uint8)))
