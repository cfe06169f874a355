"""A data subject's access request on every backend (tests/gallery/conftest.py): ``facesys gallery
export --person NAME`` writes everything held about that person and nothing about anyone else,
atomically; an unknown person writes nothing."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.errors import GalleryError, UnknownPersonError
from facesys.gallery import Gallery
from facesys.gallery.access import export_person, write_export
from facesys.gallery.store.records import ScannedPhoto
from facesys.models import ModelInfo
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo


@pytest.fixture()
def people(store):
    """Ann: two enrolled faces, a library face named by the user (enrolled as a copy), one attached
    by a scan, and an unnamed one that is the same face as her enrolled photo 2; Bob: one enrolled
    face and one attached; an unnamed stranger. Returns the crops of each."""
    store.add_faces([("Ann", face(1)), ("Ann", face(2)), ("Bob", face(3))], MODEL)
    named = store.record_photo(photo(1), [library_face(10)], MODEL)
    store.name_library_faces(named, "Ann")
    store.record_photo(photo(2), [library_face(11, "Ann"), library_face(12, "Bob"), library_face(13)], MODEL)
    again = face(2)  # photo 2 of the enrolled ones, found by a scan: the same face, unnamed
    same = library_face(14)
    same = type(same)(again.box, again.landmarks, again.score, same.crop_jpeg, again.crop_origin, again.embedding)
    store.record_photo(ScannedPhoto("/library/enrolled.jpg", 10, 1, again.image_sha256), [same], MODEL)
    store.rename_person("Ann", "Ann Lee")
    ann = [face(1).crop_jpeg, face(2).crop_jpeg] + [library_face(s).crop_jpeg for s in (10, 11, 14)]
    others = [face(3).crop_jpeg] + [library_face(s).crop_jpeg for s in (12, 13)]
    return ann, others


def read(path) -> tuple[dict, dict[str, bytes], bytes]:
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files["person.json"]), files, raw


def test_the_export_holds_everything_about_the_person_and_nothing_about_others(store, people, tmp_path):
    ann, others = people
    out = tmp_path / "out"
    out.mkdir()
    held = export_person(store, "ann lee", out / "ann.zip")
    document, files, raw = read(out / "ann.zip")
    assert document["format"] == "facesys-person-export" and document["person"]["name"] == "Ann Lee" == held.name
    assert document["person"]["created_at"] > 0 and document["model"]["model_id"] == MODEL
    enrolled = document["faces"]
    assert [f["source"] for f in enrolled] == ["/photos/1.jpg", "/photos/2.jpg", "/library/1.jpg"]
    assert [f["from_library"] for f in enrolled] == [False, False, True]
    first = enrolled[0]
    assert (first["image_sha256"], first["box"], first["score"]) == (face(1).image_sha256, [10, 20, 110, 140], 0.99)
    np.testing.assert_allclose(first["landmarks"], face(1).landmarks, atol=0.01)  # stored to 1/100 pixel
    assert first["crop_origin"] == [0, 0, 1] and first["model_id"] == MODEL
    assert files[first["crop"]] == face(1).crop_jpeg
    vector = np.load(io.BytesIO(files[first["embedding"]]), allow_pickle=False)
    np.testing.assert_array_equal(vector, face(1).embedding)
    library = document["library_faces"]
    assert [(f["path"], f["how"]) for f in library] == [
        ("/library/1.jpg", "named"),
        ("/library/2.jpg", "attached"),
        ("/library/enrolled.jpg", "same_face"),
    ]
    assert [files[f["crop"]] for f in library] == [library_face(s).crop_jpeg for s in (10, 11, 14)]
    assert [e["action"] for e in document["events"]] == ["enroll", "name_faces", "auto_attach", "rename"]
    for crop in ann:
        assert crop in raw  # stored as is: an examiner can open every JPEG
    text = b"".join(files.values())
    for crop in others:
        assert crop not in raw and crop not in text
    assert b"Bob" not in text and face(3).image_sha256.encode() not in text and face(3).embedding.tobytes() not in text
    assert [p.name for p in out.iterdir()] == ["ann.zip"]


def test_an_unknown_person_writes_nothing(store, people, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnknownPersonError, match="no person named 'Cy'"):
        export_person(store, "Cy", out / "cy.zip")
    assert list(out.iterdir()) == []


def test_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "out.zip").mkdir()  # cannot be replaced by a file
    with pytest.raises(GalleryError, match="out.zip: cannot write the export"):
        write_export(tmp_path / "out.zip", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["out.zip"] and list((tmp_path / "out.zip").iterdir()) == []
    with pytest.raises(GalleryError, match="cannot write the export"):
        write_export(tmp_path / "missing" / "out.zip", b"data")


def run(gallery, *args: str):
    return CliRunner().invoke(main, ["--gallery", str(gallery), "gallery", "export", *args])


def test_the_command(tmp_path):
    gallery = tmp_path / "g"
    Gallery(gallery).add_faces([("Ann", face(1)), ("Bob", face(3))], ModelInfo(MODEL, "test-model", "0" * 64, 8))
    result = run(gallery, "--person", "ann", str(tmp_path / "ann.zip"))
    assert result.exit_code == 0, result.output
    said = f"exported everything held about Ann to {tmp_path / 'ann.zip'}: 1 enrolled face, 0 library faces, 1 log event\n"
    assert result.stdout == said
    document, _, _ = read(tmp_path / "ann.zip")
    assert [f["image_sha256"] for f in document["faces"]] == [face(1).image_sha256]
    unknown = run(gallery, "--person", "Cy", str(tmp_path / "cy.zip"))
    assert unknown.exit_code == 2 and unknown.stderr == f"facesys: error: no person named 'Cy' in {gallery}\n"
    assert not (tmp_path / "cy.zip").exists() and not list(tmp_path.glob(".cy*"))
    nowhere = run(tmp_path / "none", "--person", "Ann", str(tmp_path / "x.zip"))
    assert nowhere.exit_code == 2 and len(nowhere.stderr.splitlines()) == 1 and not (tmp_path / "x.zip").exists()
