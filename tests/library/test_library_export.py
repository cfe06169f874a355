"""Exports carry the photo library (format version 2): a round trip keeps its files, faces, names,
clusters, links to enrolled copies and erased markers, on every backend; version 1 exports (no
library) still import; hostile library entries are refused in one line naming the entry, with
nothing written."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery.portable import export_gallery, import_gallery
from facesys.gallery.store.records import ScannedPhoto
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo


def record(store, number: int, *seeds: int, person: str | None = None) -> list[int]:
    """Record /library/<number>.jpg with a synthetic face per seed; returns their library ids."""
    return store.record_photo(photo(number), [library_face(s, person) for s in seeds], MODEL)


def build_library(store) -> None:
    """Enrolled Ann and Bob; a face named Carol (copied), one attached to Ann automatically, two
    clusters, and Dan removed (an erased file and an erased marker)."""
    store.add_faces([("Ann", face(1)), ("Bob", face(2))], MODEL)
    group = record(store, 1, 10, 11)
    record(store, 2, 12, person="Ann")
    crowd = record(store, 3, 13, 14)
    store.add_face("Dan", face(3), MODEL)
    store.record_photo(photo(3), [library_face(13), library_face(14), library_face(16, "Dan")], MODEL)
    crowd = [f.id for f in store.library_faces() if f.path == "/library/3.jpg" and f.person is None]
    record(store, 4, 15, person="Dan")
    store.name_library_faces(group[:1], "Carol")
    store.set_clusters([group[1], *crowd], [5, 5, 6])
    assert store.remove_person("Dan") == 1


def library_state(store) -> tuple:
    """The library as comparable values: ids replaced by paths and by the copy's image sha256."""
    shas = {f.id: f.image_sha256 for f in store.faces()}
    photos = [(p.path, p.size, p.mtime_ns, p.sha256, p.faces, p.error, p.model_id, p.scanned_at, p.erased)
              for p in store.library_photos()]  # fmt: skip
    faces = store.library_faces()
    rows = [(f.path, f.frame, f.box, f.landmarks, f.score, f.crop_origin, f.model_id, f.cluster, f.person, f.assigned)
            for f in faces]  # fmt: skip
    links = [shas.get(f.enrolled_face_id) for f in faces]
    ids = [f.id for f in faces]
    crops = store.library_crops(ids)
    return photos, rows, links, store.library_vectors(ids).tobytes(), [crops[i] for i in ids], store.erased_photos()


def test_a_round_trip_keeps_the_library(store, second_store, tmp_path):
    build_library(store)
    before = library_state(store)
    assert {f.person for f in store.library_faces()} == {"Ann", "Carol", None}
    out = tmp_path / "backup.zip"
    assert export_gallery(store, out) == 3  # Ann, Bob, Carol's copy
    assert import_gallery(second_store, out) == (3, 0)
    assert library_state(second_store) == before
    assert second_store.people() == store.people() and second_store.meta()["last_cluster_id"] == "6"
    assert second_store.check() == []
    (carol,) = second_store.library_faces(person="Carol")
    assert carol.enrolled_face_id == second_store.faces("Carol")[0].id and carol.assigned == "user"
    event = second_store.audit_log(1)[0]
    assert (event.action, event.detail) == ("import", {"library_photos": 3, "library_faces": 5, "skipped_photos": 0})
    # importing again adds nothing: the faces and the recorded paths are there already
    assert import_gallery(second_store, out) == (0, 3)
    assert library_state(second_store) == before


def test_clusters_imported_beside_existing_ones_stay_their_own(store, second_store, tmp_path):
    build_library(store)
    out = tmp_path / "backup.zip"
    export_gallery(store, out)
    ids = second_store.record_photo(ScannedPhoto("/elsewhere/1.jpg", 1, 1, "c" * 64), [library_face(30)], MODEL)
    second_store.set_clusters(ids, [5])
    import_gallery(second_store, out)
    clusters = {f.path: f.cluster for f in second_store.library_faces() if f.cluster is not None}
    assert clusters["/elsewhere/1.jpg"] == 5 and 5 not in {c for p, c in clusters.items() if p != "/elsewhere/1.jpg"}


def rewrite(source: Path, target: Path, change, replace: dict[str, bytes] | None = None, drop=()) -> Path:
    """A copy of the export ``source`` at ``target`` with its manifest changed by ``change``
    (in place), entries replaced by ``replace`` and entries named in ``drop`` left out."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        manifest = json.loads(old.read("manifest.json"))
        change(manifest)
        new.writestr("manifest.json", json.dumps(manifest))
        for info in old.infolist():
            if info.filename != "manifest.json" and info.filename not in drop:
                new.writestr(info.filename, (replace or {}).get(info.filename, old.read(info)))
    return target


def npy(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors.astype("<f4"), allow_pickle=False)
    return buffer.getvalue()


def test_a_version_1_export_without_a_library_still_imports(store, second_store, tmp_path):
    build_library(store)
    export_gallery(store, tmp_path / "new.zip")

    def old_format(manifest: dict) -> None:
        manifest["version"] = 1
        del manifest["library"]

    drop = {n for n in zipfile.ZipFile(tmp_path / "new.zip").namelist() if n.startswith("library")}
    old = rewrite(tmp_path / "new.zip", tmp_path / "old.zip", old_format, drop=drop)
    assert import_gallery(second_store, old) == (3, 0)
    assert second_store.library_photos() == [] and second_store.people() == store.people()


def _vectors(path: Path) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        return np.load(io.BytesIO(archive.read("library_embeddings.npy")), allow_pickle=False)


def _nan(path: Path):
    vectors = _vectors(path)
    vectors[2, 0] = np.nan
    return None, {"library_embeddings.npy": npy(vectors)}


def _wrong_dimension(path: Path):
    vectors = _vectors(path)
    return None, {"library_embeddings.npy": npy(np.hstack([vectors, vectors[:, :1]]))}


def _set(where: str, index: int, key: str, value):
    return lambda manifest: manifest["library"][where][index].__setitem__(key, value)


HOSTILE = {
    "nan": (_nan, "library face 2: embedding is not finite"),
    "dimension": (_wrong_dimension, "library_embeddings.npy holds (5, 9)"),
    "jpeg": (lambda p: (None, {"library/1.jpg": b"\xff\xd8\xff" + b"junk"}), "library face 1: crop library/1.jpg"),
    "path": (lambda p: (_set("photos", 0, "path", 5), None), "library photo 0: path must be a non-empty text"),
    "person": (lambda p: (_set("faces", 2, "person", "Zed"), None), "library face 2: person 'Zed' is enrolled neither"),
    "name": (lambda p: (_set("faces", 2, "person", "unknown"), None), "library face 2: person"),
    "link": (lambda p: (_set("faces", 0, "enrolled", "f" * 64), None), "library face 0: enrolled copy ffffffffffff"),
    "assigned": (lambda p: (_set("faces", 2, "assigned", "robot"), None), "library face 2: assigned must be"),
    "model": (lambda p: (_set("faces", 1, "model_id", "other@1"), None), "library face 1: embedded by 'other@1'"),
    "photo": (lambda p: (_set("faces", 1, "photo", 99), None), "library face 1: photo must be"),
    "erased": (lambda p: (lambda m: m["library"]["erased"].append(["x", 1]), None), "library erased 1: must be"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_library_entries_are_refused_and_nothing_is_written(case, store, second_store, tmp_path):
    build_library(store)
    good = tmp_path / "good.zip"
    export_gallery(store, good)
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    assert [f["person"] for f in manifest["library"]["faces"]] == ["Carol", None, "Ann", None, None]
    make, expected = HOSTILE[case]
    change, replace = make(good)
    bad = rewrite(good, tmp_path / "bad.zip", change or (lambda m: None), replace)
    with pytest.raises(GalleryError) as caught:
        import_gallery(second_store, bad)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message and expected in message, message
    assert second_store.face_count() == 0 and second_store.library_photos() == [] and second_store.people() == []
    assert second_store.erased_photos() == set()


def test_repair_of_a_damaged_database_carries_the_library(tmp_path):
    from facesys.gallery import Gallery
    from facesys.gallery.store.sqlite import DB_NAME, SQLiteStore
    from tests.gallery.test_damaged_database import FACES, faces_pages, overwrite_page, readable_rows

    folder = tmp_path / "g"
    with SQLiteStore(folder, create=True) as store:
        store.set_model(MODEL, "test-model", "0" * 64, 8)
        store.add_faces([(f"Person {i % 20}", face(i)) for i in range(FACES)], MODEL)
        record(store, 1, 10, 11)
        record(store, 2, 12, person="Person 3")
        ids = [f.id for f in store.library_faces(unnamed=True)]
        store.set_clusters(ids, [4, 4])
        before = library_state(store)
    overwrite_page(folder / DB_NAME, faces_pages(folder / DB_NAME)[len(faces_pages(folder / DB_NAME)) // 2])
    assert 0 < len(readable_rows(folder / DB_NAME)) < FACES
    Gallery(folder).repair()
    with SQLiteStore(folder) as store:
        assert library_state(store) == before and store.check() == []
