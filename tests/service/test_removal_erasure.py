"""A person removed through the service leaves no copy of their embeddings in any index file
(issue 23, hole 4), searched for as an attacker would: the float32 bytes of each of their
embeddings, read from the store before the removal, in every file under the gallery folder, or
under the per-machine index cache of each PostgreSQL server (two servers, two "machines": each
has its own ``$FACESYS_CACHE``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from facesys.config import cache_dir
from facesys.gallery.location import index_folder_of
from tests.conftest import data_path
from tests.leftovers import files_holding, person_vectors
from tests.service.conftest import Server, create_key, facesys

pytestmark = pytest.mark.slow
VICTIM = "Barack Obama"


def victim_vectors(where: str | Path) -> list[bytes]:
    return person_vectors(where, VICTIM)


def photos(person: str, count: int) -> list[str]:
    """The first ``count`` of a person's photos (Obama's: not the resized copies of one photo)."""
    chosen = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg"] if person == "barack_obama" else None
    folder = data_path("face_recognition", person)
    return [str(folder / name) for name in chosen or sorted(p.name for p in folder.glob("*.jpg"))][:count]


def test_a_removal_through_the_service_erases_the_saved_index_before_it_answers(tmp_path):
    """A folder gallery: the service used to keep the index file (with the removed vectors) until
    SIGTERM, and forever after kill -9."""
    gallery = tmp_path / "g"
    facesys("enroll", "--name", VICTIM, *photos("barack_obama", 3), gallery=gallery)
    facesys("enroll", "--name", "Joe Biden", *photos("joe_biden", 2), gallery=gallery)
    signatures = victim_vectors(gallery)
    assert len(signatures) == 3 and files_holding(gallery, signatures)  # the CLI saved its index
    key = create_key(gallery, "admin", "admin")
    server = Server(gallery, log=tmp_path / "serve.log").wait_ready()
    try:
        with server.client(key) as http:
            assert http.delete("/v1/people/" + quote(VICTIM, safe="")).status_code == 200
            assert files_holding(gallery, signatures) == []  # the server is still running
    finally:
        server.stop()
    assert files_holding(gallery, signatures) == []  # and what it saved when it stopped


def machine_cache(tmp_path: Path, name: str) -> Path:
    """A cache folder of its own for one "machine", with the converted model weights copied from
    this one's (so that the server does not convert them again)."""
    folder = tmp_path / f"cache-{name}"
    folder.mkdir()
    for weights in cache_dir().glob("*.safetensors"):
        shutil.copy(weights, folder / weights.name)
    return folder


def test_a_removal_on_one_postgresql_server_erases_every_servers_index_cache(postgres_cluster, tmp_path, monkeypatch):
    url = postgres_cluster.create_database()
    key = create_key(url, "admin", "admin")
    caches = {name: machine_cache(tmp_path, name) for name in "ab"}
    servers = {}
    try:
        for name, cache in caches.items():
            monkeypatch.setenv("FACESYS_CACHE", str(cache))
            servers[name] = Server(url, log=tmp_path / f"serve-{name}.log")
        for server in servers.values():
            server.wait_ready()
        with servers["a"].client(key) as http:
            for person, folder, count in ((VICTIM, "barack_obama", 2), ("Joe Biden", "joe_biden", 1)):
                files = [("images", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in photos(folder, count)]
                assert http.post("/v1/people/" + quote(person, safe=""), files=files).status_code == 201
        folders = {}
        for name, cache in caches.items():  # each machine's cache holds an index of the gallery (a CLI command saved it)
            env = os.environ | {"FACESYS_CACHE": str(cache)}
            command = [sys.executable, "-m", "facesys.cli", "--gallery", url, "gallery", "index"]
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
            monkeypatch.setenv("FACESYS_CACHE", str(cache))
            folders[name] = index_folder_of(url)
        signatures = victim_vectors(url)
        assert len(signatures) == 2 and all(files_holding(folder, signatures) for folder in folders.values())

        with servers["a"].client(key) as http:
            assert http.delete("/v1/people/" + quote(VICTIM, safe="")).status_code == 200
        assert files_holding(folders["a"], signatures) == []  # the remover's machine: before it answered
        deadline = time.monotonic() + 10  # the other server: when it hears of the change
        while files_holding(folders["b"], signatures) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert files_holding(folders["b"], signatures) == []
    finally:
        for server in servers.values():
            server.stop()
    assert all(files_holding(folder, signatures) == [] for folder in folders.values())  # nor what they saved at stop
