"""The vector-index interface on synthetic vectors, run against every backend (tests/gallery/conftest.py):
exact search, following adds and removals by id, saving with a header, refusing damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.gallery.index import IndexHeader, index_class


def unit_vectors(n: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k):
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances)[:k]
    return ids[order], distances[order]


def test_search_is_euclidean_and_matches_brute_force(index_backend):
    ids, vectors = np.arange(10, 40, dtype=np.int64), unit_vectors(30)
    index = index_class(index_backend).build(ids, vectors)
    assert len(index) == 30 and index.ids().tolist() == ids.tolist()
    query = unit_vectors(1, seed=9)
    distances, found = index.search(query, k=5)
    expected_ids, expected = brute_force(ids, vectors, query, 5)
    assert found[0].tolist() == expected_ids.tolist()
    np.testing.assert_allclose(distances[0], expected, atol=1e-5)  # not squared
    np.testing.assert_allclose(index.vectors(ids[:3]), vectors[:3], atol=1e-6)


def test_an_empty_index_answers_no_result(index_backend):
    index = index_class(index_backend).build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32))
    distances, ids = index.search(unit_vectors(2), k=3)
    assert ids.tolist() == [[-1], [-1]] and np.isinf(distances).all()


def test_follow_adds_and_removes_by_id(index_backend):
    cls = index_class(index_backend)
    vectors = unit_vectors(12)
    index = cls.build(np.arange(10, dtype=np.int64), vectors[:10])
    kind = cls.chosen_kind(11)
    assert index.follow(np.array([10, 11]), vectors[10:], np.array([0, 1, 2]), kind)
    assert index.ids().tolist() == list(range(3, 12))
    assert index.search(vectors[11:12], k=1)[1][0, 0] == 11


def test_saved_index_round_trips_with_its_header(index_backend, tmp_path):
    cls = index_class(index_backend)
    index = cls.build(np.arange(5, dtype=np.int64), unit_vectors(5))
    index.header = IndexHeader("abc", 7, "m@1", index_backend, index.kind, 5)
    index.save(tmp_path / "i")
    loaded = cls.load(tmp_path / "i")
    assert loaded.header == index.header and loaded.ids().tolist() == [0, 1, 2, 3, 4]
    assert list(tmp_path.iterdir()) == [tmp_path / "i"]  # no temporary file left


def test_a_damaged_file_is_never_loaded(index_backend, tmp_path):
    cls = index_class(index_backend)
    index = cls.build(np.arange(50, dtype=np.int64), unit_vectors(50))
    index.header = IndexHeader("abc", 1, "m@1", index_backend, index.kind, 50)
    index.save(tmp_path / "i")
    data = (tmp_path / "i").read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(40):  # one byte changed anywhere: header or payload
        broken = bytearray(data)
        position = int(rng.integers(len(broken)))
        broken[position] ^= 1 << int(rng.integers(8))
        (tmp_path / "j").write_bytes(bytes(broken))
        loaded = cls.load(tmp_path / "j")
        assert loaded is None or (loaded.header == index.header and np.array_equal(loaded.ids(), index.ids())), position
    (tmp_path / "j").write_bytes(data[: len(data) // 2])
    assert cls.load(tmp_path / "j") is None
    assert cls.load(tmp_path / "missing") is None


@pytest.mark.parametrize("kind", ["auto"])
def test_chosen_kind_is_one_of_the_backends_kinds(index_backend, kind):
    cls = index_class(index_backend)
    assert cls.chosen_kind(10, kind) in cls.kinds
