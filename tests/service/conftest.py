"""A real ``facesys serve`` process on a free loopback port, and an HTTP client for it.

``Server`` starts the CLI as a subprocess over a gallery folder, waits for /healthz to say ready
(the model loads in the background) and stops it at the end. Tests talk HTTP to it with httpx.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import data_path

STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def facesys(*args: str, gallery: Path | str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the facesys CLI on ``gallery`` (as a user would)."""
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=300)


class Server:
    """``facesys serve`` on 127.0.0.1:<free port> over ``gallery`` (a folder or a database URL) with
    extra ``options``; its output goes to ``log`` (default: beside a folder gallery). ``scheme``
    https and ``verify`` (an SSL context trusting its certificate) for one serving TLS."""

    def __init__(self, gallery: Path | str, *options: str, log: Path | None = None, scheme: str = "http", verify=True):
        self.gallery, self.port, self.verify = gallery, free_port(), verify
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = log or Path(gallery).with_suffix(".serve.log")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        command = [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), "serve", "--port", str(self.port), *options]
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, statuses: tuple[int, ...] = (200,)) -> Server:
        """Once /healthz answers one of ``statuses`` (503 too: listening, the model still loading)."""
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"facesys serve exited ({self.process.returncode}):\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2, verify=self.verify).status_code in statuses:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"facesys serve not ready after {STARTUP_S} s:\n{self.log()}")

    def client(self, key: str | None = None, **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 120, "verify": self.verify, **options})

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def people_photos() -> Path:
    """../shared/data/face_recognition: a folder per person, and _multi_face/ group photos."""
    return data_path("face_recognition")


def create_key(gallery: Path | str, name: str, scope: str) -> str:
    """A new API key made with the CLI (printed alone on stdout)."""
    return facesys("keys", "create", name, "--scope", scope, gallery=gallery).stdout.strip()


LIBRARY_PEOPLE = ("joe_biden", "kit_harington", "rose_leslie")  # folders of face_recognition: 7 photos, one face each


@pytest.fixture(scope="session")
def library_gallery(tmp_path_factory, people_photos) -> Path:
    """A gallery whose photo library holds the photos of LIBRARY_PEOPLE, scanned with the CLI (not
    clustered, nobody enrolled, no keys); copy it before serving it."""
    gallery = tmp_path_factory.mktemp("library") / "gallery"
    facesys("scan", *(str(people_photos / folder) for folder in LIBRARY_PEOPLE), gallery=gallery)
    return gallery


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, people_photos):
    """A server over a gallery with one key per scope: yields (server, {scope: key})."""
    gallery = tmp_path_factory.mktemp("served") / "gallery"
    keys = {scope: create_key(gallery, f"test-{scope}", scope) for scope in ("identify", "enroll", "admin")}
    server = Server(gallery).wait_ready()
    yield server, keys
    server.stop()
