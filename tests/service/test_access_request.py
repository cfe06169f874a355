"""A data subject's access request over HTTP: ``GET /v1/export/people/{name}`` hands an admin the
zip that ``facesys gallery export --person`` writes (FastAPI's TestClient, synthetic faces)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from types import SimpleNamespace

from fastapi.testclient import TestClient

from facesys.gallery import Gallery
from facesys.models import ModelInfo
from facesys.service import ServiceSettings, create_app
from tests.gallery.conftest import MODEL, face


def test_the_service_hands_the_same_zip_to_an_admin_only(tmp_path):
    gallery = Gallery(tmp_path / "g")
    gallery.add_faces([("Ann", face(1)), ("Bob", face(3))], ModelInfo(MODEL, "test-model", "0" * 64, 8))
    admin, enroller = gallery.create_key("dpo", "admin"), gallery.create_key("desk", "enroll")
    app = create_app(ServiceSettings(gallery=str(gallery.location)))
    app.state.service.system._embedder = SimpleNamespace(model_id=MODEL)  # no model loading: nothing is embedded
    with TestClient(app, base_url="http://localhost") as client:
        deadline = time.monotonic() + 30
        while not app.state.service.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = client.get("/v1/export/people/ann", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip" and answer.headers["cache-control"] == "private, no-store"
        with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
            document = json.loads(archive.read("person.json"))
            assert document["person"]["name"] == "Ann" and archive.read("faces/0.jpg") == face(1).crop_jpeg
        assert face(3).crop_jpeg not in answer.content
        assert client.get("/v1/export/people/ann", headers={"Authorization": f"Bearer {enroller}"}).status_code == 403
        missing = client.get("/v1/export/people/Cy", headers={"Authorization": f"Bearer {admin}"})
        assert missing.status_code == 404 and "no person named 'Cy'" in missing.text
