"""The service's door (issue 26, points 3 and 4), in-process with FastAPI's TestClient (no model):
bad keys from one address back off exponentially (429 + Retry-After), a valid key is served
whatever its address's back-off, a key's own rate answers 429 past it, an expired key answers
the same 401 as an unknown or revoked one (the log says which, never the key), and last uses are
recorded without a write per request."""

from __future__ import annotations

import logging
import time
import types
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from facesys.gallery import Gallery
from facesys.service import ServiceSettings, create_app
from facesys.service.throttle import FailureBackoff, client_key
from tests.service.test_api import error_of

REFUSED = "unknown, revoked or expired API key"


@contextmanager
def serve(gallery, address: str = "192.0.2.10"):
    """A TestClient over the service on ``gallery`` from client ``address``, ready at once (a fake
    embedder: no model is loaded; /v1/keys needs none); the service stops at the end."""
    app = create_app(ServiceSettings(gallery=str(gallery)))
    app.state.service.system._embedder = types.SimpleNamespace(model_id="fake@0")
    with TestClient(app, base_url="http://localhost", client=(address, 50000)) as client:
        deadline = time.monotonic() + 30
        while not app.state.service.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        client.service = app.state.service
        yield client


def get_keys(client, key: str):
    return client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def gallery(tmp_path):
    return tmp_path / "gallery"


def test_bad_keys_from_one_address_get_429_with_retry_after_but_a_valid_key_is_served(gallery, caplog):
    admin = Gallery(gallery).create_key("ops", "admin")
    revoked = Gallery(gallery).create_key("gone", "identify")
    Gallery(gallery).revoke_key("gone")
    caplog.set_level(logging.WARNING, "facesys.service")
    with serve(gallery) as guesser:
        for guess in ["fsk_wrong"] * 4 + [revoked]:
            error_of(get_keys(guesser, guess), 401, "unauthorized")
        answer = get_keys(guesser, "fsk_wrong")
        assert error_of(answer, 429, "too_many_requests") == "too many bad API keys from this address; retry in 1 s"
        assert answer.headers["Retry-After"] == "1"
        assert get_keys(guesser, admin).status_code == 200  # the owner of a good key, from the same address
        neighbour = TestClient(guesser.app, base_url="http://localhost", client=("192.0.2.11", 1))  # no second start-up
        error_of(get_keys(neighbour, "fsk_wrong"), 401)  # another address has its own count
        time.sleep(1.1)
        error_of(get_keys(guesser, "fsk_wrong"), 401)  # let through after the wait, and counted: the wait doubles
        assert get_keys(guesser, "fsk_wrong").headers["Retry-After"] == "2"
    logged = caplog.text
    assert "refused an unknown key from 192.0.2.10" in logged and "refused key 'gone' (revoked) from 192.0.2.10" in logged
    assert "client 192.0.2.10 in back-off after bad API keys" in logged and logged.count("in back-off") == 2  # once per wait
    assert admin not in logged and revoked not in logged and "fsk_wrong" not in logged


def test_backoff_doubles_up_to_its_cap_is_forgotten_when_quiet_and_bounded_in_memory():
    backoff = FailureBackoff(free=5, base=1.0, cap=300.0, forget=900.0, max_addresses=3)
    waits = [backoff.failed("198.51.100.1", now=float(i)) for i in range(16)]
    assert waits == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert backoff.waiting("198.51.100.1", now=15.0) == (300, True) and backoff.waiting("198.51.100.1", now=16.0)[1] is False
    assert backoff.waiting("198.51.100.1", now=316.0) is None
    assert backoff.failed("198.51.100.1", now=15.0 + 900.0) == 0  # quiet for 15 min: a fresh start
    for i in range(5):
        backoff.failed(f"203.0.113.{i}", now=1000.0)
    assert len(backoff) == 3  # the addresses failing longest ago are forgotten first
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"  # a host holds its /64
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_an_expired_key_is_refused_like_an_unknown_one_and_the_log_says_why(gallery, caplog):
    expired = Gallery(gallery).create_key("old", "admin", expires_at=time.time() - 1)
    later = Gallery(gallery).create_key("later", "admin", expires_at=time.time() + 3600)
    caplog.set_level(logging.WARNING, "facesys.service")
    with serve(gallery) as client:
        assert error_of(get_keys(client, expired), 401, "unauthorized") == REFUSED
        assert error_of(get_keys(client, "fsk_" + "A" * 43), 401) == REFUSED  # the same answer: existence not revealed
        assert get_keys(client, later).status_code == 200
    assert "refused key 'old' (expired) from 192.0.2.10" in caplog.text and expired not in caplog.text
    assert Gallery(gallery).key_for(expired) is None and Gallery(gallery).key_for(expired, any_state=True).expired()


def test_a_key_past_its_rate_gets_429_and_other_keys_do_not(gallery, caplog):
    limited = Gallery(gallery).create_key("batch", "admin", rate="3/min")
    free = Gallery(gallery).create_key("ops", "admin")
    caplog.set_level(logging.WARNING, "facesys.service")
    with serve(gallery) as client:
        assert [get_keys(client, limited).status_code for _ in range(3)] == [200] * 3
        answer = get_keys(client, limited)
        assert "this key's rate (3/minute) is used up" in error_of(answer, 429, "too_many_requests")
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
        assert get_keys(client, limited).status_code == 429
        assert [get_keys(client, free).status_code for _ in range(5)] == [200] * 5
    assert caplog.text.count("key 'batch' from 192.0.2.10 is over its rate 3/minute") == 1 and limited not in caplog.text


def test_last_use_is_recorded_without_a_write_per_request(gallery, monkeypatch):
    used = Gallery(gallery).create_key("used", "admin")
    Gallery(gallery).create_key("idle", "admin")
    writes = []
    real = Gallery.record_key_uses
    monkeypatch.setattr(Gallery, "record_key_uses", lambda self, uses: writes.append(dict(uses)) or real(self, uses))
    before = time.time()
    with serve(gallery) as client:
        assert [get_keys(client, used).status_code for _ in range(5)] == [200] * 5
        assert writes == []  # noted in memory: written once a minute, and when the service stops
    assert len(writes) == 1
    listed = Gallery(gallery).keys()
    last = {k.name: k.last_used_at for k in listed}
    assert last["idle"] is None and before <= last["used"] <= time.time()


def test_keys_made_over_http_carry_a_lifetime_and_a_rate(gallery):
    admin = Gallery(gallery).create_key("ops", "admin")
    headers = {"Authorization": f"Bearer {admin}"}
    with serve(gallery) as client:
        made = client.post("/v1/keys", json={"name": "cam", "expires": "1w", "rate": "10/s"}, headers=headers)
        assert made.status_code == 201, made.text
        assert made.json()["rate"] == "10/second" and made.json()["expires_at"] > time.time() + 6 * 86400
        listed = {k["name"]: k for k in get_keys(client, admin).json()["keys"]}
        assert (listed["cam"]["rate"], listed["cam"]["expires_at"]) == ("10/second", made.json()["expires_at"])
        bad = client.post("/v1/keys", json={"name": "x", "expires": "soon"}, headers=headers)
        assert "expires 'soon'" in error_of(bad, 400, "bad_request")
        assert "rate '5/week'" in error_of(client.post("/v1/keys", json={"name": "x", "rate": "5/week"}, headers=headers), 400)
    stored = Gallery(gallery).keys()
    assert [k.name for k in stored] == ["ops", "cam"]
