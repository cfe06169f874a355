"""Vector-index backends (FAISS today), chosen through a registry like the truth stores.

A new backend is one module with a ``VectorIndex`` subclass and one entry in ``INDEX_BACKENDS``;
``tests/gallery/test_index_interface.py`` runs the same suite against every entry.
"""

from __future__ import annotations

from importlib import import_module

from facesys.errors import GalleryError
from facesys.gallery.index.base import IndexHeader, VectorIndex

# backend name -> "module:class"; imported only when used.
INDEX_BACKENDS = {"faiss": "facesys.gallery.index.faiss_index:FaissIndex"}
DEFAULT_INDEX_BACKEND = "faiss"
# The kinds the default backend can be forced to (``facesys gallery index --kind``); importing
# them does not import faiss.
from facesys.gallery.index.faiss_index import INDEX_KINDS  # noqa: E402


def index_class(backend: str = DEFAULT_INDEX_BACKEND) -> type[VectorIndex]:
    """The VectorIndex subclass registered as ``backend``; GalleryError for another name."""
    if backend not in INDEX_BACKENDS:
        raise GalleryError(f"index backend {backend!r}: choose from {', '.join(INDEX_BACKENDS)}")
    module, _, name = INDEX_BACKENDS[backend].partition(":")
    return getattr(import_module(module), name)


__all__ = ["DEFAULT_INDEX_BACKEND", "INDEX_BACKENDS", "INDEX_KINDS", "IndexHeader", "VectorIndex", "index_class"]
