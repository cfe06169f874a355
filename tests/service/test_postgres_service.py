"""Two ``facesys serve`` processes over one PostgreSQL gallery (a throwaway cluster, see
tests/postgres.py): changes seen across servers, concurrent enrollment without duplicates, a server
killed mid-enrollment, and the database stopped under load."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import data_path
from tests.service.conftest import Server, create_key

pytestmark = pytest.mark.slow


def photo_upload(path: Path) -> list:
    return [("images", (path.name, path.read_bytes(), "image/jpeg"))]


def enroll(client: httpx.Client, name: str, photo: Path) -> httpx.Response:
    return client.post("/v1/people/" + quote(name, safe=""), files=photo_upload(photo))


def lfw_people(count: int, photos: int) -> list[tuple[str, list[Path]]]:
    """``count`` LFW people with at least ``photos`` photos each (their first ``photos``), by name."""
    folders = sorted(p for p in data_path("lfw").iterdir() if p.is_dir())
    found = [(f.name.replace("_", " "), sorted(f.glob("*.jpg"))[:photos]) for f in folders]
    return [(name, files) for name, files in found if len(files) == photos][:count]


@pytest.fixture()
def two_servers(postgres_cluster, tmp_path):
    """(database URL, admin key, server A, server B) over one new database."""
    url = postgres_cluster.create_database()
    key = create_key(url, "admin", "admin")
    servers = [Server(url, log=tmp_path / f"serve-{n}.log") for n in "ab"]
    try:
        for server in servers:
            server.wait_ready()
        yield url, key, *servers
    finally:
        for server in servers:
            server.stop()


def test_a_photo_enrolled_through_one_server_is_identified_through_the_other_within_a_second(two_servers):
    _, key, first, second = two_servers
    photos = sorted(data_path("face_recognition", "barack_obama").glob("*.jpg"))
    probe = data_path("face_recognition", "_multi_face", "two_people.jpg")
    someone_else = sorted(data_path("face_recognition", "kit_harington").glob("*.jpg"))[0]
    with first.client(key) as a, second.client(key) as b:
        assert b.post("/v1/identify", files=photo_upload(probe)).json()["error"]["code"] == "no_gallery"  # nobody yet
        assert enroll(a, "Kit Harington", someone_else).status_code == 201
        assert b.post("/v1/identify", files=photo_upload(probe)).status_code == 200  # b has loaded its index
        assert enroll(a, "Barack Obama", photos[0]).status_code == 201
        committed = time.monotonic()
        while True:
            names = [f["name"] for f in b.post("/v1/identify", files=photo_upload(probe)).json()["results"][0]["faces"]]
            if "Barack Obama" in names:
                break
            assert time.monotonic() - committed < 1.0, "server B did not see the enrollment within 1 s"
            time.sleep(0.05)


def test_four_clients_enrolling_over_two_servers_make_no_duplicates(two_servers):
    """200 photos of 50 people, split over 4 clients and 2 servers (so one person's photos arrive at
    both servers at once), plus 20 photos sent to both servers at the same time."""
    _, key, first, second = two_servers
    people = lfw_people(50, 4)
    jobs = [(name, photo) for name, photos in people for photo in photos]
    twice = [(name, photos[0]) for name, photos in people[:20]]
    answers: list[tuple[str, Path, int, dict]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        mine = jobs[number::4] + (twice if number < 2 else [])  # clients 0 and 1 both send the 20 "twice" photos
        with (first if number % 2 == 0 else second).client(key) as http:
            for name, photo in mine:
                answer = enroll(http, name, photo)
                with lock:
                    answers.append((name, photo, answer.status_code, answer.json()))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(4)))

    assert all(status in (200, 201, 422) for _, _, status, _ in answers), [a for a in answers if a[2] not in (200, 201, 422)]
    enrolled = Counter()
    for name, photo, status, body in answers:
        if status == 201:
            enrolled[(name, photo.name)] += 1
            assert body["results"][0]["face_id"] > 0
    assert max(enrolled.values()) == 1  # a photo sent twice is enrolled once (the other answer: duplicate)
    rejected = {(name, photo.name) for name, photo, status, _ in answers if status == 422}
    assert len(enrolled) + len(rejected) == len(jobs)
    with first.client(key) as http:
        listed = {p["name"]: p["faces"] for p in http.get("/v1/people").json()["people"]}
        stored = Counter()
        for name in listed:
            for face in http.get("/v1/people/" + quote(name, safe="")).json()["faces"]:
                stored[(name, face["source"])] += 1
    assert stored == enrolled  # every photo reported enrolled is there once, under its person, nothing else
    assert len(listed) == len({name for name, _ in enrolled})  # one person per name, never two "Ann"s


def test_a_server_killed_mid_enrollment_loses_nothing_it_reported(two_servers):
    _, key, first, second = two_servers
    photos = [(name, photos[0]) for name, photos in lfw_people(60, 1)]
    reported: dict[str, int] = {}

    def enroll_until_killed() -> None:
        with first.client(key, timeout=30) as http:
            for name, photo in photos:
                try:
                    answer = enroll(http, name, photo)
                except httpx.TransportError:
                    return
                if answer.status_code == 201:
                    reported[name] = answer.json()["results"][0]["face_id"]

    worker = threading.Thread(target=enroll_until_killed)
    worker.start()
    deadline = time.monotonic() + 60
    while len(reported) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.process.pid, signal.SIGKILL)
    worker.join(timeout=60)
    assert len(reported) >= 10
    with second.client(key) as http:
        for name, face_id in reported.items():
            faces = http.get("/v1/people/" + quote(name, safe="")).json()["faces"]
            assert face_id in [f["face_id"] for f in faces], name


def test_database_stopped_under_load_gives_503_then_recovers(two_servers, postgres_cluster):
    """Every answer while the database is down is 503, except an enrollment committed before it
    went down (201: it is enrolled; checked against the database at the end)."""
    _, key, first, second = two_servers
    probe = data_path("face_recognition", "joe_biden", "biden.jpg")
    people = [(name, photos[0]) for name, photos in lfw_people(400, 1)]
    reported: dict[str, int] = {}
    statuses: list[tuple[float, int]] = []
    unavailable_codes: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def load(server: Server, share: list[tuple[str, Path]]) -> None:
        with server.client(key, timeout=60) as http:
            for name, photo in share:
                if stop.is_set():
                    return
                answer = enroll(http, name, photo)
                identified = http.post("/v1/identify", files=photo_upload(probe))
                with lock:
                    for response in (answer, identified):
                        if response is answer and answer.status_code == 201:
                            continue  # committed before the stop, even if answered during it: checked below
                        statuses.append((time.monotonic(), response.status_code))
                        if response.status_code == 503:
                            unavailable_codes.add(response.json()["error"]["code"])
                    if answer.status_code == 201:
                        reported[name] = answer.json()["results"][0]["face_id"]

    threads = [threading.Thread(target=load, args=(s, people[i::2])) for i, s in enumerate((first, second))]
    for thread in threads:
        thread.start()
    time.sleep(3)
    postgres_cluster.stop()
    stopped = time.monotonic()
    time.sleep(10)
    postgres_cluster.start()
    started = time.monotonic()
    time.sleep(15)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)

    during = [status for at, status in statuses if stopped + 1 < at < started]
    after = [status for at, status in statuses if at > started + 8]
    assert during and set(during) == {503}, Counter(during)
    assert after and set(after) <= {200, 201, 422}, Counter(after)
    assert all(status in (200, 201, 422, 503) for _, status in statuses), Counter(s for _, s in statuses)
    assert unavailable_codes == {"gallery_unavailable"}
    with first.client(key) as http:
        for name, face_id in reported.items():
            faces = http.get("/v1/people/" + quote(name, safe="")).json()["faces"]
            assert face_id in [f["face_id"] for f in faces], name


def test_the_database_stopped_mid_enrollment_answers_which_photos_were_committed(postgres_cluster, tmp_path):
    """32 photos in one request, the database stopped once some are committed: the answer has a
    result per photo, "enrolled" exactly for those in the database after it is back, "error" (not
    enrolled, database unreachable) for the others (it used to be 503 with no results)."""
    import psycopg

    url = postgres_cluster.create_database()
    key = create_key(url, "admin", "admin")
    server = Server(url, log=tmp_path / "serve.log").wait_ready()
    photos = sorted(data_path("lfw", "George_W_Bush").glob("*.jpg"))[:32]
    answer: list[httpx.Response] = []

    def send() -> None:
        with server.client(key, timeout=300) as http:
            files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
            answer.append(http.post("/v1/people/" + quote("George W Bush", safe=""), files=files))

    def committed() -> int:
        with psycopg.connect(url, connect_timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM faces").fetchone()[0]

    sender = threading.Thread(target=send)
    try:
        sender.start()
        deadline = time.monotonic() + 240
        while committed() < 3 and sender.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        postgres_cluster.stop()
        sender.join(timeout=300)
        postgres_cluster.start()
        assert answer, "no answer"
        body = answer[0].json()
        assert answer[0].status_code == 201, body
        with psycopg.connect(url) as connection:
            stored = {source for (source,) in connection.execute("SELECT source FROM faces").fetchall()}
    finally:
        postgres_cluster.start()
        server.stop()
    results = body["results"]
    assert len(results) == 32 and {r["source"] for r in results} == {p.name for p in photos}
    enrolled = {r["source"] for r in results if r["status"] == "enrolled"}
    assert 3 <= len(enrolled) < 32 and enrolled == stored, (len(enrolled), len(stored))
    others = [r for r in results if r["status"] != "enrolled"]
    assert all(r["status"] in ("error", "rejected") for r in others)
    assert any("not enrolled" in r["reason"] and "unreachable" in r["reason"] for r in others), others
    assert body["summary"]["enrolled"] == len(enrolled) and sum(body["summary"].values()) == 32
