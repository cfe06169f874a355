"""Data a user can hand facesys that used to reach them as a ValueError traceback: now one line and
exit 2 (facesys/errors.py types, mapped by the CLI)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import NoGalleryError
from facesys.gallery.store.sqlite import SQLiteStore
from tests.gallery.conftest import MODEL, face


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_error_line(result, text: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("facesys: error:")]
    assert result.exit_code == 2 and len(errors) == 1 and text in errors[0], result.output
    assert "Traceback" not in result.output


def gallery_with(tmp_path, *faces, **settings) -> str:
    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        for number, new in enumerate(faces):
            store.add_face(f"p{number}", new, MODEL)
        for key, value in settings.items():
            store.set_setting(key, value)
    return str(folder)


def test_an_unknown_index_kind_in_the_gallery_is_one_line_naming_the_setting(tmp_path):
    """A gallery whose index_kind setting this facesys does not know (written by a newer one, or by
    hand) was a ValueError traceback from faiss_index.choose_kind on every search."""
    gallery = gallery_with(tmp_path, face(1), index_kind="pq")
    result = run("--gallery", gallery, "gallery", "index")
    one_error_line(result, "index_kind setting 'pq': choose from auto, flat, ivf, hnsw")
    assert run("--gallery", gallery, "gallery", "index", "--kind", "auto").exit_code == 0  # the fix it names works


def test_stored_landmarks_that_coincide_fail_a_reindex_in_one_line(tmp_path):
    """A stored face (e.g. imported from an export) whose 5 landmarks are one point could not be
    aligned: reindex died with align.py's ValueError traceback."""
    gallery = gallery_with(tmp_path, replace(face(1), landmarks=np.full((5, 2), 8.0)))
    result = run("--gallery", gallery, "gallery", "reindex", "--model", "dlib-resnet")
    one_error_line(result, "landmarks: all points coincide")


def test_listing_no_gallery_uses_the_one_wording(tmp_path):
    result = run("--gallery", str(tmp_path / "none"), "gallery", "list")
    assert result.exit_code == 0 and f"{NoGalleryError(tmp_path / 'none')}; 0 people" in result.stderr
