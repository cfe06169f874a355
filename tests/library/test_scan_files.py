"""What a scan does with the files of a folder (a few LFW photos): recursion, hidden and other
files, unreadable files reported and skipped, touched, changed, moved and deleted files, an
emptied folder, videos every Nth frame."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from facesys.errors import FacesysError
from facesys.gallery.gallery import Gallery
from tests.conftest import data_path

PEOPLE = ("Aaron_Peirsol", "Adam_Sandler")


@pytest.fixture()
def folder(tmp_path):
    """photos/a/ (two photos), photos/b/deep/ (one), a hidden folder, a text file and a broken JPEG."""
    lfw = data_path("lfw")
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    first, second = sorted((lfw / PEOPLE[0]).glob("*.jpg"))[:2]
    shutil.copy(first, root / "a" / "one.jpg")
    shutil.copy(second, root / "a" / "two.jpg")
    shutil.copy(sorted((lfw / PEOPLE[1]).glob("*.jpg"))[0], root / "b" / "deep" / "three.jpg")
    shutil.copy(first, root / ".thumbnails" / "one.jpg")
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a JPEG")
    return root


@pytest.fixture()
def system(tmp_path, embedder):
    from facesys.system import FaceSystem

    return FaceSystem(tmp_path / "gallery", embedder=embedder)


def scan(system, *paths, **options):
    """Scan; returns (report, {path: ScanResult})."""
    results = {}
    report = system.scan(list(paths), on_result=lambda r: results.__setitem__(r.path, r), **options)
    return report, results


def library(system) -> dict[str, list]:
    """path -> its library faces."""
    with Gallery(system.gallery.location).open() as store:
        faces = store.library_faces()
    out: dict[str, list] = {}
    for face in faces:
        out.setdefault(face.path, []).append(face)
    return out


def test_folders_are_scanned_recursively_and_a_bad_file_is_reported_and_skipped(system, folder):
    report, results = scan(system, folder)
    photos = {str((folder / name).resolve()) for name in ("a/one.jpg", "a/two.jpg", "b/deep/three.jpg")}
    broken = str((folder / "broken.jpg").resolve())
    assert set(results) == photos | {broken}  # nothing hidden, no text file
    assert {results[p].status for p in photos} == {"new"} and all(results[p].faces >= 1 for p in photos)
    assert results[broken].status == "error" and results[broken].error.startswith(broken + ": ")
    assert report.files["new"] == 3 and report.files["error"] == 1 and report.other_files == 1
    assert set(library(system)) == photos
    again, results = scan(system, folder)
    assert again.processed == 0 and again.files["unchanged"] == 3
    assert results[broken].status == "error" and not results[broken].processed  # reported again, not read again


def test_touched_changed_moved_and_deleted_files(system, folder):
    scan(system, folder)
    before = library(system)
    one, two, three = (str((folder / n).resolve()) for n in ("a/one.jpg", "a/two.jpg", "b/deep/three.jpg"))
    with Gallery(system.gallery.location).open() as store:
        old = store.library_vectors([face.id for face in before[two]])
    stat = os.stat(one)
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes
    shutil.copy(sorted(data_path("lfw", PEOPLE[1]).glob("*.jpg"))[1], two)  # changed
    (folder / "b" / "deep").rename(folder / "b" / "moved")  # moved: new path, old one gone
    (folder / "broken.jpg").unlink()  # deleted
    report, results = scan(system, folder)
    moved = str((folder / "b" / "moved" / "three.jpg").resolve())
    assert (results[one].status, results[one].processed) == ("unchanged", False)
    assert results[two].status == "changed" and (results[moved].status, results[moved].processed) == ("moved", False)
    assert three not in results and results[str((folder / "broken.jpg").resolve())].status == "forgotten"
    assert report.processed == 1 and report.files["moved"] == 1 and report.files["forgotten"] == 1
    after = library(system)
    assert [f.id for f in after[one]] == [f.id for f in before[one]]
    assert min(f.id for f in after[two]) > max(f.id for face in before.values() for f in face)
    assert three not in after and [f.id for f in after[moved]] == [f.id for f in before[three]]  # the same photo, same faces
    with Gallery(system.gallery.location).open() as store:
        new = store.library_vectors([face.id for face in after[two]])
    assert not np.allclose(old[0], new[0], atol=0.05)  # the new content's face
    third, _ = scan(system, folder)
    assert third.processed == 0  # the touched file's new time was recorded


def test_a_folder_emptied_is_forgotten_only_when_forced(system, folder):
    scan(system, folder / "a")
    for photo in (folder / "a").iterdir():
        photo.unlink()
    with pytest.raises(FacesysError, match="holds no photo now, but 2 file"):
        system.scan([folder / "a"])
    assert len(library(system)) == 2
    report, _ = scan(system, folder / "a", force=True)
    assert report.files["forgotten"] == 2 and report.forgotten_faces >= 2 and library(system) == {}


def test_a_missing_folder_is_an_error_naming_it(system, tmp_path):
    with pytest.raises(FacesysError, match="nowhere: no such file or folder"):
        system.scan([tmp_path / "nowhere"])


def test_videos_are_scanned_every_nth_frame_only_when_asked(system, tmp_path):
    import cv2

    frame = cv2.imread(str(sorted(data_path("lfw", PEOPLE[0]).glob("*.jpg"))[0]))
    folder = tmp_path / "videos"
    folder.mkdir()
    video = folder / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    if not writer.isOpened():
        pytest.skip("opencv cannot write MJPG AVI here")
    for _ in range(7):
        writer.write(frame)
    writer.release()
    report, _ = scan(system, folder)
    assert report.videos_skipped == 1 and library(system) == {}
    report, results = scan(system, folder, every=3)
    (faces,) = library(system).values()
    assert report.files["new"] == 1 and sorted({f.frame for f in faces}) == [0, 3, 6]
    assert results[str(video.resolve())].faces == len(faces)


def test_symbolic_link_loops_are_reported_one_line_each_and_the_rest_is_scanned(system, folder):
    """A link to itself, two links to each other and a folder link back up the tree: each loop is
    one error naming it (Path.resolve raised RuntimeError out of the scan before), the photos are scanned."""
    (folder / "a" / "self.jpg").symlink_to("self.jpg")
    (folder / "a" / "ping.jpg").symlink_to("pong.jpg")
    (folder / "a" / "pong.jpg").symlink_to("ping.jpg")
    (folder / "b" / "deep" / "up").symlink_to("../..", target_is_directory=True)  # a cycle os.walk does not follow
    report, results = scan(system, folder)
    loops = {str(folder / "a" / name) for name in ("self.jpg", "ping.jpg", "pong.jpg")}
    assert {path for path, r in results.items() if r.status == "error"} == loops | {str((folder / "broken.jpg").resolve())}
    assert all(results[p].error == f"{p}: cannot read (a loop of symbolic links)" for p in loops)
    assert report.files["new"] == 3 and len(library(system)) == 3
    with pytest.raises(FacesysError, match="self.jpg: a symbolic link to nothing"):
        system.scan([folder / "a" / "self.jpg"])
