"""The service's identify is the library's one identify call (issue 24), checked in-process with
FastAPI's TestClient: one store open per request; no gallery is the library's NoGalleryError
(404, as the CLI's exit 2), not 200 with every face unknown; a photo whose detection fails is an
error entry counted in ``summary.errors``, not ``"faces": []``."""

from __future__ import annotations

import time
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from facesys.errors import NoGalleryError
from facesys.gallery import Gallery
from facesys.service import ServiceSettings, create_app
from tests.cli.test_people import run
from tests.service.test_api import error_of, upload

NOISE = (48, 64)  # height, width of the photo the failing detector refuses


@pytest.fixture
def store_opens(monkeypatch) -> list:
    """Every store a Gallery opens from now on."""
    import facesys.gallery.gallery as module

    opened, real = [], module.open_store
    monkeypatch.setattr(module, "open_store", lambda *args, **kwargs: opened.append(args) or real(*args, **kwargs))
    return opened


@pytest.fixture
def serve(embedder):
    """serve(gallery[, key]): a TestClient over the service on ``gallery`` (anonymous admin without
    ``key``), with the session's embedder; yields once the service is ready."""

    @contextmanager
    def serve(gallery, key: str | None = None):
        app = create_app(ServiceSettings(gallery=str(gallery), allow_anonymous=key is None))
        app.state.service.system._embedder = embedder  # no model loading
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with TestClient(app, base_url="http://localhost", headers=headers) as client:
            deadline = time.monotonic() + 30
            while not app.state.service.ready and time.monotonic() < deadline:
                time.sleep(0.05)
            yield client

    return serve


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, people_photos, embedder):
    """Obama and Biden enrolled, 2 photos each."""
    from facesys.system import FaceSystem

    system = FaceSystem(tmp_path_factory.mktemp("identify") / "gallery", embedder=embedder)
    for name, folder in (("Barack Obama", "barack_obama"), ("Joe Biden", "joe_biden")):
        assert system.enroll(name, sorted((people_photos / folder).glob("*.jpg"))[:2]).count("enrolled") == 2
    return system.gallery.location


def noise_photo(tmp_path):
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (*NOISE, 3), np.uint8))
    return path


@pytest.mark.parametrize("with_key", [False, True], ids=["anonymous", "with_key"])
def test_an_http_identify_opens_the_store_once(gallery, people_photos, serve, store_opens, with_key):
    photos = upload(people_photos / "_multi_face" / "two_people.jpg", people_photos / "joe_biden" / "biden.jpg")
    key = Gallery(gallery).create_key("counted", "admin") if with_key else None
    with serve(gallery, key) as client:
        store_opens.clear()  # those of start-up
        answer = client.post("/v1/identify", files=photos)
        assert answer.status_code == 200, answer.text
        assert len(store_opens) == 1  # key check, model check, thresholds, calibration and search share it (was 5)
    assert sorted(f["name"] for f in answer.json()["results"][0]["faces"]) == ["Barack Obama", "Joe Biden"]


def test_a_cli_identify_opens_the_store_once(gallery, people_photos, store_opens):
    photos = [people_photos / "_multi_face" / "two_people.jpg", people_photos / "joe_biden" / "biden.jpg"]
    result = run(gallery, "identify", "--json", *map(str, photos))
    assert result.exit_code == 0, result.output
    assert len(store_opens) == 1  # was 7


def test_no_gallery_is_the_librarys_error_as_in_the_cli(tmp_path, people_photos, serve):
    photo = people_photos / "joe_biden" / "biden.jpg"
    with serve(tmp_path / "none") as client:
        message = error_of(client.post("/v1/identify", files=upload(photo)), 404, "no_gallery")
    assert message == str(NoGalleryError(tmp_path / "none"))
    result = run(tmp_path / "none", "identify", str(photo))
    assert result.exit_code == 2 and message.partition(" (")[0] in result.output  # the CLI names its flag instead


def test_a_photo_whose_detection_fails_is_a_counted_error(gallery, people_photos, serve, monkeypatch, tmp_path):
    from facesys.vision.detect import FaceDetector
    from facesys.vision.yunet import YuNetDetector

    for detector in (FaceDetector, YuNetDetector):  # whichever is the default

        def detect(self, images, real=detector.detect):
            if any(image.shape[:2] == NOISE for image in images):
                raise RuntimeError("refused")
            return real(self, images)

        monkeypatch.setattr(detector, "detect", detect)
    bad = noise_photo(tmp_path)
    with serve(gallery) as client:
        body = client.post("/v1/identify", files=upload(people_photos / "joe_biden" / "biden.jpg", bad)).json()
        assert body["summary"] == {"files": 2, "errors": 1}
        good, failed = body["results"]
        assert [f["name"] for f in good["faces"]] == ["Joe Biden"]
        assert failed["file"] == "noise.png" and failed["error"]["code"] == "not_an_image"
        assert "face detection failed" in failed["error"]["message"]
        assert "face detection failed" in error_of(client.post("/v1/identify", files=upload(bad)), 415, "not_an_image")
    cli = run(gallery, "identify", "--json", str(bad))  # the CLI counts it the same way
    assert cli.exit_code == 2 and '"errors": 1' in cli.output
