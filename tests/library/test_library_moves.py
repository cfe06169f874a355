"""Issue 23, holes 1 and 5, on LFW photos: a moved or renamed photo is the same photo (it keeps its
faces, their names and their links to the enrolled copies, so undoing a name undoes what it
enrolled); a sub-folder that vanished is not forgotten silently; removing a person erases their
library faces too, and a rescan does not bring them back."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facesys.errors import FacesysError
from facesys.gallery.gallery import Gallery
from facesys.gallery.store.sqlite import DB_NAME
from tests.conftest import data_path


def lfw_photos(folder, people: dict[str, int]) -> list:
    """Copy the first N LFW photos of each person into ``folder``; returns the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for person, count in people.items():
        for number in range(1, count + 1):
            name = f"{person}_{number:04d}.jpg"
            copies.append(shutil.copy(data_path("lfw", person, name), folder / name))
    return copies


@pytest.fixture()
def system(tmp_path, embedder):
    from facesys.system import FaceSystem

    return FaceSystem(tmp_path / "gallery", embedder=embedder)


def test_a_renamed_folder_keeps_names_and_links_and_unname_undoes_them(system, tmp_path):
    root = tmp_path / "tmp"
    lfw_photos(root / "2019", {"Colin_Powell": 6, "Hu_Jintao": 6})
    system.scan([root])
    system.cluster()
    with Gallery(system.gallery.location).open() as store:
        colin = [f for f in store.library_faces() if "Colin_Powell" in f.path]
    cluster = colin[0].cluster
    assert cluster is not None and {f.cluster for f in colin} == {cluster}
    named = system.name_cluster(cluster, "Wrong Name")
    assert len(named.enrolled) == 6

    (root / "2019").rename(root / "Holiday-2019")
    report = system.scan([root])
    assert (report.files["moved"], report.files["forgotten"], report.files["new"], report.processed) == (12, 0, 0, 0)
    found = system.find("Wrong Name")
    paths = [photo.path for photo in found.photos]
    assert len(paths) == len(set(paths)) == 6 and all("/Holiday-2019/Colin_Powell_" in path for path in paths)
    faces = [face for photo in found.photos for face in photo.faces]
    assert all(not face.automatic and face.library_face_id and face.face_id for face in faces)  # still the user's, linked
    with Gallery(system.gallery.location).open() as store:
        assert all(record.source in paths for record in store.faces("Wrong Name"))
        assert {f.assigned for f in store.library_faces(person="Wrong Name")} == {"user"}

    assert len(system.unname_faces([face.library_face_id for face in faces])) == 6
    probe = root / "Holiday-2019" / "Colin_Powell_0005.jpg"
    assert [face.name for face in system.identify(probe)] == [None]
    assert system.gallery.people() == []


def test_a_photo_moved_in_from_a_folder_not_scanned_now_keeps_its_name(system, tmp_path):
    (photo,) = lfw_photos(tmp_path / "old", {"Colin_Powell": 1})
    system.scan([tmp_path / "old"])
    with Gallery(system.gallery.location).open() as store:
        (face,) = store.library_faces()
    system.name_faces([face.id], "Colin")
    (tmp_path / "new").mkdir()
    shutil.move(photo, tmp_path / "new" / "renamed.jpg")
    report = system.scan([tmp_path / "new"])
    assert report.files["moved"] == 1 and report.processed == 0
    with Gallery(system.gallery.location).open() as store:
        (after,) = store.library_faces()
    moved = str(tmp_path / "new" / "renamed.jpg")
    assert (after.id, after.path, after.person, after.assigned) == (face.id, moved, "Colin", "user")


def test_a_vanished_sub_folder_is_not_forgotten_unless_forced(system, tmp_path):
    root = tmp_path / "photos"
    lfw_photos(root / "home", {"Colin_Powell": 1})
    lfw_photos(root / "disk" / "2019", {"Hu_Jintao": 2})
    system.scan([root])
    shutil.rmtree(root / "disk")  # unmounted
    with pytest.raises(FacesysError, match=r"photos/disk: this folder is gone, but 2 file\(s\) of it are in the library"):
        system.scan([root])
    with Gallery(system.gallery.location).open() as store:
        assert len(store.library_photos()) == 3
    (root / "home" / "Colin_Powell_0001.jpg").unlink()  # a file deleted from a folder that is there: forgotten
    lfw_photos(root / "disk" / "2019", {"Hu_Jintao": 1})  # half of the disk is back: its folder is there again
    report = system.scan([root])
    assert report.files["forgotten"] == 2 and report.files["unchanged"] == 1
    shutil.rmtree(root / "disk")
    report = system.scan([root], force=True)
    assert report.files["forgotten"] == 1
    with Gallery(system.gallery.location).open() as store:
        assert store.library_photos() == []


def test_removing_a_person_erases_their_library_faces_and_a_rescan_leaves_them_out(system, tmp_path):
    folder = tmp_path / "library"
    photos = lfw_photos(folder, {"Colin_Powell": 4, "Hu_Jintao": 2})
    assert system.enroll("Colin_Powell", photos[:4]).count("enrolled") == 4
    report = system.scan([folder])
    assert report.automatic >= 4
    gallery = Gallery(system.gallery.location)
    with gallery.open() as store:
        colin = [f for f in store.library_faces() if "Colin_Powell" in f.path]
        vectors = store.library_vectors([f.id for f in colin])
        crops = store.library_crops([f.id for f in colin])
        hu = [f.id for f in store.library_faces() if "Hu_Jintao" in f.path]
    assert len(colin) >= 4 and len(hu) >= 2

    assert gallery.remove("Colin_Powell") == 4
    with gallery.open() as store:
        left = store.library_faces()
        assert [f.id for f in left] == hu  # every face of Colin's photos was his (LFW: one face each)
        assert {p.path for p in store.library_photos()} == {f.path for f in left}
        assert len(store.erased_photos()) == 4
    data = b"".join(path.read_bytes() for path in Path(gallery.location).glob(DB_NAME + "*"))
    for face, vector in zip(colin, vectors, strict=True):
        assert vector.astype("<f4").tobytes() not in data and crops[face.id] not in data
    assert b"Colin_Powell" not in data  # no path, no name

    again = system.scan([folder])
    assert again.files["erased"] == 4 and again.files["unchanged"] == 2 and again.processed == 0
    with gallery.open() as store:
        assert [f.id for f in store.library_faces()] == hu


def test_a_face_where_an_erased_one_was_is_left_out_when_its_photo_is_read_again():
    from facesys.library.scan import _erased
    from tests.library.conftest import library_face

    erased = [[None, 20.0, 20.0, 110.0, 140.0], [30, 200.0, 20.0, 290.0, 140.0]]
    assert _erased(library_face(10), erased)  # box 20, 20, 110, 140: the same place
    assert _erased(library_face(12), erased)  # shifted by 2 px: still the same face
    assert not _erased(library_face(10, frame=30), erased)  # another frame of a video
    assert not _erased(replace(library_face(10), box=np.array([150.0, 20, 240, 140])), erased)  # someone beside
