"""Issue 23, hole 1, over HTTP: after the library's folder is renamed and scanned again, the faces
``GET /v1/library/find`` shows are the ones that were named, and ``POST /v1/library/faces/unname``
of them takes back everything the name enrolled, so ``/v1/identify`` no longer answers it."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest

from facesys.gallery import Gallery
from tests.conftest import data_path
from tests.service.conftest import Server, create_key
from tests.service.test_api import upload

pytestmark = pytest.mark.slow


def test_unname_over_http_after_a_folder_rename_undoes_the_name(tmp_path, embedder):
    from facesys.system import FaceSystem

    root = tmp_path / "tmp"
    (root / "2019").mkdir(parents=True)
    for number in range(1, 4):
        shutil.copy(data_path("lfw", "Colin_Powell", f"Colin_Powell_{number:04d}.jpg"), root / "2019")
    gallery = tmp_path / "gallery"
    system = FaceSystem(gallery, embedder=embedder)
    system.scan([root])
    with Gallery(gallery).open() as store:
        ids = [face.id for face in store.library_faces()]
    system.name_faces(ids, "Wrong Name")
    (root / "2019").rename(root / "Holiday-2019")
    assert system.scan([root]).files["moved"] == 3

    key = create_key(gallery, "test-enroll", "enroll")
    server = Server(gallery).wait_ready()
    try:
        with server.client(key) as client:
            found = client.get("/v1/library/find/" + quote("Wrong Name", safe=""))
            assert found.status_code == 200, found.text
            photos = found.json()["photos"]
            assert len(photos) == 3 and all("/Holiday-2019/" in photo["file"] for photo in photos)
            shown = [face["library_face_id"] for photo in photos for face in photo["faces"]]
            assert sorted(shown) == sorted(ids)
            unnamed = client.post("/v1/library/faces/unname", json={"face_ids": shown})
            assert unnamed.status_code == 200 and sorted(unnamed.json()["unnamed"]) == sorted(ids), unnamed.text
            probe = root / "Holiday-2019" / "Colin_Powell_0002.jpg"
            answer = client.post("/v1/identify", files=upload(probe))
            assert answer.status_code == 200, answer.text
            assert [face["name"] for face in answer.json()["results"][0]["faces"]] == [None]
    finally:
        server.stop()
