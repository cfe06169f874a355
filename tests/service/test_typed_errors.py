"""Library errors reach a service client through the one status table (facesys/service/errors.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from facesys.errors import GalleryError, NoGalleryError
from facesys.gallery import Gallery
from facesys.service.auth import Caller
from facesys.service.errors import api_error
from facesys.service.library_api import changing


def test_changing_library_faces_without_a_gallery_is_the_one_no_gallery_404(tmp_path):
    """The library routes wrote their own 'no gallery yet' message as a plain 404 "not_found";
    now they raise NoGalleryError like every other route ("no_gallery")."""
    service = SimpleNamespace(system=SimpleNamespace(gallery=Gallery(tmp_path / "none")))
    with pytest.raises(NoGalleryError) as raised, changing(service, Caller("key ci", "admin")):
        pass
    error = api_error(raised.value)
    assert (error.status, error.code) == (404, "no_gallery")
    assert error.message == f"{tmp_path / 'none'}: no gallery here (scan photos first, or choose another gallery)"


def test_an_unknown_index_kind_in_the_gallery_is_a_gallery_error_not_a_crash():
    """A ValueError from faiss_index was answered 500 "internal" with only its type name."""
    from facesys.gallery.index.faiss_index import choose_kind

    with pytest.raises(GalleryError) as raised:
        choose_kind(10, "pq")
    error = api_error(raised.value)
    assert (error.status, error.code) == (500, "gallery_error") and "index_kind setting 'pq'" in error.message
