"""The gallery: a truth store (``store/``), a vector index derived from it (``index/``), and the
``Gallery`` object that owns both with their administration; see README.md beside this file."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Gallery": "facesys.gallery.gallery",
    "Neighbours": "facesys.gallery.gallery",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facesys.gallery' has no attribute {name!r}")
