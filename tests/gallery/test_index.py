"""The FAISS index: kinds by size, results against brute force, updates by face id, damage."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.gallery import index as index_module
from facesys.gallery.index import EXACT_UP_TO, IVF_MIN_FACES, FaceIndex, choose_kind, index_path, index_problems
from facesys.gallery.store import GalleryStore
from tests.gallery.test_store import MODEL, face


@pytest.fixture()
def store(tmp_path):
    with GalleryStore(tmp_path / "g", create=True) as s:
        s.set_model(MODEL, "test-model", "0" * 64, 8)
        yield s


def brute_force(store: GalleryStore, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors, _ = store.embeddings()
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances)[:k]
    return ids[order], distances[order]


def test_kind_is_chosen_by_size_and_can_be_forced():
    assert choose_kind(10) == "flat" and choose_kind(EXACT_UP_TO) == "flat"
    assert choose_kind(EXACT_UP_TO + 1) == "ivf"
    assert choose_kind(10, "hnsw") == "hnsw" and choose_kind(IVF_MIN_FACES, "ivf") == "ivf"
    assert choose_kind(IVF_MIN_FACES - 1, "ivf") == "flat"  # too few faces to train cells
    assert choose_kind(10**7, "flat") == "flat"
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_kind(10, "lsh")


def test_search_matches_brute_force_and_follows_the_store(store):
    for seed in range(20):
        store.add_face(f"p{seed % 7}", face(seed), MODEL)
    index = FaceIndex.for_store(store)
    assert len(index) == 20 and index.kind == "flat"
    query = face(99).embedding[None]
    distances, found = index.search(query, k=5)
    expected_ids, expected_distances = brute_force(store, query, 5)
    assert found[0].tolist() == expected_ids.tolist()
    np.testing.assert_allclose(distances[0], expected_distances, atol=1e-5)
    assert list(store.folder.glob("index-*.faiss")) == [index_path(store, store.generation)]

    store.remove_person("p0")
    index = FaceIndex.for_store(store)
    assert len(index) == 17 and not set(store.names_of(index.search(query, 20)[1]).values()) & {"p0"}
    assert len(list(store.folder.glob("index-*.faiss"))) == 1


def test_a_stale_index_is_updated_by_face_id_not_rebuilt(store, monkeypatch):
    for seed in range(10):
        store.add_face(f"p{seed % 3}", face(seed), MODEL)
    FaceIndex.for_store(store)
    monkeypatch.setattr(index_module, "_built", lambda _: pytest.fail("rebuilt instead of updated"))
    store.remove_person("p1")
    for seed in range(10, 14):
        store.add_face("new", face(seed), MODEL)
    index = FaceIndex.for_store(store)
    assert len(index) == store.face_count() and index_problems(store) == []


def test_a_deleted_face_id_is_never_reused(store):
    first = store.add_face("a", face(1), MODEL)
    last = store.add_face("b", face(2), MODEL)
    FaceIndex.for_store(store)
    store.remove_person("b")
    again = store.add_face("c", face(3), MODEL)
    assert again > last > first
    index = FaceIndex.for_store(store)
    assert index_problems(store) == []
    found = index.search(face(3).embedding[None], k=1)[1]
    assert store.names_of(found) == {again: "c"}


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_the_nearest_face_and_follow_changes(store, monkeypatch, kind):
    monkeypatch.setattr(index_module, "IVF_MIN_FACES", 100)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 8))
    for seed in range(300):  # 60 people x 5 faces, clustered like real identities
        vector = centres[seed % 60] + 0.15 * rng.normal(size=8)
        new = face(seed)
        store.add_face(f"p{seed % 60}", type(new)(**{**new.__dict__, "embedding": vector / np.linalg.norm(vector)}), MODEL)
    store.set_index_kind(kind)
    index = FaceIndex.for_store(store)
    assert index.kind == kind and len(index) == 300 and index_problems(store) == []
    queries = centres + 0.15 * rng.normal(size=centres.shape)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    found = index.search(queries, k=1)[1][:, 0]
    exact = np.array([brute_force(store, q, 1)[0][0] for q in queries])
    assert np.mean(found == exact) >= 0.95

    store.remove_person("p0")
    store.add_face("late", face(1000), MODEL)
    index = FaceIndex.for_store(store)
    assert index.kind == kind and len(index) == 296 and index_problems(store) == []
    names = set(store.names_of(index.search(queries, k=10)[1]).values())
    assert "p0" not in names and "p1" in names


def test_forcing_a_kind_rebuilds_at_the_same_generation(store):
    for seed in range(5):
        store.add_face("a", face(seed), MODEL)
    assert FaceIndex.for_store(store).kind == "flat"
    store.set_index_kind("hnsw")
    assert FaceIndex.for_store(store).kind == "hnsw"


def test_damaged_index_file_is_rebuilt(store):
    store.add_face("a", face(1), MODEL)
    FaceIndex.for_store(store)
    (path,) = store.folder.glob("index-*.faiss")
    path.write_bytes(b"garbage")
    assert len(FaceIndex.for_store(store)) == 1
    assert path.stat().st_size > 7


def test_an_index_of_another_model_is_not_reused(store):
    store.add_face("a", face(1), MODEL)
    FaceIndex.for_store(store)
    store.replace_embeddings("other@1", "other", "1" * 64, 8, {1: face(2).embedding})
    assert index_problems(store)[0].startswith("index: no index for generation")
    FaceIndex.for_store(store)
    assert index_problems(store) == []


def test_empty_gallery_search_returns_no_result(store):
    distances, ids = FaceIndex.for_store(store).search(face(1).embedding[None], k=3)
    assert ids.tolist() == [[-1]] and np.isinf(distances).all()
