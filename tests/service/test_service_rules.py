"""Issue 23 over HTTP (a real ``facesys serve``): revoking the last key opens nothing (every
worker), anonymous access only with ``--allow-anonymous`` on loopback; an identify key gets the
decided name only; one request's photos are bounded in total pixels; too-large images are 413
whatever their size; names that are not UTF-8 are refused; key names are unique ignoring case;
a gallery of a newer schema makes every request and /healthz say so (503)."""

from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from facesys.gallery.store.sqlite import DB_NAME
from tests.service.conftest import Server, create_key, facesys
from tests.service.test_api import error_of, person, ready_answer, upload

pytestmark = pytest.mark.slow


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with one tiny (wrong) IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def anonymous_actors(gallery: Path) -> list[str]:
    """The anonymous actors of the gallery's audit log."""
    events = json.loads(facesys("gallery", "log", "--json", "--limit", "1000", gallery=gallery).stdout)["events"]
    return sorted({e["actor"] for e in events if e["actor"].startswith("anonymous")})


# -- hole 3: revoking the last key ----------------------------------------------------------------


def test_revoking_the_last_key_opens_nothing_on_any_worker(tmp_path):
    gallery = tmp_path / "gallery"
    key = create_key(gallery, "only", "identify")
    server = Server(gallery, "--workers", "2").wait_ready()
    try:
        assert ready_answer(server, key, "get", "/v1/people").status_code == 403  # identify may not list
        facesys("keys", "revoke", "only", gallery=gallery)
        for _ in range(6):  # fresh connections: both workers answer some, each reads the store per request
            error_of(ready_answer(server, "", "delete", person("Anyone")), 401, "unauthorized")
            error_of(ready_answer(server, "", "post", "/v1/keys", json={"name": "mine", "scope": "admin"}), 401)
            error_of(ready_answer(server, key, "get", "/v1/people"), 401)
    finally:
        server.stop()
    assert [k for k in facesys("keys", "list", gallery=gallery).stdout.splitlines() if "\tactive" in k] == []
    assert anonymous_actors(gallery) == []
    # started again without the flag: still closed, and it says so in one line
    server = Server(gallery).wait_ready()
    try:
        error_of(ready_answer(server, "", "get", "/v1/people"), 401)
    finally:
        server.stop()
    assert "every API key is revoked" in server.log_path.read_text()


def test_anonymous_access_is_an_explicit_loopback_flag(tmp_path):
    gallery = tmp_path / "gallery"
    create_key(gallery, "k", "admin")
    facesys("keys", "revoke", "k", gallery=gallery)
    refused = facesys("serve", "--host", "0.0.0.0", "--allow-anonymous", gallery=gallery, check=False)
    assert refused.returncode == 2 and "loopback" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    server = Server(gallery, "--allow-anonymous").wait_ready()
    try:
        with server.client() as anonymous:
            assert anonymous.get("/v1/people").status_code == 200
            assert anonymous.post("/v1/keys", json={"name": "made", "scope": "identify"}).status_code == 201
    finally:
        server.stop()
    assert (
        sum(
            "--allow-anonymous: every request without a key is admin" in line for line in server.log_path.read_text().splitlines()
        )
        == 1
    )
    assert anonymous_actors(gallery) == ["anonymous (--allow-anonymous)"]


def test_a_gallery_that_never_had_a_key_still_serves_keyless_on_loopback(tmp_path):
    server = Server(tmp_path / "gallery").wait_ready()
    try:
        with server.client() as anonymous:
            # no gallery yet: changing a person nobody enrolled is 404 (it was a 500 "gallery_error")
            error_of(anonymous.delete(person("Nobody")), 404, "no_gallery")
            error_of(anonymous.patch(person("Nobody"), json={"name": "Somebody"}), 404, "no_gallery")
            assert anonymous.get("/v1/people").status_code == 200
            assert anonymous.post("/v1/keys", json={"name": "first", "scope": "admin"}).status_code == 201
            error_of(anonymous.get("/v1/people"), 401)  # the first key closes it at once
    finally:
        server.stop()
    assert "no API key defined: every request is admin" in server.log_path.read_text()


# -- hole 6 and the limits of hole 8, on one server -----------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, people_photos):
    """A server with a key per scope, --max-request-pixels 2,000,000, Obama enrolled: (server, keys, gallery)."""
    gallery = tmp_path_factory.mktemp("rules") / "gallery"
    keys = {scope: create_key(gallery, f"test-{scope}", scope) for scope in ("identify", "enroll", "admin")}
    server = Server(gallery, "--max-request-pixels", "2000000").wait_ready()
    obama = people_photos / "barack_obama"
    with server.client(keys["enroll"]) as client:
        photos = [obama / "obama-480p.jpg", obama / "obama-240p.jpg", obama / "obama_small.jpg"]
        assert client.post(person("Barack Obama"), files=upload(*photos)).status_code == 201
    yield server, keys, gallery
    server.stop()


def test_an_identify_key_gets_the_decided_name_only(served, people_photos):
    server, keys, _ = served
    probe = upload(people_photos / "barack_obama" / "obama-720p.jpg")
    stranger = upload(sorted((people_photos / "kit_harington").glob("*.jpg"))[0])
    with server.client(keys["identify"]) as client:
        for params in ({"top_k": 50, "explain": "true"}, {"top_k": 2}, {"explain": "true"}):
            assert "enroll" in error_of(client.post("/v1/identify", params=params, files=probe), 403, "forbidden")
        for params in ({}, {"top_k": 1}):  # the page sends no parameters
            answer = client.post("/v1/identify", params=params, files=probe)
            face = answer.json()["results"][0]["faces"][0]
            assert face["name"] == "Barack Obama"
            assert face["candidates"] == [] and face["matched"] is None and face["face_id"] is None
        unknown = client.post("/v1/identify", files=stranger).json()["results"][0]["faces"][0]
        assert unknown["name"] is None and unknown["candidates"] == [] and unknown["face_id"] is None
        assert "Obama" not in client.post("/v1/identify", files=stranger).text
    with server.client(keys["enroll"]) as client:  # a key that may list people still gets everything
        face = client.post("/v1/identify", params={"top_k": 50, "explain": "true"}, files=probe).json()
        face = face["results"][0]["faces"][0]
        assert face["candidates"][0]["name"] == "Barack Obama" and face["matched"]["source"].startswith("obama")
        assert len(face["candidates"][0]["faces"]) == 3  # explain: every enrolled photo, with its path


def test_total_pixels_of_a_request_are_bounded(served, people_photos):
    server, keys, _ = served
    photo = people_photos / "barack_obama" / "obama-720p.jpg"  # 1280 x 720 = 921,600 pixels
    with server.client(keys["admin"]) as client:
        assert client.post("/v1/identify", files=upload(photo, photo)).status_code == 200
        message = error_of(client.post("/v1/identify", files=upload(photo, photo, photo)), 413, "too_large")
        assert "2,764,800 pixels" in message and "2,000,000" in message and "--max-request-pixels" in message
        error_of(client.post(person("Barack Obama"), files=upload(photo, photo, photo)), 413, "too_large")
        assert client.post("/v1/verify", files=upload(photo, field="a") + upload(photo, field="b")).status_code == 200


def test_too_large_images_are_413_whatever_their_size(served):
    server, keys, _ = served
    with server.client(keys["admin"]) as client:
        for width, height in ((50_000, 50_000), (10_000, 10_000)):  # 2.5 gigapixels, 100 megapixels
            files = [("images", (f"{width}.png", png_header_only(width, height), "image/png"))]
            assert "pixels" in error_of(client.post("/v1/identify", files=files), 413, "too_large")
            error_of(client.post(person("Giant"), files=files), 413, "too_large")


def test_names_that_are_not_utf8_are_refused(served):
    server, keys, _ = served
    with server.client(keys["admin"]) as client:
        photo = [("images", ("x.png", png_header_only(10, 10), "image/png"))]
        assert "UTF-8" in error_of(client.post("/v1/people/Ren%E9e", files=photo), 400, "bad_request")
        assert "UTF-8" in error_of(client.patch(person("Barack Obama"), json={"name": "Ren\ufffde"}), 400)
        assert "UTF-8" in error_of(client.post("/v1/keys", json={"name": "k\ufffd", "scope": "identify"}), 400)
        raw = b'{"name": "Ren\xe9e"}'  # Latin-1 bytes in a JSON body
        error_of(client.patch(person("Barack Obama"), content=raw, headers={"Content-Type": "application/json"}), 400)
        assert "\ufffd" not in client.get("/v1/people").text


def test_key_names_are_unique_ignoring_case(served):
    server, keys, gallery = served
    with server.client(keys["admin"]) as client:
        assert client.post("/v1/keys", json={"name": "K_ADMIN", "scope": "admin"}).status_code == 201
        assert "'K_ADMIN'" in error_of(client.post("/v1/keys", json={"name": "k_admin", "scope": "admin"}), 409, "conflict")
    result = facesys("keys", "create", "k_Admin", gallery=gallery, check=False)
    assert result.returncode != 0 and "'K_ADMIN'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_newer_schema_is_503_naming_the_version_and_not_ready(served, people_photos):
    server, keys, gallery = served
    database = sqlite3.connect(gallery / DB_NAME)
    (version,) = database.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        with database:
            database.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        assert "schema version 99" in error_of(httpx.get(server.url + "/healthz"), 503, "gallery_too_new")
        with server.client(keys["admin"]) as client:
            for method, path in (("get", "/v1/people"), ("get", "/v1/log"), ("get", "/v1/keys")):
                assert "schema version 99" in error_of(getattr(client, method)(path), 503, "gallery_too_new")
            probe = upload(people_photos / "barack_obama" / "obama-240p.jpg")
            assert "schema version 99" in error_of(client.post("/v1/identify", files=probe), 503)
    finally:
        with database:
            database.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
        database.close()
    assert httpx.get(server.url + "/healthz").status_code == 200
