"""A reindex re-embeds the photo library too (issue 25, point 7), on synthetic faces, against every
backend: every library face gets the new model's vector from its stored crop, every recorded file
counts as scanned with the new model (a scan does not read it again), and a reindex that dies
half-way leaves each face whole (old vector and model id, or new ones) for the next one to finish."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facesys.errors import GalleryError
from facesys.gallery import gallery as gallery_module
from facesys.gallery.gallery import Gallery, Reembedded
from facesys.models import ModelInfo
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo
from tests.library.test_races import address

NEW = ModelInfo("new-model@fedcba9876543210", "new-model", "fedcba9876543210" * 4, 4)
SEEDS = {1: (10, 11), 2: (12,), 3: (13,), 4: (14, 15)}  # library file number -> its faces' seeds


def new_vector(jpeg: bytes) -> np.ndarray:
    """The new model's (fake) 4-D unit vector of a crop: seeded by the crop's bytes."""
    v = np.random.default_rng(int.from_bytes(hashlib.sha256(jpeg).digest()[:8], "little")).normal(size=4)
    return (v / np.linalg.norm(v)).astype(np.float32)


def embed_crops(crops: list[tuple]) -> np.ndarray:
    assert all(isinstance(origin, list) and len(landmarks) == 5 for _, origin, landmarks in crops)
    return np.stack([new_vector(jpeg) for jpeg, _, _ in crops])


def library(store) -> dict[int, int]:
    """Enrolled Ann, library files 1-4 (a face of 2 named Bob, the face of 3 removed) and 5 (no
    face); returns library face id -> seed."""
    store.add_face("Ann", face(1), MODEL)
    seeds = {}
    for number, numbers in SEEDS.items():
        ids = store.record_photo(photo(number), [library_face(s) for s in numbers], MODEL)
        seeds |= dict(zip(ids, numbers, strict=True))
    store.record_photo(photo(5), [], MODEL)
    named = next(i for i, s in seeds.items() if s == 12)
    store.name_library_faces([named], "Bob")
    removed = next(i for i, s in seeds.items() if s == 13)
    store.remove_library_faces([removed])
    del seeds[removed]
    return seeds


def assert_whole(store, seeds: dict[int, int]) -> set[int]:
    """Every library face has its old vector and model id or its new ones; returns those with new ones."""
    faces = {f.id: f for f in store.library_faces()}
    crops = store.library_crops(list(seeds))
    new = set()
    for face_id, seed in seeds.items():
        if faces[face_id].model_id == NEW.model_id:
            assert store.dim == 4
            np.testing.assert_array_equal(store.library_vectors([face_id])[0], new_vector(crops[face_id]))
            new.add(face_id)
        else:
            assert faces[face_id].model_id == MODEL
            blob = store._row("SELECT embedding FROM library_faces WHERE id = ?", (face_id,))[0]
            np.testing.assert_array_equal(np.frombuffer(blob, "<f4"), library_face(seed).embedding)
    return new


def test_a_reindex_re_embeds_the_library_and_its_files_count_as_scanned_with_the_new_model(store, backend, tmp_path):
    seeds = library(store)
    done = Gallery(address(store, backend, tmp_path), save_index=False).reembed(NEW, embed_crops)
    assert done == Reembedded(faces=2, library_faces=len(seeds))  # Ann's face and Bob's copy; 5 library faces
    assert store.model_id == NEW.model_id and store.dim == 4
    assert {f.model_id for f in store.library_faces()} == {NEW.model_id}
    assert assert_whole(store, seeds) == set(seeds)
    # the scan's rule (library/scan.py): a file is read again only when its faces are of another
    # model; every file is of the new one now, the one whose face was removed and the faceless one too
    assert [(p.path, p.model_id) for p in store.library_photos()] == [(f"/library/{n}.jpg", NEW.model_id) for n in range(1, 6)]
    assert store.check() == []
    events = [e for e in store.audit_log(None) if e.action == "reembed_library_faces"]
    assert [e.detail for e in events] == [{"model_id": NEW.model_id, "library_faces": len(seeds)}]
    assert store.library_faces(person="Bob")[0].enrolled_face_id is not None  # names and links stay


def test_a_reindex_killed_half_way_leaves_whole_faces_and_the_next_one_finishes(store, backend, tmp_path, monkeypatch):
    seeds = library(store)
    monkeypatch.setattr(gallery_module, "REEMBED_BATCH", 2)
    calls = []

    def dying(crops: list[tuple]) -> np.ndarray:
        calls.append(len(crops))
        if len(calls) == 3:  # the enrolled faces, a first library batch, then death
            raise KeyboardInterrupt
        return embed_crops(crops)

    where = address(store, backend, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Gallery(where, save_index=False).reembed(NEW, dying)
    assert calls == [2, 2, 2]
    assert store.model_id == NEW.model_id  # the enrolled faces switched in one transaction
    first = sorted(seeds)[:2]
    assert assert_whole(store, seeds) == set(first)
    models = {p.path: p.model_id for p in store.library_photos()}
    assert models["/library/1.jpg"] == NEW.model_id  # both its faces were in the first batch
    assert models["/library/4.jpg"] == MODEL  # a scan would read it again until the reindex ends
    assert len([p for p in store.check() if p.startswith("library face")]) == len(seeds) - 2  # until it ends

    done = Gallery(where, save_index=False).reembed(NEW, embed_crops)
    assert done == Reembedded(faces=2, library_faces=len(seeds) - 2)  # only the faces left
    assert assert_whole(store, seeds) == set(seeds)
    assert {p.model_id for p in store.library_photos()} == {NEW.model_id}
    assert store.check() == []


def test_library_faces_are_given_only_vectors_of_the_gallerys_model_and_dimension(store):
    ids = store.record_photo(photo(1), [library_face(10)], MODEL)
    with pytest.raises(GalleryError, match="gallery model is test-model"):
        store.reembed_library_faces(NEW.model_id, {ids[0]: np.ones(4, np.float32) / 2})
    with pytest.raises(GalleryError, match="must have 8 values"):
        store.reembed_library_faces(MODEL, {ids[0]: np.ones(4, np.float32) / 2})
    assert store.reembed_library_faces(MODEL, {ids[0]: np.ones(8, np.float32) / 8**0.5}) == 0  # of MODEL already
    assert store.library_faces_to_reembed(MODEL, 0, 10) == []
    assert [row[0] for row in store.library_faces_to_reembed(NEW.model_id, 0, 10)] == ids
