"""The "Scaling out" recipe of docs/scaling-out.md, run for real as far as one machine allows: a head
started with ``ray start --head`` (loopback only, token authentication), a PostgreSQL gallery, and
the ``facesys`` commands a user types, as subprocesses. A second ``ray start`` (a worker node) is
refused under loopback-only Ray (tests/distributed/README.md); test_node_kill.py covers two nodes.

The head is stopped by its own ``ray start --block`` process, then any process left with its
temporary folder on its command line: never ``ray stop``, which stops every Ray of this user on
the machine (other sessions' too)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesys.gallery.gallery import Gallery
from tests.conftest import data_path
from tests.distributed.cluster import LOOPBACK, OBJECT_STORE_BYTES, checkout_importable
from tests.postgres import free_port

ray = pytest.importorskip("ray", reason='Ray not installed (in the facesys checkout, pip install -e ".[ray]")')

RAY = Path(sys.executable).with_name("ray")  # the ray command installed with this Python's ray
ENROLLED = ("Colin Powell", "Colin_Powell", 1)  # name, LFW folder, photo number (not scanned)
SCANNED = {"Colin_Powell": range(2, 7), "Tony_Blair": range(1, 6)}
START_TIMEOUT_S = 90  # a 2-core machine shared with other sessions: the head takes 4-6 s when quiet


def ray_environment(token_file: Path) -> dict[str, str]:
    """The environment of every command of the recipe here: loopback only, no usage statistics, the
    token in ``token_file`` (as ~/.ray/auth_token would be: RAY_AUTH_MODE unset, so ``ray start``
    turns token authentication on because it finds one), no RAY_ADDRESS from outside."""
    from facesys.distributed.cluster import local_variables

    checkout_importable()
    environment = dict(os.environ) | local_variables()
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        environment.pop(name, None)
    token_file.write_text(uuid.uuid4().hex + "\n")
    token_file.chmod(0o600)
    return environment | {"RAY_AUTH_TOKEN_PATH": str(token_file), "FACESYS_THREADS": "1"}


def processes_of(folder: str) -> list:
    """The processes whose command line names ``folder`` (every process of the head started there)."""
    import psutil  # importable after ``import ray`` (ray/thirdparty_files)

    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(folder in part for part in process.info["cmdline"] or []):
                found.append(process)
    return found


def stop(head: subprocess.Popen, folder: str) -> None:
    """Stop the head: SIGTERM to its ``ray start --block`` (it stops its processes), then SIGKILL
    to any process of ``folder`` still there."""
    import psutil

    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=45)  # it drains for up to 30 s first
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    left = processes_of(folder)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=10)


@contextlib.contextmanager
def ray_head(environment: dict[str, str], cpus: int = 2) -> Iterator[tuple[str, Path]]:
    """``ray start --head --node-ip-address 127.0.0.1 --port P`` for the block, in a new short
    temporary folder; yields its address ``127.0.0.1:P`` and the folder."""
    folder = tempfile.mkdtemp(prefix="fray-", dir="/tmp")  # short: Ray's Unix sockets live under it
    port = free_port()
    command = [str(RAY), "start", "--head", "--node-ip-address", LOOPBACK, "--port", str(port)]
    command += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", folder]
    command += ["--num-cpus", str(cpus), "--num-gpus", "0", "--object-store-memory", str(OBJECT_STORE_BYTES), "--block"]
    log = Path(folder + ".log")
    with log.open("wb") as out:
        head = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = Path(folder) / "ray_current_cluster"  # written once the head is up
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), f"ray start did not start (exit {head.poll()}):\n{log.read_text(errors='replace')[-3000:]}"
        yield f"{LOOPBACK}:{port}", Path(folder)
    finally:
        stop(head, folder)
        shutil.rmtree(folder, ignore_errors=True)
        log.unlink(missing_ok=True)


def facesys(*arguments: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """``facesys ARGUMENTS`` as a user types it (this Python's facesys)."""
    command = [sys.executable, "-m", "facesys.cli", *arguments]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, check=False)


def test_the_recipe_scans_into_postgresql_on_a_ray_start_head(postgres_cluster, tmp_path):
    lfw = data_path("lfw")
    photos = tmp_path / "photos"  # on shared storage in the recipe: the same path on every node
    for person, numbers in SCANNED.items():
        (photos / person).mkdir(parents=True)
        for n in numbers:
            shutil.copy(lfw / person / f"{person}_{n:04d}.jpg", photos / person)
    name, folder, number = ENROLLED
    url = postgres_cluster.create_database()
    environment = ray_environment(tmp_path / "auth_token")

    with ray_head(environment) as (address, session):
        drivers = lambda: len(list(session.glob("session_latest/logs/python-core-driver-*")))  # noqa: E731
        before = drivers()  # a driver log per process that joined the head (none yet: only ray start ran)
        first = lfw / folder / f"{folder}_{number:04d}.jpg"
        enrolled = facesys("--gallery", url, "enroll", "--name", name, str(first), environment=environment)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        scan = facesys("--gallery", url, "scan", str(photos), "--ray", address, environment=environment)
        assert scan.returncode == 0, scan.stdout + scan.stderr
        assert "read 10 files (10 new, 0 changed)" in scan.stdout, scan.stdout
        assert drivers() == before + 1, "the scan did not join the head started by ray start"
        # on a node of the cluster: --ray auto finds it (here through RAY_ADDRESS: the head's folder is not /tmp/ray)
        on_node = environment | {"RAY_ADDRESS": address}
        again = facesys("--gallery", url, "scan", str(photos), "--ray", "auto", environment=on_node)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing new or changed: 10 unchanged" in again.stdout, again.stdout
        assert drivers() == before + 2, "--ray auto did not join the head"
        # a machine without the token is refused (after ~20 s of Ray retrying): a one-line error last, nothing written
        stranger = {k: v for k, v in environment.items() if k != "RAY_AUTH_TOKEN_PATH"} | {"HOME": str(tmp_path)}
        refused = facesys("--gallery", str(tmp_path / "g"), "scan", str(photos), "--ray", address, environment=stranger)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"ray address {address}: cannot join" in refused.stderr.strip().splitlines()[-1], refused.stderr
        assert not (tmp_path / "g").exists()

    assert not processes_of(str(session)), "a process of the head outlived ray_head"
    with Gallery(url).open() as store:
        recorded = {Path(photo.path).relative_to(photos).as_posix() for photo in store.library_photos()}
        people = [face.person for face in store.library_faces()]
    assert recorded == {path.relative_to(photos).as_posix() for path in photos.rglob("*.jpg")}
    assert len(people) >= 10 and people.count(name) >= 4  # Colin Powell's 5 photos named automatically (most of them)
