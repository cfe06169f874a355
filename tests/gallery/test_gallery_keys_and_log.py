"""The Gallery's API keys, audit log, one-face removal and crops, and its not-found errors, on
synthetic faces (no model)."""

from __future__ import annotations

import pytest

from facesys.errors import GalleryError, UnknownFaceError, UnknownKeyError, UnknownPersonError
from facesys.gallery import Gallery
from facesys.gallery.audit import acting_as, current_actor
from facesys.keys import hash_key
from facesys.models import ModelInfo
from tests.gallery.conftest import MODEL, face

INFO = ModelInfo(MODEL, "test-model", "0" * 64, 8)


@pytest.fixture()
def gallery(tmp_path) -> Gallery:
    """A gallery of Ann (faces 1, 2) and Bob (face 3)."""
    gallery = Gallery(tmp_path / "g")
    gallery.add_faces([("Ann", face(1)), ("Ann", face(2)), ("Bob", face(3))], INFO)
    return gallery


def test_a_missing_gallery_has_no_keys_no_log_and_nobody(tmp_path):
    gallery = Gallery(tmp_path / "none")
    assert gallery.keys() == [] and gallery.log() == [] and not gallery.has_keys() and gallery.key_for("fsk_x") is None
    with pytest.raises(UnknownPersonError, match="no person named 'Ann'"):
        gallery.faces("Ann")
    with pytest.raises(UnknownFaceError, match="no face #1"):
        gallery.remove_face(1)
    with pytest.raises(UnknownFaceError, match="no face #1"):
        gallery.crop(1)
    with pytest.raises(UnknownKeyError):
        gallery.revoke_key("ci")
    assert not (tmp_path / "none").exists()  # asking created nothing


def test_a_key_is_made_shown_once_found_by_itself_and_revoked(tmp_path):
    gallery = Gallery(tmp_path / "new")
    key = gallery.create_key("ci", "enroll")  # creates the gallery
    assert key.startswith("fsk_") and len(key) >= 40 and gallery.exists()
    assert gallery.has_keys() and gallery.key_for(key).scope == "enroll"
    assert gallery.key_for(key[:-1]) is None and gallery.key_for("") is None and gallery.key_for(hash_key(key)) is None
    other = gallery.create_key("laptop", "identify")
    listed = gallery.keys()  # (a list: ruff's SIM118 takes `in x.keys()` for a dict's)
    assert other != key and [k.name for k in listed] == ["ci", "laptop"]
    gallery.revoke_key("ci")
    assert gallery.key_for(key) is None and gallery.key_for(other).name == "laptop" and gallery.has_keys()
    with pytest.raises(UnknownKeyError):
        gallery.revoke_key("ci")
    gallery.revoke_key("laptop")
    assert not gallery.has_keys()
    with pytest.raises(GalleryError, match="scope 'root'"):
        gallery.create_key("x", "root")
    actions = [(e.action, e.detail["key"], e.actor) for e in gallery.log()]
    assert actions == [
        (a, k, current_actor())
        for a, k in [("key_revoke", "laptop"), ("key_revoke", "ci"), ("key_create", "laptop"), ("key_create", "ci")]
    ]


def test_one_face_is_removed_by_id_and_leaves_the_index(gallery):
    with acting_as("key ci"):
        assert gallery.remove_face(2) == "Ann"
    assert gallery.people() == [("Ann", 1), ("Bob", 1)]
    assert 2 not in gallery.search(face(2).embedding[None], 3).ids
    event = gallery.log(1)[0]
    assert (event.actor, event.action, event.person, event.detail) == ("key ci", "remove_faces", "Ann", {"face_ids": [2]})
    with pytest.raises(UnknownFaceError, match="no face #2"):
        gallery.remove_face(2)
    assert gallery.remove_face(3) == "Bob" and gallery.people() == [("Ann", 1)]  # Bob's last face: Bob goes


def test_a_crop_by_face_id(gallery):
    assert gallery.crop(3) == face(3).crop_jpeg
    with pytest.raises(UnknownFaceError):
        gallery.crop(4)


def test_unknown_people_are_their_own_error(gallery):
    for call in (lambda: gallery.faces("Cy"), lambda: gallery.remove("Cy"), lambda: gallery.rename("Cy", "Dee")):
        with pytest.raises(UnknownPersonError, match="no person named 'Cy'"):
            call()
    assert [f.id for f in gallery.faces("ann")] == [1, 2]


def test_import_is_logged_and_carries_no_keys_or_log(gallery, tmp_path):
    gallery.create_key("ci", "admin")
    gallery.export(tmp_path / "x.zip")
    copy = Gallery(tmp_path / "copy")
    with acting_as("key importer"):
        assert copy.import_(tmp_path / "x.zip") == (3, 0)
    assert copy.keys() == []
    events = copy.log(None)
    assert {e.actor for e in events} == {"key importer"}
    assert [(e.action, e.person, e.detail) for e in events if e.action == "import"] == [
        ("import", "Bob", {"face_ids": [3]}),
        ("import", "Ann", {"face_ids": [1, 2]}),
    ]
    assert not {"key_create", "enroll"} & {e.action for e in events}
