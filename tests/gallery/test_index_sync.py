"""An index kept in step with its store (facesys/gallery/index/sync.py) with the FAISS backend: kinds by
size, updates by the change log, files that belong to another gallery or state are never used."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery.index import faiss_index, index_class, sync
from facesys.gallery.index.faiss_index import EXACT_UP_TO, IVF_MIN_FACES, FaissIndex, choose_kind
from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore
from tests.gallery.conftest import MODEL, face


@pytest.fixture()
def store(tmp_path):
    with SQLiteStore(tmp_path / "g", create=True) as s:
        s.set_model(MODEL, "test-model", "0" * 64, 8)
        yield s


def synced(store, cached=None):
    return sync.synced(store, store.folder, cached)


def index_problems(store):
    return sync.problems(store, store.folder)


def index_files(store):
    return sorted(store.folder.glob("index-*"))


def brute_force(store: SQLiteStore, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
    with pytest.raises(GalleryError, match="index_kind setting 'lsh'"):
        choose_kind(10, "lsh")
    with pytest.raises(GalleryError, match="index backend 'annoy': choose from faiss"):  # was a KeyError
        index_class("annoy")


def test_search_matches_brute_force_and_follows_the_store(store):
    for seed in range(20):
        store.add_face(f"p{seed % 7}", face(seed), MODEL)
    index = synced(store)
    assert len(index) == 20 and index.kind == "flat"
    query = face(99).embedding[None]
    distances, found = index.search(query, k=5)
    expected_ids, expected_distances = brute_force(store, query, 5)
    assert found[0].tolist() == expected_ids.tolist()
    np.testing.assert_allclose(distances[0], expected_distances, atol=1e-5)
    assert index_files(store) == [sync.index_file(store.folder, index.header)]

    store.remove_person("p0")
    index = synced(store)
    assert len(index) == 17 and not set(store.names_of(index.search(query, 20)[1]).values()) & {"p0"}
    assert len(index_files(store)) == 1


def test_a_stale_index_is_updated_by_face_id_not_rebuilt(store, monkeypatch):
    for seed in range(10):
        store.add_face(f"p{seed % 3}", face(seed), MODEL)
    synced(store)
    monkeypatch.setattr(FaissIndex, "build", lambda *_: pytest.fail("rebuilt instead of updated"))
    store.remove_person("p1")
    for seed in range(10, 14):
        store.add_face("new", face(seed), MODEL)
    index = synced(store)
    assert len(index) == store.face_count() and index_problems(store) == []


def test_a_deleted_face_id_is_never_reused(store):
    first = store.add_face("a", face(1), MODEL)
    last = store.add_face("b", face(2), MODEL)
    synced(store)
    store.remove_person("b")
    again = store.add_face("c", face(3), MODEL)
    assert again > last > first
    index = synced(store)
    assert index_problems(store) == []
    found = index.search(face(3).embedding[None], k=1)[1]
    assert store.names_of(found) == {again: "c"}


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_the_nearest_face_and_follow_changes(store, monkeypatch, kind):
    monkeypatch.setattr(faiss_index, "IVF_MIN_FACES", 100)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 8))
    for seed in range(300):  # 60 people x 5 faces, clustered like real identities
        vector = centres[seed % 60] + 0.15 * rng.normal(size=8)
        new = face(seed)
        store.add_face(f"p{seed % 60}", type(new)(**{**new.__dict__, "embedding": vector / np.linalg.norm(vector)}), MODEL)
    store.set_setting("index_kind", kind)
    index = synced(store)
    assert index.kind == kind and len(index) == 300 and index_problems(store) == []
    queries = centres + 0.15 * rng.normal(size=centres.shape)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    found = index.search(queries, k=1)[1][:, 0]
    exact = np.array([brute_force(store, q, 1)[0][0] for q in queries])
    assert np.mean(found == exact) >= 0.95

    store.remove_person("p0")
    store.add_face("late", face(1000), MODEL)
    index = synced(store)
    assert index.kind == kind and len(index) == 296 and index_problems(store) == []
    names = set(store.names_of(index.search(queries, k=10)[1]).values())
    assert "p0" not in names and "p1" in names


def test_forcing_a_kind_rebuilds_at_the_same_generation(store):
    for seed in range(5):
        store.add_face("a", face(seed), MODEL)
    assert synced(store).kind == "flat"
    store.set_setting("index_kind", "hnsw")
    assert synced(store).kind == "hnsw"


def test_damaged_index_file_is_rebuilt(store):
    store.add_face("a", face(1), MODEL)
    synced(store)
    (path,) = index_files(store)
    path.write_bytes(b"garbage")
    assert len(synced(store)) == 1
    assert path.stat().st_size > 7


def test_an_index_of_another_model_is_not_reused(store):
    store.add_face("a", face(1), MODEL)
    synced(store)
    store.replace_embeddings("other@1", "other", "1" * 64, 8, {1: face(2).embedding})
    assert index_problems(store) == [] and sync.state(store, store.folder).startswith("index: no saved index of generation")
    synced(store)
    assert index_problems(store) == [] and sync.state(store, store.folder) is None


def test_empty_gallery_search_returns_no_result(store):
    distances, ids = synced(store).search(face(1).embedding[None], k=3)
    assert ids.tolist() == [[-1]] and np.isinf(distances).all()


def test_the_in_memory_index_follows_the_change_log(store):
    for seed in range(5):
        store.add_face(f"p{seed}", face(seed), MODEL)
    index = synced(store)
    store.remove_person("p1")
    store.add_face("late", face(50), MODEL)
    again = synced(store, cached=index)
    assert again is index and len(again) == 5 and index_problems(store) == []


def test_an_index_of_another_gallery_is_never_used(tmp_path):
    """A deleted and re-created database restarts face ids at 1: an index left in the folder by the
    old one must not answer for the new one (it would name the wrong people)."""
    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as old:
        old.set_model(MODEL, "test-model", "0" * 64, 8)
        for seed in range(3):
            old.add_face(f"old{seed}", face(seed), MODEL)
        sync.synced(old, folder)
    for path in folder.glob(DB_NAME + "*"):
        path.unlink()
    with SQLiteStore(folder, create=True) as new:
        new.set_model(MODEL, "test-model", "0" * 64, 8)
        for seed in range(10, 13):  # the same ids and generation as the old gallery's
            new.add_face(f"new{seed}", face(seed), MODEL)
        index = sync.synced(new, folder)
        found = index.search(face(10).embedding[None], k=1)
        assert np.isclose(found[0][0, 0], 0, atol=1e-5) and new.names_of(found[1]) == {1: "new10"}
        assert [p.name.split("-")[1] for p in folder.glob("index-*")] == [new.gallery_id]


def test_a_saved_index_that_disagrees_with_the_store_is_rebuilt(store):
    for seed in range(4):
        store.add_face(f"p{seed}", face(seed), MODEL)
    index = synced(store)
    index.follow(np.array([99]), face(99).embedding[None], np.array([1]), index.kind)  # same count, other content
    sync.write(index, store.folder)
    rebuilt = synced(store)
    assert sorted(rebuilt.ids().tolist()) == store.face_ids().tolist() and index_problems(store) == []


def test_stale_temporary_and_index_files_are_deleted(store):
    store.add_face("a", face(1), MODEL)
    dead = store.folder / ".index-999999999-abcd.tmp"  # a pid that is not running
    dead.write_bytes(b"a removed person's vectors")
    stale = store.folder / "index-0123456789abcdef-1-00000000.faiss"
    stale.write_bytes(b"old")
    synced(store)
    assert not dead.exists() and not stale.exists() and len(index_files(store)) == 1
