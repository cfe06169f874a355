"""The truth-store interface on synthetic faces, run against every backend (tests/gallery/conftest.py):
people, duplicates, names, models, generations, the change log, settings, API keys, the audit log."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from facesys.errors import DuplicatePhotoError, GalleryError, NameConflictError, UnknownKeyError, UnknownPersonError
from facesys.gallery.audit import acting_as
from facesys.gallery.store.records import ERASE_PENDING
from facesys.keys import hash_key, new_key
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
    with pytest.raises(UnknownPersonError, match="no person named 'Cy'"):
        store.rename_person("Cy", "Dee")
    store.rename_person("Ann", "Anne")
    assert store.remove_person("Anne") == 1
    with pytest.raises(UnknownPersonError, match="no person named 'Anne'"):
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


def test_remove_faces_says_whose_faces_went_and_ignores_unknown_ids(store):
    ann = store.add_faces([("Ann", face(1)), ("Ann", face(2))], MODEL)
    bob = store.add_face("Bob", face(3), MODEL)
    generation, events = store.generation, len(store.audit_log(None))
    assert store.remove_faces([999, -1]) == {}
    assert store.generation == generation and len(store.audit_log(None)) == events  # nothing changed, nothing logged
    assert store.remove_faces([ann[0], bob, 999]) == {ann[0]: "Ann", bob: "Bob"}
    assert store.people() == [("Ann", 1)] and store.face_ids().tolist() == [ann[1]]


def test_one_crop_by_face_id(store):
    face_id = store.add_face("Ann", face(1), MODEL)
    assert store.crop(face_id) == face(1).crop_jpeg
    assert store.crop(face_id + 1) is None


# -- API keys -----------------------------------------------------------------------------------


def test_api_keys_are_stored_by_hash_listed_found_and_revoked(store):
    ci, laptop = new_key(), new_key()
    store.add_api_key("ci", "enroll", hash_key(ci))
    store.add_api_key(" laptop ", "identify", hash_key(laptop))
    assert store.has_api_keys()
    listed = store.api_keys()
    assert [(k.name, k.scope, k.active) for k in listed] == [("ci", "enroll", True), ("laptop", "identify", True)]
    assert listed[0].created_at <= listed[1].created_at
    found = store.api_key_for_hash(hash_key(ci))
    assert (found.name, found.scope, found.revoked_at) == ("ci", "enroll", None)
    assert store.api_key_for_hash(hash_key(new_key())) is None
    store.revoke_api_key("ci")
    assert store.api_key_for_hash(hash_key(ci)) is None  # a revoked key opens nothing
    assert store.api_key_for_hash(hash_key(laptop)).name == "laptop"
    revoked = store.api_keys()[0]
    assert revoked.name == "ci" and revoked.revoked_at >= revoked.created_at and not revoked.active
    with pytest.raises(UnknownKeyError, match="no active key named 'ci'"):
        store.revoke_api_key("ci")
    store.revoke_api_key("laptop")
    assert not store.has_api_keys() and len(store.api_keys()) == 2


def test_a_second_active_key_of_one_name_is_refused_until_the_first_is_revoked(store):
    first, second = new_key(), new_key()
    store.add_api_key("ci", "identify", hash_key(first))
    with pytest.raises(GalleryError, match="active key named 'ci' exists already"):
        store.add_api_key("ci", "admin", hash_key(second))
    assert [k.scope for k in store.api_keys()] == ["identify"]
    store.revoke_api_key("ci")
    store.add_api_key("ci", "admin", hash_key(second))
    assert store.api_key_for_hash(hash_key(second)).scope == "admin"
    assert [k.active for k in store.api_keys()] == [False, True]


@pytest.mark.parametrize(
    ("name", "scope", "key_hash", "message"),
    [
        ("ci", "root", None, "scope 'root'"),
        ("", "identify", None, "empty"),
        ("  ", "identify", None, "empty"),
        ("a\nb", "identify", None, "U\\+000A"),
        ("a\u202eb", "identify", None, "U\\+202E"),
        ("k" * 101, "identify", None, "at most 100"),
        ("ci", "identify", "fsk_not-a-hash", "sha256 hash"),
    ],
)
def test_bad_keys_are_refused(store, name, scope, key_hash, message):
    with pytest.raises(GalleryError, match=message):
        store.add_api_key(name, scope, key_hash or hash_key(new_key()))
    assert store.api_keys() == [] and not store.has_api_keys()


# -- the audit log ------------------------------------------------------------------------------


def actions(store) -> list[tuple[str, str | None, dict]]:
    """(action, person, detail) of every event, oldest first."""
    return [(e.action, e.person, e.detail) for e in reversed(store.audit_log(None))]


def test_every_change_writes_one_audit_event_by_the_current_actor(store):
    start = len(store.audit_log(None))  # the fixture bound the model
    key = new_key()
    with acting_as("key ci"):
        ids = store.add_faces([("Ann", face(1)), ("Bob", face(2)), ("Ann", face(3))], MODEL)
        store.rename_person("Bob", "Robert")
        store.remove_faces([ids[2]])
        store.set_setting("verify_threshold", 0.5)
        store.set_setting("verify_threshold", None)
        store.add_api_key("laptop", "admin", hash_key(key))
        store.revoke_api_key("laptop")
        store.remove_person("Robert")
        store.replace_embeddings("other@1", "other", "1" * 64, 8, {ids[0]: face(4).embedding})
    store.add_faces([("Cy", face(5))], "other@1", action="import")
    events = store.audit_log(None)
    assert len(events) == start + 11
    assert [e.actor for e in events[1:11]] == ["key ci"] * 10
    assert events[0].actor.startswith("local user ")  # outside acting_as
    assert actions(store)[start:] == [
        ("enroll", "Ann", {"face_ids": [ids[0], ids[2]]}),
        ("enroll", None, {"face_ids": [ids[1]]}),  # Robert, since removed
        ("rename", None, {}),
        ("remove_faces", "Ann", {"face_ids": [ids[2]]}),
        ("set_setting", None, {"key": "verify_threshold", "value": 0.5}),
        ("set_setting", None, {"key": "verify_threshold", "value": None}),
        ("key_create", None, {"key": "laptop", "scope": "admin"}),
        ("key_revoke", None, {"key": "laptop", "scope": "admin"}),
        ("remove_person", None, {"faces": 1}),
        ("replace_embeddings", None, {"model_id": "other@1", "faces": 1}),
        ("import", "Cy", {"face_ids": [ids[2] + 1]}),
    ]
    assert events[-1].action == "set_model" and events[-1].detail["model_id"] == MODEL
    assert store.audit_log(2) == events[:2] and store.audit_log(0) == []


def test_a_change_that_fails_logs_nothing(store):
    store.add_face("Ann", face(1), MODEL)
    before = store.audit_log(None)
    with pytest.raises(DuplicatePhotoError):
        store.add_faces([("Bob", face(2)), ("Cy", face(1))], MODEL)
    with pytest.raises(UnknownPersonError):
        store.remove_person("Nobody")
    assert store.audit_log(None) == before


def test_removing_nobody_without_faces_logs_nothing(store):
    before = len(store.audit_log(None))
    assert store.remove_empty_people() == 0 and len(store.audit_log(None)) == before


def test_removing_faces_removes_only_their_people_left_without_faces(store):
    """Removing faces deletes the people whose faces went and who have none left (SQLite deleted
    every person without faces); another person without faces stays until remove_empty_people,
    the explicit repair, which logs it."""
    ann = store.add_face("Ann", face(1), MODEL)
    store.add_face("Bob", face(2), MODEL)
    with store.transaction():
        store._person_id("Nobody", create=True)  # as a damaged or older gallery may hold
    assert store.remove_faces([ann]) == {ann: "Ann"}
    assert store.people() == [("Bob", 1), ("Nobody", 0)]
    assert store.remove_empty_people() == 1 and store.people() == [("Bob", 1)]
    event = store.audit_log(1)[0]
    assert (event.action, event.person, event.detail) == ("remove_empty_people", None, {"people": 1})


def test_a_removal_is_marked_for_erasure_until_its_freed_space_is_erased(store, monkeypatch):
    store.add_face("Ann", face(1), MODEL)
    monkeypatch.setattr(store, "erase_freed_pages", lambda: None)  # as if killed after the commit
    store.remove_person("Ann")
    assert ERASE_PENDING in store.meta()
    monkeypatch.undo()
    store.erase_freed_pages()
    assert ERASE_PENDING not in store.meta()


def test_check_and_salvage_name_bad_rows(store):
    ids = store.add_faces([("Ann", face(1)), ("Bob", face(2))], MODEL)
    assert store.check() == []
    with store.transaction():
        store._execute("UPDATE faces SET embedding = ? WHERE id = ?", (b"\0" * 12, ids[1]))
        store._person_id("Nobody", create=True)
    assert store.check() == [
        f"face {ids[1]}: embedding has 3 values, the gallery's dimension is 8",
        "person 'Nobody' has no face",
    ]
    stats = store.stats()
    assert (stats["people"], stats["faces"], stats["gallery"]) == (3, 2, store.location) and stats["database_bytes"] > 0
    records, failed = store.salvage()
    assert [r.person for r, _, _ in records] == ["Ann"] and failed == 1


def test_the_log_keeps_no_name_path_or_hash_of_a_removed_person(store):
    victim = face(7)
    with acting_as("key ci"):
        ids = store.add_faces([("Victim Person", victim), ("Victim Person", face(8)), ("Other", face(9))], MODEL)
        store.rename_person("Victim Person", "Victim Renamed")
        store.remove_faces([ids[1]])
        store.remove_person("Victim Renamed")
    events = store.audit_log(None)
    theirs = [e for e in events if e.action in ("enroll", "rename", "remove_faces", "remove_person") and e.person != "Other"]
    assert [e.action for e in theirs] == ["remove_person", "remove_faces", "rename", "enroll"]
    assert {e.person for e in theirs} == {None} and len({e.person_id for e in theirs}) == 1
    assert theirs[0].person_id is not None
    text = json.dumps([e.to_dict() for e in events])
    for secret in ("Victim", victim.source, victim.image_sha256, face(8).source):
        assert secret not in text


def test_person_ids_are_never_reused(store):
    store.add_face("Ann", face(1), MODEL)
    store.remove_person("Ann")
    store.add_face("Bob", face(2), MODEL)  # would take Ann's id if ids were reused
    enrolled = [e for e in store.audit_log(None) if e.action == "enroll"]
    assert [e.person for e in enrolled] == ["Bob", None]
    assert enrolled[0].person_id > enrolled[1].person_id


def test_keys_and_log_carried_into_a_rebuilt_store_keep_naming_the_right_people(store, second_store):
    kept, revoked = new_key(), new_key()
    with acting_as("key old"):
        store.add_faces([("Ann", face(1)), ("Bob", face(2))], MODEL)
        store.remove_person("Bob")
        store.add_api_key("kept", "admin", hash_key(kept))
        store.add_api_key("gone", "enroll", hash_key(revoked))
        store.revoke_api_key("gone")
    carried = store.salvage_keys_and_log()
    assert [(k.name, k.active, h) for k, h in carried.keys] == [
        ("kept", True, hash_key(kept)),
        ("gone", False, hash_key(revoked)),
    ]
    assert [(e.action, e.person) for e in carried.events][1:3] == [("enroll", "Ann"), ("enroll", None)]
    # the rebuilt store has other people first: old person ids would name the wrong ones
    second_store.add_faces([("Zed", face(3)), ("Yan", face(4)), ("Ann", face(1))], MODEL)
    second_store.restore_keys_and_log(carried, {"faces": 1, "lost": 0})
    assert second_store.api_key_for_hash(hash_key(kept)).name == "kept"
    assert second_store.api_key_for_hash(hash_key(revoked)) is None
    assert [(k.name, k.active) for k in second_store.api_keys()] == [("kept", True), ("gone", False)]
    events = second_store.audit_log(None)
    assert events[0].action == "repair" and events[0].detail == {"faces": 1, "lost": 0}
    old = [e for e in events if e.actor == "key old"]
    assert [(e.action, e.person) for e in old] == [
        ("key_revoke", None),
        ("key_create", None),
        ("key_create", None),
        ("remove_person", None),
        ("enroll", None),
        ("enroll", "Ann"),
    ]
    assert old[3].person_id == old[4].person_id and old[3].person_id not in {e.person_id for e in events if e.person}
    assert [e.at for e in old] == [e.at for e in carried.events[::-1] if e.actor == "key old"]
    second_store.restore_keys_and_log(carried, {})  # again: keys already there are not doubled
    assert len(second_store.api_keys()) == 2


def test_a_keys_lifetime_last_use_and_rate_are_stored_and_carried_into_a_rebuilt_store(store, second_store):
    limited, expired = new_key(), new_key()
    store.add_api_key("limited", "enroll", hash_key(limited), expires_at=time.time() + 3600, rate="10/s")
    store.add_api_key("expired", "admin", hash_key(expired), expires_at=time.time() - 1)
    assert store.api_key_for_hash(hash_key(expired)) is None  # an expired key opens nothing
    assert store.api_key_for_hash(hash_key(expired), any_state=True).refusal() == "expired"
    assert store.has_api_keys() and [k.rate for k in store.api_keys()] == ["10/second", None]
    store.record_key_uses({hash_key(limited): 2000.0})
    store.record_key_uses({hash_key(limited): 1000.0})  # another process's older use: the time never goes back
    found = store.api_key_for_hash(hash_key(limited))
    assert (found.last_used_at, found.rate) == (2000.0, "10/second")
    with pytest.raises(GalleryError, match="rate '5/week'"):
        store.add_api_key("weekly", "identify", hash_key(new_key()), rate="5/week")
    second_store.restore_keys_and_log(store.salvage_keys_and_log(), {"faces": 0, "lost": 0})
    assert second_store.api_keys() == store.api_keys()
