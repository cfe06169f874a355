"""Shared fixtures. Real-face tests read ../shared/data (or $FACESYS_DATA) and skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Floats to the last bit depend on the thread count (sums run in another order), and facesys's
# automatic count follows the machine's load batch by batch; tests that compare results exactly
# across calls therefore run with a fixed count (the automatic policy has its own tests in
# tests/test_threads.py). Set before facesys is imported: the count also picks OpenMP's wait
# policy. Subprocesses inherit it; a count given by the caller wins.
os.environ.setdefault("FACESYS_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACESYS_DATA", ROOT.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A path under the shared face data; skips the test when it is absent (a fresh clone)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"face data not available: {path}")
    return path


def facenet_pytorch():
    """facenet-pytorch (a reference of parity tests); skips where it cannot be imported: its package imports
    torchvision, which the CPU-only set-up leaves out."""
    return pytest.importorskip("facenet_pytorch", reason="facenet-pytorch imports torchvision (absent in the CPU-only set-up)")


@pytest.fixture(scope="session")
def lfw() -> Path:
    return data_path("lfw")


@pytest.fixture(scope="session")
def embedder():
    """One dlib-resnet Embedder through MTCNN for the whole session (model loading takes seconds)."""
    from facesys.vision.embed import Embedder

    return Embedder("dlib-resnet", detector="mtcnn")


@pytest.fixture(scope="session")
def dlib_files():
    """(recognition .dat, 5-point predictor .dat) from face-recognition-models."""
    from facesys.models.dlib_model import dlib_model_files

    return dlib_model_files()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL server for the session (tests/postgres.py: loopback only, trust
    authentication), destroyed at its end; skips when Debian's server binaries are not installed."""
    from tests.postgres import PostgresUnavailable, shared_cluster

    try:
        cluster = shared_cluster()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc).splitlines()[0])
    yield cluster
    cluster.destroy()
