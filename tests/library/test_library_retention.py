"""Retention on a scanned library (real photos): expired unnamed faces are erased from the
database files, attached faces stay, and the next scan does not find the expired faces again."""

from __future__ import annotations

import time
from pathlib import Path

from facesys.gallery.gallery import Gallery
from facesys.gallery.store import retention
from facesys.gallery.store.sqlite import DB_NAME
from tests.library.test_library_moves import lfw_photos, system  # noqa: F401  (fixture)


def test_expired_faces_are_erased_and_a_rescan_does_not_bring_them_back(system, tmp_path, monkeypatch):  # noqa: F811
    folder = tmp_path / "library"
    photos = lfw_photos(folder, {"Colin_Powell": 4, "Hu_Jintao": 2})
    assert system.enroll("Colin_Powell", photos[:4]).count("enrolled") == 4
    assert system.scan([folder]).automatic >= 4
    gallery = Gallery(system.gallery.location)
    with gallery.open() as store:
        hu = [f for f in store.library_faces() if "Hu_Jintao" in f.path]
        vectors, crops = store.library_vectors([f.id for f in hu]), store.library_crops([f.id for f in hu])
        attached = [f.id for f in store.library_faces() if f.person == "Colin_Powell"]
    assert len(hu) >= 2 and len(attached) >= 4

    monkeypatch.setattr(retention, "now", lambda: time.time() + 91 * 86400)
    retention._due.clear()
    assert gallery.set_retention({"library": "90d"}) == {"library": "90d", "audit": None}
    with gallery.open() as store:
        assert [f.id for f in store.library_faces(unnamed=True)] == []
        assert [f.id for f in store.library_faces()] == attached
        assert len(store.erased_photos()) == 2 and store.audit_log(1)[0].action == "retention"
    data = b"".join(path.read_bytes() for path in Path(gallery.location).glob(DB_NAME + "*"))
    for face, vector in zip(hu, vectors, strict=True):
        assert vector.astype("<f4").tobytes() not in data and crops[face.id] not in data
    assert b"Hu_Jintao" not in data

    again = system.scan([folder])
    assert again.files["erased"] == 2 and again.files["unchanged"] == 4 and again.processed == 0
    with gallery.open() as store:
        assert [f.id for f in store.library_faces()] == attached
