"""The photo library on real faces (face_recognition's labelled photos; LFW for held-out probes):
an incremental scan, automatic attachment, clusters, naming, find, and unnamed faces kept out of
identify. Skipped without the data."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import UnknownClusterError, UnknownFaceError, UnknownPersonError
from facesys.gallery.gallery import Gallery
from tests.conftest import data_path
from tests.library.conftest import ENROLLED


@pytest.fixture()
def system(scanned, tmp_path, embedder):
    """A FaceSystem over a copy of the scanned gallery."""
    from facesys.system import FaceSystem

    return FaceSystem(scanned.copy(tmp_path), embedder=embedder)


def faces_in(gallery, path: str):
    """The library faces of one file."""
    with Gallery(gallery).open() as store:
        return [face for face in store.library_faces() if face.path == path]


def biden_probe():
    """A photo of Joe Biden that is not in the library (LFW's)."""
    return sorted(data_path("lfw", "Joseph_Biden").glob("*.jpg"))[0]


def test_a_second_scan_processes_nothing(scanned):
    files = len(scanned.labels)
    assert scanned.first.processed == files and scanned.first.files["new"] == files and scanned.first.files["error"] == 0
    assert scanned.first.faces >= sum(len(people) for people in scanned.labels.values())  # every labelled face, and maybe more
    assert scanned.second.processed == 0 and scanned.second.faces == 0
    assert scanned.second.files["unchanged"] == files and sum(scanned.second.files.values()) == files
    stats = Gallery(scanned.gallery).stats()
    assert stats["library_photos"] == files and stats["library_faces"] == scanned.first.faces
    assert stats["faces"] == 1  # only the photo enrolled by hand: scanned faces are not enrolled


def test_faces_of_an_enrolled_person_are_attached_automatically_and_only_theirs(scanned):
    with Gallery(scanned.gallery).open() as store:
        attached = store.library_faces(person=ENROLLED)
    assert len(attached) >= 5 and all(face.assigned == "auto" and face.enrolled_face_id is None for face in attached)
    assert {face.path for face in attached} <= scanned.files_of(ENROLLED)
    assert scanned.first.automatic == len(attached)


def test_unnamed_faces_never_appear_in_identify(system, scanned):
    probe = biden_probe()
    for face in system.identify(probe, top_k=5):
        assert face.name is None and {c.name for c in face.candidates} <= {ENROLLED}
    kit = sorted(scanned.files_of("Kit Harington"))[0]
    assert all(face.name is None for face in system.identify(kit))
    assert system.gallery.people() == [(ENROLLED, 1)]


def cluster_of(gallery, path: str) -> int:
    """The cluster of the only face of a one-person file."""
    (face,) = faces_in(gallery, path)
    assert face.cluster is not None
    return face.cluster


def test_a_named_cluster_is_identified_and_found_in_exactly_their_photos(system, scanned):
    biden = scanned.files_of("Joe Biden")
    single = sorted(path for path in biden if len(scanned.labels[path]) == 1)
    cluster = cluster_of(system.gallery.location, single[0])
    assert cluster_of(system.gallery.location, single[1]) == cluster
    assert all(face.name is None for face in system.identify(biden_probe()))
    named = system.name_cluster(cluster, "Joe Biden")
    assert named.name == "Joe Biden" and len(named.enrolled) == len(named.faces) == len(biden)
    assert any(face.name == "Joe Biden" for face in system.identify(biden_probe()))
    found = system.find("joe biden")
    assert found.name == "Joe Biden" and {photo.path for photo in found.photos} == biden
    assert all(len(photo.faces) == 1 and not photo.faces[0].automatic for photo in found.photos)
    with pytest.raises(UnknownClusterError, match=f"no cluster {cluster}"):
        system.name_cluster(cluster, "Joe Biden")  # its faces are named now: the cluster is gone


def test_find_lists_enrolled_and_automatic_photos_with_boxes(system, scanned):
    found = system.find(ENROLLED)
    paths = {photo.path for photo in found.photos}
    automatic = {photo.path for photo in found.photos if any(face.automatic for face in photo.faces)}
    assert automatic and automatic <= scanned.files_of(ENROLLED) and automatic <= paths
    enrolled = [photo for photo in found.photos if any(face.face_id is not None for face in photo.faces)]
    assert [photo.path for photo in enrolled] == [str(data_path("face_recognition", "barack_obama", "obama.jpg"))]
    assert all(len(face.box) == 4 for photo in found.photos for face in photo.faces)
    with pytest.raises(UnknownPersonError, match="no person named 'Nobody'"):
        system.find("Nobody")


def test_a_wrong_automatic_match_is_undone_without_touching_identify(system, scanned):
    automatic = [face.library_face_id for photo in system.find(ENROLLED).photos for face in photo.faces if face.automatic]
    with system.gallery.open() as store:
        generation = store.generation
    assert system.unname_faces(automatic[:1]) == automatic[:1]
    with system.gallery.open() as store:
        assert store.library_faces(automatic[:1])[0].person is None and store.generation == generation
    assert system.gallery.people() == [(ENROLLED, 1)]
    with pytest.raises(UnknownFaceError, match="no library face #999999"):
        system.unname_faces([999999])


def test_a_removed_face_stays_removed_when_the_folder_is_scanned_again(system, scanned):
    kit = sorted(scanned.files_of("Kit Harington"))[0]
    (face,) = faces_in(system.gallery.location, kit)
    assert system.remove_library_faces([face.id]) == 1
    assert faces_in(system.gallery.location, kit) == []
    again = system.scan([scanned.folder])
    assert again.processed == 0 and faces_in(system.gallery.location, kit) == []


def test_new_photos_join_the_existing_clusters_which_keep_their_ids(system, scanned, tmp_path):
    with system.gallery.open() as store:
        before = {face.id: face.cluster for face in store.library_faces(unnamed=True)}
    extra = tmp_path / "more"
    extra.mkdir()
    for photo in sorted(data_path("lfw", "Joseph_Biden").glob("*.jpg"))[1:3]:
        (extra / photo.name).write_bytes(photo.read_bytes())
    assert system.scan([extra]).files["new"] == 2
    run = system.cluster()
    assert run.placed >= 2
    with system.gallery.open() as store:
        after = {face.id: face.cluster for face in store.library_faces(unnamed=True)}
        new = [face for face in store.library_faces(unnamed=True) if face.id not in before]
    assert {i: after[i] for i in before} == before  # existing faces keep their clusters
    biden = cluster_of(system.gallery.location, sorted(p for p in scanned.files_of("Joe Biden") if "multi" not in p)[0])
    assert any(face.cluster == biden for face in new)  # the new Biden photos joined his cluster
    fresh = {face.cluster for face in new} - set(before.values()) - {None}  # None: too poor to group
    assert all(cluster > max(c for c in before.values() if c is not None) for cluster in fresh)


def test_the_clusters_are_listed_largest_first(system):
    clusters = system.clusters()
    with system.gallery.open() as store:
        clustered = [face for face in store.library_faces(unnamed=True) if face.cluster is not None]
        big = system.clusters(min_size=2)
        vectors = store.library_vectors(big[0].faces)
    sizes = [c.size for c in clusters]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(clustered) > 0
    assert big == [c for c in clusters if c.size >= 2]
    centre = vectors.mean(axis=0)
    distances = np.linalg.norm(vectors - centre, axis=1)
    assert distances[0] == distances.min()  # the most typical face first
