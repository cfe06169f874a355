"""Truth-store backends, chosen by the gallery's location (the way deepface's ``modules/database/``
has a base type plus one module per backend).

``open_store(location)``: a folder path -> SQLite; a ``postgresql://`` (or ``postgres://``) URL ->
PostgreSQL (psycopg, the optional extra ``postgres`` of the facesys checkout, is imported only then). A new
backend is one module with a ``TruthStore`` subclass, one entry in ``STORE_BACKENDS`` and one case
in ``backend_for``; the interface suite in tests/gallery/test_store_interface.py then runs
against it too.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from facesys.errors import GalleryError
from facesys.gallery.sealing import GalleryKey
from facesys.gallery.store.base import TruthStore
from facesys.gallery.store.records import Carried, Changes, FaceRecord, NewFace
from facesys.gallery.store.rules import name_key, normalize_name

# backend name -> "module:class"; imported only when used.
STORE_BACKENDS = {
    "sqlite": "facesys.gallery.store.sqlite:SQLiteStore",
    "postgresql": "facesys.gallery.store.postgres:PostgresStore",
}
DATABASE_URL_PREFIXES = ("postgresql://", "postgres://")
_MISSING_DRIVER = {"postgresql": 'PostgreSQL galleries need psycopg: in the facesys checkout, pip install -e ".[postgres]"'}


def backend_for(location: str | Path) -> str:
    """The backend that keeps a gallery at ``location``: ``postgresql`` for a ``postgresql://`` or
    ``postgres://`` URL (a str), ``sqlite`` for a folder."""
    if isinstance(location, str) and location.startswith(DATABASE_URL_PREFIXES):
        return "postgresql"
    return "sqlite"


def store_class(backend: str) -> type[TruthStore]:
    """The TruthStore class of ``backend``, imported now. GalleryError saying what to install
    when the backend's driver is missing."""
    module, _, name = STORE_BACKENDS[backend].partition(":")
    try:
        return getattr(import_module(module), name)
    except ImportError as exc:
        if backend in _MISSING_DRIVER and exc.name is not None and exc.name.split(".")[0] in ("psycopg", "psycopg_pool"):
            raise GalleryError(_MISSING_DRIVER[backend]) from None
        raise


def open_store(location: str | Path, create: bool = False, key: GalleryKey | None = None) -> TruthStore:
    """The store of the gallery at ``location``; ``create`` makes it when missing. ``key``: the
    gallery's key when it is encrypted (a new gallery made with one is encrypted);
    GalleryKeyError when it is missing or not the gallery's (facesys/gallery/sealing.py)."""
    return store_class(backend_for(location))(location, create=create, key=key)


def store_exists(location: str | Path) -> bool:
    """Whether a gallery exists at ``location`` (without creating anything)."""
    return store_class(backend_for(location)).exists(location)


__all__ = [
    "STORE_BACKENDS",
    "Carried",
    "Changes",
    "FaceRecord",
    "NewFace",
    "TruthStore",
    "backend_for",
    "name_key",
    "normalize_name",
    "open_store",
    "store_exists",
]
