"""The FAISS index: exact results, rebuilt when stale or damaged."""

from __future__ import annotations

import numpy as np

from facesys.gallery.index import FaceIndex
from facesys.gallery.store import GalleryStore
from tests.gallery.test_store import MODEL, face


def test_search_matches_brute_force_and_follows_the_store(tmp_path):
    with GalleryStore(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        for seed in range(20):
            store.add_face(f"p{seed % 7}", face(seed), MODEL)
        index = FaceIndex.for_store(store)
        assert len(index) == 20
        ids, vectors, _ = store.embeddings()
        query = face(99).embedding[None]
        distances, found = index.search(query, k=5)
        brute = np.linalg.norm(vectors - query, axis=1)
        order = np.argsort(brute)[:5]
        assert found[0].tolist() == ids[order].tolist()
        np.testing.assert_allclose(distances[0], brute[order], atol=1e-5)
        assert list(store.folder.glob("index-*.faiss")) == [store.folder / f"index-{store.generation}.faiss"]

        store.remove_person("p0")
        index = FaceIndex.for_store(store)
        assert len(index) == 17 and "p0" not in index.names_by_id.values()
        assert len(list(store.folder.glob("index-*.faiss"))) == 1


def test_damaged_index_file_is_rebuilt(tmp_path):
    with GalleryStore(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_face("a", face(1), MODEL)
        FaceIndex.for_store(store)
        (path,) = store.folder.glob("index-*.faiss")
        path.write_bytes(b"garbage")
        assert len(FaceIndex.for_store(store)) == 1
        assert path.stat().st_size > 7


def test_empty_gallery_search_returns_no_result(tmp_path):
    with GalleryStore(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        distances, ids = FaceIndex.for_store(store).search(face(1).embedding[None], k=3)
        assert ids.tolist() == [[-1]] and np.isinf(distances).all()
