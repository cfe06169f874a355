"""The REST service over HTTP: a real ``facesys serve`` process on a free loopback port.

Every endpoint, every error status with its JSON body, scopes, revoked keys, names that look like
paths, bad uploads that leave the gallery unchanged, micro-batching and the audit log.
"""

from __future__ import annotations

import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from facesys.config import DEFAULT_MODEL
from tests.conftest import data_path
from tests.service.conftest import Server, create_key, facesys

pytestmark = pytest.mark.slow


def upload(*paths: Path, field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def error_of(response: httpx.Response, status: int, code: str | None = None) -> str:
    """The message of a JSON error answer, after checking its status, shape and one line."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code:
        assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def person(name: str) -> str:
    return "/v1/people/" + quote(name, safe="")


@pytest.fixture(scope="module")
def server(keyed_server):
    return keyed_server[0]


@pytest.fixture(scope="module")
def keys(keyed_server):
    return keyed_server[1]


@pytest.fixture(scope="module")
def admin(server, keys):
    with server.client(keys["admin"]) as client:
        yield client


@pytest.fixture(scope="module")
def enrolled(server, keys, people_photos):
    """Obama and Biden enrolled through the API with the enroll key (once per module)."""
    with server.client(keys["enroll"]) as client:
        for name, folder in (("Barack Obama", "barack_obama"), ("Joe Biden", "joe_biden")):
            photos = sorted((people_photos / folder).glob("*.jpg"))[:3]
            answer = client.post(person(name), files=upload(*photos))
            assert answer.status_code == 201, answer.text
            assert answer.json()["summary"]["enrolled"] == len(photos)
    return people_photos


def gallery_state(admin: httpx.Client) -> tuple:
    """What a bad request must leave as it was: people, face counts, audit log length."""
    people = admin.get("/v1/people").json()["people"]
    return people, admin.get("/v1/stats").json()["faces"], len(admin.get("/v1/log", params={"limit": 10_000}).json()["events"])


# -- the service itself -----------------------------------------------------------------------------


def test_health_schema_docs_and_page(server):
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ready" and health["model"].startswith(f"{DEFAULT_MODEL}@")
    schema = httpx.get(server.url + "/openapi.json").json()
    for path in ("/v1/verify", "/v1/identify", "/v1/people/{name}", "/v1/faces/{face_id}/crop", "/v1/keys", "/v1/log"):
        assert path in schema["paths"], path
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "https://" not in docs.text  # offline: no CDN
    assert httpx.get(server.url + "/docs-assets/swagger-ui-bundle.js").status_code == 200
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    error_of(httpx.get(server.url + "/v1/nothing-here"), 404, "not_found")


# -- keys and scopes --------------------------------------------------------------------------------


def test_requests_without_a_valid_key_get_401(server):
    photo = data_path("face_recognition", "joe_biden", "biden.jpg")
    with server.client() as anonymous:
        error_of(anonymous.get("/v1/people"), 401, "unauthorized")
        error_of(anonymous.post("/v1/identify", files=upload(photo)), 401)
    with server.client("fsk_not-a-key") as wrong:
        assert wrong.get("/v1/people").status_code == 401
        assert wrong.get("/v1/people").headers["www-authenticate"] == "Bearer"


def test_scopes_are_enforced(server, keys, enrolled):
    photo = enrolled / "joe_biden" / "biden.jpg"
    with server.client(keys["identify"]) as identify_only:
        assert identify_only.post("/v1/identify", files=upload(photo)).status_code == 200
        error_of(identify_only.post(person("Someone"), files=upload(photo)), 403, "forbidden")
        error_of(identify_only.delete(person("Joe Biden")), 403)
        error_of(identify_only.get("/v1/people"), 403)
    with server.client(keys["enroll"]) as enroller:
        assert enroller.get("/v1/people").status_code == 200
        error_of(enroller.delete(person("Joe Biden")), 403)
        error_of(enroller.patch(person("Joe Biden"), json={"name": "J"}), 403)
        error_of(enroller.get("/v1/keys"), 403)
        error_of(enroller.get("/v1/log"), 403)
    with server.client(keys["admin"]) as admin:
        assert admin.get("/v1/people/" + quote("Joe Biden")).status_code == 200


def test_keys_made_and_revoked_through_the_api(server, admin):
    made = admin.post("/v1/keys", json={"name": "temporary", "scope": "identify"})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    listed = admin.get("/v1/keys").json()["keys"]
    assert {"temporary", "test-admin"} <= {k["name"] for k in listed}
    assert key not in json.dumps(listed)  # only names and scopes are listed
    with server.client(key) as temporary:
        assert temporary.get("/healthz").status_code == 200
        error_of(temporary.get("/v1/people"), 403)  # identify scope: authenticated, not allowed
        assert admin.delete("/v1/keys/temporary").status_code == 200
        error_of(temporary.post("/v1/identify", files=upload(data_path("face_recognition", "joe_biden", "biden.jpg"))), 401)
    error_of(admin.delete("/v1/keys/temporary"), 404, "not_found")
    error_of(admin.post("/v1/keys", json={"name": "x", "scope": "root"}), 400, "bad_request")
    error_of(admin.post("/v1/keys", json={"name": "line\nbreak", "scope": "identify"}), 400, "bad_request")
    error_of(admin.post("/v1/keys", json={"name": "test-enroll", "scope": "identify"}), 409, "conflict")
    assert key not in (server.gallery / "gallery.sqlite3").read_bytes().decode("latin-1")


# -- recognition ----------------------------------------------------------------------------------


def test_identify_names_every_face_and_the_matching_photo(server, keys, enrolled, admin):
    with server.client(keys["enroll"]) as client:  # candidates and photos need a scope that may list people
        answer = client.post("/v1/identify", files=upload(enrolled / "_multi_face" / "two_people.jpg"), params={"top_k": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["schema_version"] == 1 and body["summary"] == {"files": 1, "errors": 0}
    faces = body["results"][0]["faces"]
    assert sorted(f["name"] for f in faces) == ["Barack Obama", "Joe Biden"]
    for face in faces:
        assert face["distance"] <= face["threshold"] and len(face["box"]) == 4 and len(face["candidates"]) == 2
        assert face["quality"] is None and face["threshold_source"] in ("model table", "gallery's own strangers")
        enrolled_faces = {f["face_id"]: f for f in admin.get(person(face["name"])).json()["faces"]}
        assert face["face_id"] in enrolled_faces  # the enrolled photo that matched
        assert face["matched"]["face_id"] == face["face_id"]
        assert face["matched"]["source"] == enrolled_faces[face["face_id"]]["source"]  # and the file it came from
        best = face["candidates"][0]["faces"]
        assert 1 <= len(best) <= 3 and best[0]["face_id"] == face["face_id"]


def test_identify_several_uploads_reports_each(server, keys, enrolled):
    files = upload(enrolled / "joe_biden" / "biden2.jpg", data_path("bad_inputs", "odd_format", "truncated.jpg"))
    files += upload(data_path("bad_inputs", "no_face", "coffee.png"))
    with server.client(keys["identify"]) as client:
        body = client.post("/v1/identify", files=files).json()
        assert body["summary"] == {"files": 3, "errors": 1}
        first, second, third = body["results"]
        assert [f["name"] for f in first["faces"]] == ["Joe Biden"]
        assert second["file"] == "truncated.jpg" and second["error"]["code"] == "not_an_image"
        assert third["faces"] == []
        error_of(client.post("/v1/identify", files=upload(Path(__file__))), 415, "not_an_image")
        error_of(client.post("/v1/identify"), 400, "bad_request")
        error_of(client.post("/v1/identify", files=files, params={"top_k": 0}), 400)


def test_verify(server, keys, enrolled):
    obama = sorted((enrolled / "barack_obama").glob("*.jpg"))
    with server.client(keys["identify"]) as client:
        same = client.post("/v1/verify", files=upload(obama[0], field="a") + upload(obama[-1], field="b"))
        assert same.status_code == 200, same.text
        assert same.json()["same"] is True and same.json()["a"]["file"] == obama[0].name
        other = upload(obama[0], field="a") + upload(enrolled / "joe_biden" / "biden.jpg", field="b")
        assert client.post("/v1/verify", files=other).json()["same"] is False
        strict = client.post(
            "/v1/verify", files=upload(obama[0], field="a") + upload(obama[-1], field="b"), params={"threshold": 0.01}
        )
        assert strict.json()["same"] is False and strict.json()["threshold_source"] == "argument"
        no_face = upload(obama[0], field="a") + upload(data_path("bad_inputs", "no_face", "brick.png"), field="b")
        assert "brick.png" in error_of(client.post("/v1/verify", files=no_face), 422, "no_face")
        error_of(client.post("/v1/verify", files=upload(obama[0], field="a")), 400, "bad_request")


# -- people ---------------------------------------------------------------------------------------


def test_enroll_answers_per_photo(server, keys, enrolled, admin):
    photos = sorted((enrolled / "barack_obama").glob("*.jpg"))
    with server.client(keys["enroll"]) as client:
        again = client.post(person("Barack Obama"), files=upload(photos[0]))
        assert again.status_code == 200 and again.json()["results"][0]["status"] == "duplicate"
        mixed = client.post(person("Barack Obama"), files=upload(photos[5], data_path("bad_inputs", "no_face", "moon.png")))
        assert mixed.status_code == 201
        assert [r["status"] for r in mixed.json()["results"]] == ["enrolled", "rejected"]
        assert mixed.json()["summary"] == {"enrolled": 1, "duplicate": 0, "rejected": 1, "error": 0}
        error_of(
            client.post(person("Barack Obama"), files=upload(data_path("bad_inputs", "no_face", "moon.png"))), 422, "rejected"
        )
        error_of(client.post(person("barack obama"), files=upload(photos[6])), 409, "conflict")
        error_of(client.post(person("Barack Obama")), 400)


def test_show_crop_rename_and_remove(server, admin, enrolled):
    faces = admin.get(person("Joe Biden")).json()["faces"]
    crop = admin.get(f"/v1/faces/{faces[0]['face_id']}/crop")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg" and crop.content[:2] == b"\xff\xd8"
    error_of(admin.get("/v1/faces/999999/crop"), 404, "not_found")
    error_of(admin.get("/v1/faces/abc/crop"), 404)  # an id in a path that no face can have names nothing
    error_of(admin.get(person("Nobody")), 404, "not_found")
    error_of(admin.patch(person("Nobody"), json={"name": "X"}), 404)
    error_of(admin.patch(person("Joe Biden"), json={"name": "Barack Obama"}), 409, "conflict")
    error_of(admin.patch(person("Joe Biden"), json={}), 400)
    assert admin.patch(person("Joe Biden"), json={"name": "Joseph Biden"}).json()["name"] == "Joseph Biden"
    removed = admin.delete(f"/v1/faces/{faces[0]['face_id']}")
    assert removed.json() == {"schema_version": 1, "removed_face": faces[0]["face_id"], "name": "Joseph Biden"}
    error_of(admin.delete(f"/v1/faces/{faces[0]['face_id']}"), 404)
    assert len(admin.get(person("Joseph Biden")).json()["faces"]) == len(faces) - 1
    gone = admin.delete(person("Joseph Biden"))
    assert gone.json()["removed"] == "Joseph Biden" and gone.json()["faces"] == len(faces) - 1
    error_of(admin.delete(person("Joseph Biden")), 404)
    assert "Joseph Biden" not in [p["name"] for p in admin.get("/v1/people").json()["people"]]
    stats = admin.get("/v1/stats").json()
    assert stats["people"] == len(admin.get("/v1/people").json()["people"])


def test_names_that_look_like_paths_are_data(server, admin, enrolled):
    photo = sorted((enrolled / "barack_obama").glob("*.jpg"))[7]
    for name in ("../etc", "a/b", "..%2Fx"):
        made = admin.post(person(name), files=upload(photo))
        assert made.status_code == 201, (name, made.text)
        assert admin.get(person(name)).json()["name"] == name
        assert admin.delete(person(name)).status_code == 200
    assert not (server.gallery.parent / "etc").exists() and not (server.gallery / "a").exists()
    for raw in ("%00", "bad%0Aname", "%E2%80%AE"):  # NUL, newline, right-to-left override
        error_of(admin.post("/v1/people/" + raw, files=upload(photo)), 400, "bad_request")
    error_of(admin.post("/v1/people/unknown", files=upload(photo)), 400)
    assert all(p["name"] not in ("../etc", "a/b") for p in admin.get("/v1/people").json()["people"])


def test_bad_inputs_give_4xx_and_leave_the_gallery_unchanged(server, admin, enrolled):
    """Every file of ../shared/data/bad_inputs: enrolling one that is not a photo of exactly one
    face is refused with a 4xx JSON error and changes nothing; none of them crashes identify."""
    folder = data_path("bad_inputs")
    with open(folder / "INDEX.csv", newline="") as index:
        expected = {row["path_relative_to_bad_inputs"]: row["expected_faces"] for row in csv.DictReader(index)}
    before = gallery_state(admin)
    checked = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".md", ".csv")):
        if expected.get(path.relative_to(folder).as_posix()) == "1":
            continue  # a good photo of one face: enrolling it is right
        answer = admin.post(person("Bad Input"), files=upload(path))
        assert 400 <= answer.status_code < 500, (path, answer.text)
        error_of(answer, answer.status_code)
        assert admin.post("/v1/identify", files=upload(path)).status_code in (200, 413, 415), path
        checked += 1
    assert checked >= 15
    assert gallery_state(admin) == before


def test_ids_no_face_can_have_are_404_in_a_path_and_400_in_a_body(server, admin, enrolled):
    """Ids past 2**63 - 1 (SQLite INTEGER, PostgreSQL bigint) answered 500 OverflowError; out of
    range or not a number, an id in a path names nothing (404), in a body it is a bad field (400)."""
    before = gallery_state(admin)
    for face_id in (2**63, 10**30, 0, -1, "x"):
        for method, path in (
            ("GET", f"/v1/faces/{face_id}/crop"),
            ("DELETE", f"/v1/faces/{face_id}"),
            ("GET", f"/v1/library/faces/{face_id}/crop"),
            ("DELETE", f"/v1/library/faces/{face_id}"),
        ):
            assert "face_id" in error_of(admin.request(method, path), 404, "not_found"), (method, path)
        if face_id != 0:  # cluster 0 exists in principle
            answer = admin.post(f"/v1/library/clusters/{face_id}/name", json={"name": "Bob"})
            assert "cluster" in error_of(answer, 404, "not_found")
    for big in (2**63, 2**64 + 1, 0):
        assert "face_ids.0" in error_of(admin.post("/v1/library/faces/name", json={"face_ids": [big], "name": "Bob"}), 400)
        assert "face_ids.0" in error_of(admin.post("/v1/library/faces/unname", json={"face_ids": [big]}), 400)
    assert gallery_state(admin) == before


def test_audit_log_names_the_keys(server, admin, keys, enrolled):
    events = admin.get("/v1/log", params={"limit": 1000}).json()["events"]
    actors = {(e["action"], e["actor"]) for e in events}
    assert ("enroll", "key test-enroll") in actors and ("remove_person", "key test-admin") in actors
    assert ("key_create", "key test-admin") in actors
    printed = facesys("gallery", "log", "--json", gallery=server.gallery).stdout
    assert "key test-enroll" in printed


def test_thresholds_are_stored_and_used(server, admin, keys, enrolled):
    obama = sorted((enrolled / "barack_obama").glob("*.jpg"))
    pair = upload(obama[0], field="a") + upload(obama[-1], field="b")
    try:
        assert admin.put("/v1/thresholds", json={"verify": 0.05}).json() == {
            "schema_version": 1,
            "verify": 0.05,
            "identify": None,
        }
        with server.client(keys["identify"]) as client:
            answer = client.post("/v1/verify", files=pair).json()
            assert answer["threshold"] == 0.05 and answer["threshold_source"] == "gallery" and answer["same"] is False
            error_of(client.put("/v1/thresholds", json={"verify": 0.5}), 403)
        error_of(admin.put("/v1/thresholds", json={"verify": 3}), 400, "bad_request")
        assert admin.put("/v1/thresholds", json={"identify": 0.3}).json()["verify"] == 0.05  # a field left out is kept
    finally:
        assert admin.put("/v1/thresholds", json={"verify": None, "identify": None}).json()["verify"] is None


# -- guards and limits ----------------------------------------------------------------------------


def test_foreign_origin_and_host_are_refused(server, keys):
    with server.client(keys["admin"]) as client:
        error_of(client.get("/v1/people", headers={"Origin": "http://evil.example"}), 403, "forbidden")
        error_of(client.get("/v1/people", headers={"Host": "evil.example"}), 403)
        assert client.get("/v1/people", headers={"Origin": server.url}).status_code == 200


def test_concurrent_requests_share_micro_batches(server, keys, enrolled):
    photo = enrolled / "joe_biden" / "biden2.jpg"
    before = httpx.get(server.url + "/healthz").json()

    def one(_: int) -> int:
        with server.client(keys["identify"]) as client:
            return client.post("/v1/identify", files=upload(photo)).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(one, range(12))) == [200] * 12
    after = httpx.get(server.url + "/healthz").json()
    assert after["batched_images"] - before["batched_images"] == 12
    assert after["batches"] - before["batches"] < 12  # several requests per batch


def test_limits(tmp_path, people_photos):
    """Body size, files per request, pixels, request time; CORS only for the named origin."""
    gallery = tmp_path / "gallery"
    options = ("--max-upload-mb", "0.2", "--max-files", "2", "--max-pixels", "300000", "--cors", "http://app.example")
    server = Server(gallery, *options, "--request-timeout", "0.01", "--batch-wait-ms", "50").wait_ready()
    try:
        with server.client() as client:  # no key defined, loopback: admin
            big = sorted((people_photos / "barack_obama").glob("*.jpg"), key=lambda p: -p.stat().st_size)[0]
            assert big.stat().st_size > 0.2 * 2**20
            assert "limit" in error_of(client.post("/v1/identify", files=upload(big)), 413, "too_large")
            small = people_photos / "barack_obama" / "obama-240p.jpg"
            error_of(client.post("/v1/identify", files=upload(small, small, small)), 413)
            large_pixels = people_photos / "barack_obama" / "obama-720p.jpg"  # 1280 x 720 > 300,000 pixels
            assert "pixels" in error_of(client.post("/v1/identify", files=upload(large_pixels)), 413)
            error_of(client.post("/v1/identify", files=upload(small)), 503, "timeout")
            preflight = client.options(
                "/v1/identify", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
            )
            assert preflight.headers.get("access-control-allow-origin") == "http://app.example"
            assert client.get("/v1/people", headers={"Origin": "http://app.example"}).status_code == 200
    finally:
        server.stop()


def test_not_ready_is_503(tmp_path):
    server = Server(tmp_path / "gallery", "--model", str(tmp_path / "missing.ckpt"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(server.url + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)
        error_of(answer, 503, "not_ready")
        time.sleep(1.0)
        error_of(httpx.post(server.url + "/v1/identify", files=upload(Path(__file__))), 503, "not_ready")
    finally:
        server.stop()


def test_refuses_a_public_address_without_keys(tmp_path):
    result = facesys("serve", "--host", "0.0.0.0", gallery=tmp_path / "g", check=False)
    assert result.returncode == 2
    assert "no API key" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def ready_answer(server, key: str, method: str, path: str, timeout_s: float = 60.0, **request) -> httpx.Response:
    """The first answer to a request on a fresh connection that does not come from a worker still loading."""
    deadline = time.monotonic() + timeout_s
    while True:
        with server.client(key) as client:
            answer = getattr(client, method)(path, **request)
        if answer.status_code != 503 or answer.json()["error"]["code"] != "not_ready" or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_workers_share_the_gallery(tmp_path, people_photos):
    gallery = tmp_path / "gallery"
    key = create_key(gallery, "admin", "admin")
    server = Server(gallery, "--workers", "2").wait_ready()
    try:
        photos = sorted((people_photos / "kit_harington").glob("john*"))
        probe = people_photos / "_multi_face" / "kit_with_rose.jpg"
        # wait_ready saw one worker ready; the other may still be loading (503 not_ready) on a busy machine
        assert ready_answer(server, key, "post", person("Kit Harington"), files=upload(*photos[:2])).status_code == 201
        for _ in range(6):  # fresh connections: both workers answer some
            answer = ready_answer(server, key, "post", "/v1/identify", files=upload(probe))
            assert "Kit Harington" in [f["name"] for f in answer.json()["results"][0]["faces"]]
    finally:
        server.stop()
