"""The photo library in the truth store, on synthetic faces, against every backend (SQLite, and
PostgreSQL where installed): recording scanned files, library faces kept out of what identify
searches, naming (copies logged for the index), unnaming, removal, automatic attachment, clusters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facesys.errors import GalleryError, UnknownFaceError
from facesys.gallery.store.records import ScannedPhoto
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo


def record(store, number: int, *seeds: int, person: str | None = None) -> list[int]:
    """Record /library/<number>.jpg with a synthetic face per seed; returns their library ids."""
    return store.record_photo(photo(number), [library_face(s, person) for s in seeds], MODEL)


def test_recorded_faces_are_listed_but_never_searched_by_identify(store):
    store.add_face("Ann", face(1), MODEL)
    generation = store.generation
    ids = record(store, 1, 10, 11) + record(store, 2, 12)
    assert len(set(ids)) == 3
    assert store.face_count() == 1 and store.embeddings()[0].tolist() == [1] and store.people() == [("Ann", 1)]
    assert store.generation == generation and store.changes_since(generation).added.tolist() == []
    faces = store.library_faces()
    assert [(f.path, f.person, f.cluster, f.assigned) for f in faces] == [
        ("/library/1.jpg", None, None, None),
        ("/library/1.jpg", None, None, None),
        ("/library/2.jpg", None, None, None),
    ]
    assert faces[0].box == [20.0, 20, 110, 140] and faces[0].image_sha256 == photo(1).sha256
    np.testing.assert_array_equal(store.library_vectors(ids[::-1]), np.stack([library_face(s).embedding for s in (12, 11, 10)]))
    assert store.library_crops([ids[2], 999]) == {ids[2]: library_face(12).crop_jpeg}
    photos = store.library_photos()
    assert [(p.path, p.faces, p.sha256, p.model_id) for p in photos] == [
        ("/library/1.jpg", 2, photo(1).sha256, MODEL),
        ("/library/2.jpg", 1, photo(2).sha256, MODEL),
    ]
    stats = store.stats()
    assert (stats["faces"], stats["library_photos"], stats["library_faces"], stats["library_unnamed_faces"]) == (1, 2, 3, 3)
    assert store.check() == []


def test_recording_a_path_again_replaces_its_faces_and_an_update_keeps_them(store):
    old = record(store, 1, 10, 11)
    new = store.record_photo(photo(1, size=2000, sha="f" * 64), [library_face(12, frame=30)], MODEL)
    assert new[0] > max(old)  # library face ids are never reused
    faces = store.library_faces()
    assert [(f.id, f.frame, f.image_sha256) for f in faces] == [(new[0], 30, "f" * 64)]
    touched = photo(1, size=2000, sha="f" * 64)
    touched = type(touched)(touched.path, 2000, touched.mtime_ns + 5, touched.sha256)
    assert store.record_photo(touched, None, MODEL) == []
    (stored,) = store.library_photos()
    assert (stored.mtime_ns, stored.faces) == (touched.mtime_ns, 1) and [f.id for f in store.library_faces()] == new
    with pytest.raises(GalleryError, match="not in the library"):
        store.record_photo(photo(9), None, MODEL)


def test_an_unreadable_file_is_recorded_with_its_error_and_no_faces(store):
    bad = type(photo(3))("/library/3.jpg", 10, 1, "", "/library/3.jpg: corrupt or truncated image")
    assert store.record_photo(bad, [], MODEL) == []
    (stored,) = store.library_photos()
    assert (stored.error, stored.faces) == ("/library/3.jpg: corrupt or truncated image", 0)


def test_faces_of_another_model_are_refused(store):
    with pytest.raises(GalleryError, match="gallery model is test-model"):
        store.record_photo(photo(1), [library_face(1)], "other@ffff")
    assert store.library_photos() == []


def test_naming_copies_faces_into_the_enrolled_ones_and_logs_them(store):
    ids = record(store, 1, 10) + record(store, 2, 11) + record(store, 3, 12)
    generation = store.generation
    named = store.name_library_faces(ids[:2], "Ann")
    assert (named.name, named.faces, named.not_enrolled) == ("Ann", ids[:2], [])
    copies = [named.enrolled[i] for i in ids[:2]]
    assert store.people() == [("Ann", 2)]
    assert sorted(store.changes_since(generation).added.tolist()) == sorted(copies)
    np.testing.assert_array_equal(store.vectors(np.array(copies)), store.library_vectors(ids[:2]))
    records = {r.id: r for r in store.faces("Ann")}
    assert records[copies[0]].source == "/library/1.jpg" and records[copies[0]].image_sha256 == photo(1).sha256
    assert records[copies[0]].box == store.library_faces([ids[0]])[0].box
    assert store.crop(copies[1]) == library_face(11).crop_jpeg
    faces = {f.id: f for f in store.library_faces()}
    assert (faces[ids[0]].person, faces[ids[0]].assigned, faces[ids[0]].enrolled_face_id) == ("Ann", "user", copies[0])
    assert faces[ids[2]].person is None
    assert [f.id for f in store.library_faces(person="ann")] == ids[:2]
    assert [f.id for f in store.library_faces(unnamed=True)] == [ids[2]]
    event = store.audit_log(1)[0]
    assert (event.action, event.person, event.detail) == ("name_faces", "Ann", {"library_faces": ids[:2], "face_ids": copies})


def test_a_name_equal_ignoring_case_merges_into_the_existing_person(store):
    store.add_face("José Núñez", face(1), MODEL)
    ids = record(store, 1, 10)
    named = store.name_library_faces(ids, "  josé   NÚÑEZ ")
    assert named.name == "José Núñez" and store.people() == [("José Núñez", 2)]


def test_a_photo_is_enrolled_once_even_with_several_faces_named(store):
    group = record(store, 1, 10, 11)  # two faces of one photo (or two frames of one video)
    other = record(store, 2, 12)
    named = store.name_library_faces(group + other, "Ann")
    best = max(group, key=lambda i: store.library_faces([i])[0].score)
    assert set(named.enrolled) == {best, other[0]} and named.not_enrolled == [min(set(group) - {best})]
    assert store.people() == [("Ann", 2)]
    store.add_face("Bob", face(5), MODEL)
    enrolled_photo = store.record_photo(photo(5, sha=face(5).image_sha256), [library_face(13)], MODEL)
    with pytest.raises(GalleryError, match="would have no enrolled face"):
        store.name_library_faces(enrolled_photo, "Cy")
    assert store.library_faces(enrolled_photo)[0].person is None and "Cy" not in dict(store.people())


def test_naming_again_moves_a_face_and_its_copy_to_the_new_person(store):
    (first,) = record(store, 1, 10)
    (second,) = record(store, 2, 11)
    store.name_library_faces([first, second], "Ann")
    old_copy = store.library_faces([first])[0].enrolled_face_id
    generation = store.generation
    moved = store.name_library_faces([first], "Bob")
    assert store.people() == [("Ann", 1), ("Bob", 1)]
    changes = store.changes_since(generation)
    assert changes.removed.tolist() == [old_copy] and changes.added.tolist() == [moved.enrolled[first]]
    assert store.library_faces([first])[0].person == "Bob"
    again = store.name_library_faces([first], "bob")  # already Bob's, with its copy: nothing to do
    assert again.enrolled == {} and again.not_enrolled == [] and store.people() == [("Ann", 1), ("Bob", 1)]


def test_unnaming_removes_the_copies_and_a_person_left_without_faces(store):
    ids = record(store, 1, 10) + record(store, 2, 11)
    store.add_face("Bob", face(3), MODEL)
    named = store.name_library_faces(ids, "Ann")
    generation = store.generation
    assert store.unname_library_faces([ids[0]]) == [ids[0]]
    assert store.people() == [("Ann", 1), ("Bob", 1)]
    assert store.changes_since(generation).removed.tolist() == [named.enrolled[ids[0]]]
    assert store.unname_library_faces(ids) == [ids[1]]  # the first is unnamed already
    assert store.people() == [("Bob", 1)]
    assert all(f.person is None and f.assigned is None and f.enrolled_face_id is None for f in store.library_faces())
    with pytest.raises(UnknownFaceError, match="no library face #999999"):
        store.unname_library_faces([ids[0], 999999])


def test_removing_library_faces_removes_their_copies(store):
    ids = record(store, 1, 10) + record(store, 2, 11)
    store.name_library_faces([ids[0]], "Ann")
    assert store.remove_library_faces([ids[0]]) == 1
    assert store.people() == [] and store.face_count() == 0
    assert [f.id for f in store.library_faces()] == [ids[1]]
    assert [p.path for p in store.library_photos()] == ["/library/1.jpg", "/library/2.jpg"]  # the file stays recorded
    with pytest.raises(UnknownFaceError, match=f"#{ids[0]}"):
        store.remove_library_faces([ids[0]])
    with pytest.raises(UnknownFaceError):
        store.library_vectors([ids[0]])
    assert store.library_faces([ids[0]]) == []


def test_automatic_attachment_links_without_enrolling(store):
    store.add_face("Ann", face(1), MODEL)
    generation = store.generation
    ids = record(store, 1, 10, person="Ann") + record(store, 2, 11, person="Nobody Now")
    assert store.face_count() == 1 and store.generation == generation
    faces = store.library_faces()
    assert [(f.person, f.assigned, f.enrolled_face_id) for f in faces] == [("Ann", "auto", None), (None, None, None)]
    assert store.audit_log(1)[0].action == "auto_attach" and store.audit_log(1)[0].detail == {"library_faces": [ids[0]]}
    assert store.unname_library_faces([ids[0]]) == [ids[0]]  # undo: nothing was enrolled, nothing to remove
    assert store.people() == [("Ann", 1)] and store.library_faces([ids[0]])[0].person is None


def test_removing_a_person_erases_their_library_faces_and_remembers_them_without_their_data(store):
    ann = face(1)
    store.add_face("Ann", ann, MODEL)
    named = record(store, 1, 10, 13)  # a group photo: 10 is Ann (named below), 13 someone else
    auto = record(store, 2, 11, person="Ann")  # attached automatically, alone in its photo
    again = replace(library_face(16), embedding=ann.embedding)  # Ann's enrolled photo scanned: the same face, unnamed
    enrolled = store.record_photo(ScannedPhoto("/library/enrolled.jpg", 1, 1, ann.image_sha256), [again, library_face(14)], MODEL)
    other = record(store, 4, 15)
    store.name_library_faces(named[:1], "Ann")
    assert store.remove_person("Ann") == 2
    assert store.face_count() == 0 and store.people() == []
    assert [f.id for f in store.library_faces()] == sorted([named[1], enrolled[1], other[0]])
    assert store.library_faces(named[:1] + auto + enrolled[:1]) == []
    photos = {p.path: p for p in store.library_photos()}
    assert sorted(photos) == ["/library/1.jpg", "/library/4.jpg", "/library/enrolled.jpg"]  # 2.jpg had only Ann: no path kept
    assert (photos["/library/1.jpg"].faces, photos["/library/1.jpg"].erased) == (1, [[None, 20.0, 20.0, 110.0, 140.0]])
    assert photos["/library/enrolled.jpg"].erased == [[None, 26.0, 20.0, 110.0, 140.0]]
    assert photos["/library/4.jpg"].erased is None
    assert store.erased_photos() == {photo(2).sha256}  # only the hash of the file left without faces
    assert store.audit_log(1)[0].detail == {"faces": 2, "library_faces": 3}
    assert store.check() == []
    # the same bytes recorded again keep the marker; other bytes at the same path drop it
    store.record_photo(photo(1), [library_face(13)], MODEL)
    assert {p.path: p.erased for p in store.library_photos()}["/library/1.jpg"] == [[None, 20.0, 20.0, 110.0, 140.0]]
    store.record_photo(photo(1, sha="e" * 64), [library_face(13)], MODEL)
    assert {p.path: p.erased for p in store.library_photos()}["/library/1.jpg"] is None


def test_a_moved_file_keeps_its_faces_names_and_links(store):
    ids = record(store, 1, 10, 11)
    copy = store.name_library_faces(ids[:1], "Ann").enrolled[ids[0]]
    store.set_clusters(ids[1:], [7])
    before = store.library_faces()
    moved = ScannedPhoto("/library/Holiday/1.jpg", 1000, 5, photo(1).sha256)
    assert store.move_photo("/library/1.jpg", moved)
    (stored,) = store.library_photos()
    assert (stored.path, stored.sha256, stored.mtime_ns, stored.faces) == ("/library/Holiday/1.jpg", photo(1).sha256, 5, 2)
    after = store.library_faces()
    assert [(f.id, f.person, f.assigned, f.enrolled_face_id, f.cluster) for f in after] == [
        (ids[0], "Ann", "user", copy, None),
        (ids[1], None, None, None, 7),
    ]
    assert [f.path for f in after] == ["/library/Holiday/1.jpg"] * 2 and [f.id for f in before] == ids
    assert store.faces("Ann")[0].source == "/library/Holiday/1.jpg"  # the copy names the file where it is now
    assert store.audit_log(1)[0].action == "move_photos"
    record(store, 2, 12)
    assert not store.move_photo("/library/Holiday/1.jpg", ScannedPhoto("/library/2.jpg", 1, 1, photo(1).sha256))  # taken
    assert not store.move_photo("/library/2.jpg", ScannedPhoto("/library/3.jpg", 1, 1, photo(1).sha256))  # other bytes
    assert not store.move_photo("/library/404.jpg", moved)
    assert store.unname_library_faces(ids[:1]) == ids[:1] and store.face_count() == 0  # the link held: the copy goes


def test_removing_a_copy_leaves_the_library_face_named(store):
    (lib,) = record(store, 1, 10)
    ann = store.add_face("Ann", face(1), MODEL)
    copy = store.name_library_faces([lib], "Ann").enrolled[lib]
    store.remove_faces([copy])
    (after,) = store.library_faces([lib])
    assert (after.person, after.assigned, after.enrolled_face_id) == ("Ann", "user", None)
    store.remove_faces([ann])  # Ann's last enrolled face: Ann goes, and the library face is unnamed again
    (after,) = store.library_faces([lib])
    assert (after.person, after.assigned) == (None, None)


def test_clusters_are_set_in_one_go_and_their_highest_id_kept(store):
    ids = record(store, 1, 10, 11) + record(store, 2, 12)
    store.name_library_faces([ids[2]], "Ann")
    store.set_clusters(ids, [4, 4, 9])
    faces = {f.id: f for f in store.library_faces()}
    assert [faces[i].cluster for i in ids] == [4, 4, None]  # a named face belongs to no cluster
    assert [f.id for f in store.library_faces(cluster=4)] == ids[:2]
    assert store.meta()["last_cluster_id"] == "9"
    store.set_clusters(ids[:1], [2])
    assert store.meta()["last_cluster_id"] == "9" and store.audit_log(1)[0].action == "cluster"
    store.name_library_faces(ids[:1], "Bob")
    assert store.library_faces(ids[:1])[0].cluster is None


def test_forgetting_files_removes_their_faces_but_not_their_copies(store):
    ids = record(store, 1, 10) + record(store, 2, 11)
    copy = store.name_library_faces(ids[:1], "Ann").enrolled[ids[0]]
    assert store.forget_photos(["/library/1.jpg", "/library/404.jpg"]) == 1
    assert store.forget_photos(["/library/404.jpg"]) == 0
    assert [p.path for p in store.library_photos()] == ["/library/2.jpg"] and [f.id for f in store.library_faces()] == ids[1:]
    assert store.face_ids().tolist() == [copy]  # enrolled by naming: stays enrolled


def test_a_forgotten_file_found_again_is_linked_to_its_copy_again_not_attached_automatically(store):
    ids = record(store, 1, 10, 11)
    copy = store.name_library_faces(ids[:1], "Ann").enrolled[ids[0]]
    store.forget_photos(["/library/1.jpg"])  # e.g. scanned with force while its disk was away
    assert store.face_ids().tolist() == [copy]
    again = record(store, 1, 10, 11, person="Ann")  # identify matches the copy: the scan would attach it automatically
    faces = store.library_faces()
    assert [(f.id, f.person, f.assigned, f.enrolled_face_id) for f in faces] == [
        (again[0], "Ann", "user", copy),  # the user's name, and the link, are back
        (again[1], "Ann", "auto", None),
    ]
    changed = store.record_photo(photo(1, sha="c" * 64), [library_face(10, person="Ann")], MODEL)  # metadata edited
    (seen,) = store.library_faces(changed)
    assert (seen.person, seen.assigned, seen.enrolled_face_id) == ("Ann", "user", copy)  # same path, same face
    assert store.unname_library_faces(changed) == changed and store.face_count() == 0 and store.people() == []
    direct = store.add_face("Bob", replace(face(2), image_sha256=photo(2).sha256, embedding=library_face(12).embedding), MODEL)
    (auto,) = record(store, 2, 12, person="Bob")  # a photo enrolled directly is no copy: attached automatically only
    (seen,) = store.library_faces([auto])
    assert (seen.person, seen.assigned, seen.enrolled_face_id) == ("Bob", "auto", None) and store.face_ids().tolist() == [direct]


def test_check_reports_a_damaged_library_face(store, backend):
    (lib,) = record(store, 1, 10)
    bad = np.full(8, 0.5, "<f4").tobytes()  # norm 1.41
    if backend == "sqlite":
        store.db.execute("UPDATE library_faces SET embedding = ? WHERE id = ?", (bad, lib))
    else:
        store.conn.execute("UPDATE library_faces SET embedding = %s WHERE id = %s", (bad, lib))
    assert store.check() == [f"library face {lib}: embedding is not unit length (1.4142)"]


def test_sqlite_erases_removed_library_faces_forgotten_files_and_removed_people(tmp_path):
    from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore

    with SQLiteStore(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_face("Keeper", face(1), MODEL)
        removed = record(store, 1, 10)
        forgotten = store.record_photo(type(photo(2))("/library/secret-party.jpg", 1, 1, "b" * 64), [library_face(11)], MODEL)
        victim = record(store, 3, 12)
        store.name_library_faces(removed + victim, "Victim Person")
        store.remove_library_faces(removed)
        store.forget_photos(["/library/secret-party.jpg"])
        kept = record(store, 4, 13, 14)  # a group photo: 13 is the victim, 14 someone else
        store.name_library_faces(kept[:1], "Victim Person")
        store.remove_person("Victim Person")
        assert store.library_faces(victim + kept[:1]) == []  # erased with the person
        assert [p.path for p in store.library_photos()] == ["/library/1.jpg", "/library/4.jpg"] and forgotten
        data = b"".join(p.read_bytes() for p in store.folder.glob(DB_NAME + "*"))
    for seed in (10, 11, 12, 13):
        assert library_face(seed).crop_jpeg not in data and library_face(seed).embedding.astype("<f4").tobytes() not in data
    assert b"secret-party" not in data and b"Victim" not in data and b"/library/3.jpg" not in data
    assert library_face(14).crop_jpeg in data and b"/library/4.jpg" in data  # the other face stays, and its photo


@pytest.mark.parametrize("bad", [2**63, 10**30, 0, -1, 1.5, "1", True])
def test_ids_no_row_can_have_are_refused_with_a_typed_error_before_sql(store, bad):
    """Ids past SQLite's INTEGER / PostgreSQL's bigint overflowed in the driver (OverflowError: a
    500 or a traceback); every store entry point that takes an id refuses them as InvalidIdError."""
    from facesys.errors import InvalidIdError

    store.add_face("Ann", face(1), MODEL)
    ids = record(store, 1, 10)
    calls = [
        lambda: store.crop(bad),
        lambda: store.library_faces(ids=[bad]),
        lambda: store.library_crops([bad]),
        lambda: store.library_vectors([bad]),
        lambda: store.name_library_faces([*ids, bad], "Bob"),
        lambda: store.unname_library_faces([bad]),
        lambda: store.remove_library_faces([bad]),
    ]
    if bad != 0:  # cluster ids start at 0
        calls.append(lambda: store.library_faces(cluster=bad))
    for call in calls:
        with pytest.raises(InvalidIdError, match="no .* has this id"):
            call()
    if isinstance(bad, int) and not isinstance(bad, bool):  # remove_faces ignores ids no face has
        assert store.remove_faces([bad]) == {}
    else:
        with pytest.raises(InvalidIdError, match="no .* has this id"):
            store.remove_faces([bad])
    assert store.people() == [("Ann", 1)] and [(f.id, f.person) for f in store.library_faces()] == [(ids[0], None)]
