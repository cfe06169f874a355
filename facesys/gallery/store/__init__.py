"""Truth-store backends, chosen by the gallery's location (the way deepface's ``modules/database/``
has a base type plus one module per backend).

``open_store(location)``: a folder path -> SQLite. A new backend is one module with a
``TruthStore`` subclass, one entry in ``STORE_BACKENDS`` and one case in ``backend_for``; the
interface suite in tests/gallery/test_store_interface.py then runs against it too.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from facesys.gallery.store.base import (
    Carried,
    Changes,
    DuplicatePhotoError,
    FaceRecord,
    NameConflictError,
    NewFace,
    TruthStore,
    name_key,
    normalize_name,
)

# backend name -> "module:class"; imported only when used.
STORE_BACKENDS = {"sqlite": "facesys.gallery.store.sqlite:SQLiteStore"}


def backend_for(location: str | Path) -> str:
    """The backend that keeps a gallery at ``location``: ``sqlite`` for a folder."""
    return "sqlite"


def store_class(backend: str) -> type[TruthStore]:
    module, _, name = STORE_BACKENDS[backend].partition(":")
    return getattr(import_module(module), name)


def open_store(location: str | Path, create: bool = False) -> TruthStore:
    """The store of the gallery at ``location``; ``create`` makes it when missing."""
    return store_class(backend_for(location))(location, create=create)


def store_exists(location: str | Path) -> bool:
    """Whether a gallery exists at ``location`` (without creating anything)."""
    return store_class(backend_for(location)).exists(location)


__all__ = [
    "STORE_BACKENDS",
    "Carried",
    "Changes",
    "DuplicatePhotoError",
    "FaceRecord",
    "NameConflictError",
    "NewFace",
    "TruthStore",
    "backend_for",
    "name_key",
    "normalize_name",
    "open_store",
    "store_exists",
]
