"""Backends under test: every truth store and vector index in the registries gets a factory here,
and the interface suites (test_store_interface.py, test_index_interface.py) run against each."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from facesys.gallery.index import INDEX_BACKENDS, index_class
from facesys.gallery.store import STORE_BACKENDS, NewFace, open_store
from tests import postgres

MODEL = "test-model@0123456789abcdef"


def new_postgres_store(_tmp_path):
    """A store in a new database of this process's throwaway PostgreSQL server (tests/postgres.py);
    skips the test when psycopg or the server binaries are missing."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip('psycopg not installed (in the facesys checkout, pip install -e ".[postgres]")')
    try:
        cluster = postgres.shared_cluster()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc).splitlines()[0])
    return open_store(cluster.create_database(), create=True)


# backend name -> factory(tmp_path) of a new, empty store. A new backend adds one line here.
STORE_FACTORIES = {
    "sqlite": lambda tmp_path: open_store(tmp_path / "g", create=True),
    "postgresql": new_postgres_store,
}


def face(seed: int, dim: int = 8) -> NewFace:
    """A synthetic face: a seeded unit embedding, a unique image hash and a small real JPEG crop
    of seeded noise (distinct per seed)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=dim).astype(np.float32)
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), np.uint8)
    return NewFace(
        source=f"/photos/{seed}.jpg",
        image_sha256=f"{seed:064x}",
        box=np.array([10, 20, 110, 140.0]),
        landmarks=rng.uniform(20, 100, (5, 2)),
        score=0.99,
        crop_jpeg=cv2.imencode(".jpg", pixels)[1].tobytes(),
        crop_origin=(0.0, 0.0, 1.0),
        embedding=v / np.linalg.norm(v),
    )


@pytest.fixture(autouse=True)
def _drop_databases_made_by_the_test():
    """Databases a test made on the shared PostgreSQL server are dropped after it (with this
    process's connection pools to them), so a session does not pile up servers' connections."""
    cluster = postgres.running_shared_cluster()
    before = len(cluster.created) if cluster else 0
    yield
    cluster = postgres.running_shared_cluster()
    if cluster is not None:
        cluster.drop_databases(cluster.created[before:])


@pytest.fixture(params=sorted(STORE_BACKENDS))
def backend(request) -> str:
    return request.param


@pytest.fixture()
def store(backend, tmp_path):
    """A new store of each backend, bound to the 8-D test model."""
    with STORE_FACTORIES[backend](tmp_path) as s:
        s.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        yield s


@pytest.fixture()
def second_store(backend, tmp_path):
    """Another new store of the same backend as ``store``, bound to the same model."""
    with STORE_FACTORIES[backend](tmp_path / "second") as s:
        s.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        yield s


@pytest.fixture(params=sorted(INDEX_BACKENDS))
def index_backend(request) -> str:
    return request.param


def test_every_backend_has_a_factory_here():
    assert set(STORE_FACTORIES) == set(STORE_BACKENDS)
    assert all(index_class(name).backend == name for name in INDEX_BACKENDS)
