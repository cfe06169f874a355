"""The truth-store interface on synthetic faces, run against every backend (tests/gallery/conftest.py):
people, duplicates, names, models, generations, the change log, settings."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery.store import DuplicatePhotoError, NameConflictError
from tests.gallery.conftest import MODEL, face


def test_faces_people_and_embeddings(store):
    first = store.add_face("Ann", face(1), MODEL)
    store.add_face("Ann", face(2), MODEL)
    store.add_face("Bob", face(3), MODEL)
    assert store.people() == [("Ann", 2), ("Bob", 1)]
    ids, vectors, names = store.embeddings()
    assert ids.tolist()[0] == first and names == ["Ann", "Ann", "Bob"]
    np.testing.assert_array_equal(vectors[2], face(3).embedding)
    record = store.faces("Bob")[0]
    assert record.source == "/photos/3.jpg" and record.box == [10, 20, 110, 140]
    assert store.person_of_image(face(2).image_sha256) == "Ann"


def test_same_photo_twice_is_refused_naming_its_owner(store):
    store.add_face("Ann", face(1), MODEL)
    with pytest.raises(DuplicatePhotoError, match="already enrolled as 'Ann'") as caught:
        store.add_face("Bob", face(1), MODEL)
    assert caught.value.owner == "Ann"
    assert store.people() == [("Ann", 1)]


def test_add_faces_is_all_or_nothing(store):
    store.add_face("Ann", face(1), MODEL)
    generation = store.generation
    with pytest.raises(DuplicatePhotoError):
        store.add_faces([("Bob", face(2)), ("Cy", face(3)), ("Dee", face(1))], MODEL)
    assert store.people() == [("Ann", 1)] and store.generation == generation
    assert store.add_faces([("Bob", face(2)), ("Cy", face(3))], MODEL) == [2, 3]


def test_every_change_bumps_the_generation(store):
    g0 = store.generation
    store.add_face("Ann", face(1), MODEL)
    store.rename_person("Ann", "Anne")
    store.remove_person("Anne")
    assert store.generation == g0 + 3


@pytest.mark.parametrize(
    "name", ["Zoë Ñúñez", "李小龍", "../../etc/passwd", "'; DROP TABLE people; --", "x" * 200, "O'Brien-Smith"]
)
def test_names_are_data(store, name):
    store.add_face(name, face(5), MODEL)
    assert store.people() == [(name, 1)]
    assert store.faces(name)[0].person == name


@pytest.mark.parametrize(
    ("given", "stored"),
    [(" padded ", "padded"), ("Ann  Lee", "Ann Lee"), ("Jose\u0301 Nu\u0301n\u0303ez", "Jos\u00e9 N\u00fa\u00f1ez")],
)
def test_names_are_normalised(store, given, stored):
    store.add_face(given, face(5), MODEL)
    assert store.people() == [(stored, 1)]
    assert store.faces(given)[0].person == stored  # found by any spelling that normalises the same


def test_a_name_differing_only_in_case_or_form_is_the_same_person(store):
    store.add_face("José Núñez", face(1), MODEL)
    store.add_face("Jose\u0301 Nu\u0301n\u0303ez", face(2), MODEL)  # NFD, as macOS folder names are
    assert store.people() == [("José Núñez", 2)]
    with pytest.raises(NameConflictError, match="'José Núñez' exists already") as caught:
        store.add_face("josé núñez", face(3), MODEL)
    assert caught.value.existing == "José Núñez"
    store.add_face("Bob", face(4), MODEL)
    with pytest.raises(GalleryError, match="already exists"):
        store.rename_person("Bob", "JOSÉ NÚÑEZ")
    store.rename_person("Bob", "BOB")  # a person may change the case of their own name
    assert store.remove_person("bob") == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a\nb", "control"),
        ("x" * 201, "at most 200"),
        ("a\u2028b", "control"),
        ("a\x85b", "control"),
        ("evil\u202egnp.exe", "U\\+202E"),
        ("zero\u200bwidth", "U\\+200B"),
        ("Unknown", "reserved"),
    ],
)
def test_bad_names_are_refused(store, name, message):
    with pytest.raises(GalleryError, match=message):
        store.add_face(name, face(5), MODEL)
    assert store.people() == []


def test_rename_and_remove(store):
    store.add_face("Ann", face(1), MODEL)
    store.add_face("Bob", face(2), MODEL)
    with pytest.raises(GalleryError, match="already exists"):
        store.rename_person("Ann", "Bob")
    with pytest.raises(GalleryError, match="no person named 'Cy'"):
        store.rename_person("Cy", "Dee")
    store.rename_person("Ann", "Anne")
    assert store.remove_person("Anne") == 1
    with pytest.raises(GalleryError, match="no person named 'Anne'"):
        store.remove_person("Anne")
    assert store.people() == [("Bob", 1)]


def test_another_model_is_refused(store):
    with pytest.raises(GalleryError, match="gallery model is test-model"):
        store.add_face("Ann", face(1), "other@ffff")
    assert store.people() == []


def test_settings_are_stored_and_cleared(store):
    assert store.setting("verify_threshold") is None
    store.set_setting("verify_threshold", 0.35)
    assert float(store.setting("verify_threshold")) == 0.35
    store.set_setting("verify_threshold", None)
    assert store.setting("verify_threshold") is None


def test_changes_since_a_generation_name_added_and_removed_faces(store):
    a = store.add_face("Ann", face(1), MODEL)
    start = store.generation
    b = store.add_face("Bob", face(2), MODEL)
    c = store.add_face("Cy", face(3), MODEL)
    store.remove_person("Ann")
    store.remove_person("Cy")  # added and removed since start: not a change to follow
    store.rename_person("Bob", "Robert")
    changes = store.changes_since(start)
    assert changes.added.tolist() == [b] and changes.removed.tolist() == [a]
    assert store.changes_since(store.generation).added.tolist() == []
    assert store.changes_since(store.generation + 1) is None  # the future is unknown
    assert c not in store.face_ids()


def test_replacing_every_embedding_ends_the_change_log(store):
    store.add_face("Ann", face(1), MODEL)
    before = store.generation
    store.replace_embeddings("other@1", "other", "1" * 64, 8, {1: face(2).embedding})
    assert store.changes_since(before) is None and store.model_id == "other@1"
    np.testing.assert_array_equal(store.vectors(np.array([1])), face(2).embedding[None])


def test_ids_are_never_reused_and_each_store_has_its_own_id(store):
    first = store.add_face("a", face(1), MODEL)
    store.remove_person("a")
    assert store.add_face("b", face(2), MODEL) > first
    assert len(store.gallery_id) >= 16


def test_vectors_and_names_by_id(store):
    ids = [store.add_face(n, face(i), MODEL) for i, n in enumerate(["a", "b", "a"])]
    np.testing.assert_array_equal(store.vectors(np.array(ids[::-1])), np.stack([face(i).embedding for i in (2, 1, 0)]))
    assert store.names_of(np.array([ids[1], -1, 999])) == {ids[1]: "b"}
    assert store.face_count() == 3 and store.face_ids().tolist() == ids
