"""Ray for tests and benchmarks, bound to the loopback address only (see README.md here).

Two shapes: :func:`local_ray` (one node, ``ray.init(num_cpus=2)`` as the issue asks) and
:func:`two_node_cluster` (a head and a worker node on this machine through
``ray.cluster_utils.Cluster``, the worker with a resource of its own so it can be killed mid-job).

Ray 2.60 resolves ``--node-ip-address 127.0.0.1`` to the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; with it, every Ray process (GCS, raylets, workers,
runtime-env agents, the driver's own gRPC server) listens on 127.0.0.1 only.
:func:`non_loopback_listeners` checks it (a test does). Every process is a descendant of the
process that starts Ray, so the check walks this process's children.

Nothing is written outside a fresh ``/tmp/fray-*`` folder (short: Ray's Unix sockets live under
it and a socket path may not exceed 107 bytes): usage statistics are off (they would be sent to
the internet) and token authentication takes a new token from the environment instead of
creating ``~/.ray/auth_token``.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent.parent
# The smallest object store Ray 2.60 accepts is 75 MiB; the toy job and 100 LFW photos per batch fit in this.
OBJECT_STORE_BYTES = 128 * 2**20
# A dead node is declared after period x threshold (defaults 3 s x 5 = 15 s): a kill test waits less.
FAST_FAILURE_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


def prepare_environment() -> None:
    """Environment for every Ray process started from here on (children inherit it): loopback
    only, no usage statistics, token authentication with a new token, quiet, and this checkout
    importable by workers (functions of tests/ and benchmarks/ travel by module name)."""
    token = os.environ.get("RAY_AUTH_TOKEN") or uuid.uuid4().hex
    os.environ.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # 127.0.0.1 stays 127.0.0.1 (services.get_node_ip_address)
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
            "RAY_SCHEDULER_EVENTS": "0",  # no scheduler event messages on the driver
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # silences a FutureWarning per worker (no GPUs here)
        }
    )
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])
    # Ray reads these at import (ray_constants) or caches them (its C++ config, the token): where it
    # was imported already (a test module importing ray first), correct and reload them.
    if "ray" in sys.modules:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        with contextlib.suppress(ImportError):  # token authentication: recent Rays only
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _session_folder() -> Iterator[str]:
    """A new short temporary folder for Ray's session (logs, sockets, spilled objects), removed after."""
    folder = tempfile.mkdtemp(prefix="fray-", dir="/tmp")
    atexit.register(shutil.rmtree, folder, True)  # again at exit: seen recreated (empty) after a node kill
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _init_args() -> dict:
    """ray.init arguments of a driver here: quiet (no worker output forwarded, warnings only)."""
    return {"log_to_driver": False, "logging_level": logging.WARNING, "include_dashboard": False}


@contextlib.contextmanager
def local_ray(num_cpus: int = 2, num_gpus: int = 0, system_config: dict | None = None) -> Iterator[str]:
    """A one-node Ray on loopback for the duration of the block, connected; yields its address.
    ``num_gpus``: GPUs it may hand to tasks and actors (0: none, even on a GPU machine)."""
    prepare_environment()
    import ray

    with _session_folder() as folder:
        info = ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            object_store_memory=OBJECT_STORE_BYTES,
            _node_ip_address=LOOPBACK,
            _temp_dir=folder,
            _system_config=system_config,
            **_init_args(),
        )
        try:
            yield info.address_info["gcs_address"]
        finally:
            ray.shutdown()


@dataclass
class TwoNodes:
    """A head node and a worker node of one Ray cluster on this machine; the driver is connected."""

    cluster: object  # ray.cluster_utils.Cluster
    worker: object  # ray._private.node.Node

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def worker_node_id(self) -> str:
        return self.worker.node_id

    def kill_worker(self) -> None:
        """Kill every process of the worker node at once (SIGKILL), as a machine that dies: its
        task workers first (children of its raylet, which would otherwise finish their task
        before noticing the raylet is gone), then the node itself."""
        import psutil

        for info in self.worker.all_processes.get("raylet", []):
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(info.process.pid).children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
        self.cluster.remove_node(self.worker, allow_graceful=False)


@contextlib.contextmanager
def two_node_cluster(
    head_cpus: int = 1, worker_cpus: int = 1, worker_resources: dict | None = None, system_config: dict | None = None
) -> Iterator[TwoNodes]:
    """A head and a worker node on loopback (each its own raylet and object store), the driver
    connected; the worker carries ``worker_resources`` (default ``{"worker": 1}``)."""
    prepare_environment()
    import ray
    from ray.cluster_utils import Cluster

    node = {"object_store_memory": OBJECT_STORE_BYTES, "node_ip_address": LOOPBACK, "num_gpus": 0}
    with _session_folder() as folder:
        head = {**node, "num_cpus": head_cpus, "include_dashboard": False, "temp_dir": folder}
        if system_config:
            head["_system_config"] = system_config
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            worker = cluster.add_node(**node, num_cpus=worker_cpus, resources=worker_resources or {"worker": 1})
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, **_init_args())
            try:
                yield TwoNodes(cluster, worker)
            finally:
                ray.shutdown()
        finally:
            cluster.shutdown()


def ray_processes() -> list:
    """This process and its descendants (every Ray process started from here: GCS, raylets,
    agents, workers), as psutil processes (Ray's vendored psutil)."""
    import psutil  # importable after ``import ray`` (ray/thirdparty_files)

    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def non_loopback_listeners() -> list[str]:
    """``name[pid] ip:port`` of every listening TCP socket and bound UDP socket of
    :func:`ray_processes` that is not on a loopback address (empty: loopback only)."""
    import psutil

    found = []
    for process in ray_processes():
        try:
            # psutil 6 renamed connections() (older Rays vendor psutil 5)
            connections = (getattr(process, "net_connections", None) or process.connections)(kind="inet")
            name = process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in connections:
            listening = conn.status == psutil.CONN_LISTEN or (conn.type == 2 and not conn.raddr)  # 2: SOCK_DGRAM
            if listening and conn.laddr and not _loopback(conn.laddr.ip):
                found.append(f"{name}[{process.pid}] {conn.laddr.ip}:{conn.laddr.port}")
    return found


def listeners() -> list[str]:
    """``name[pid] ip:port`` of every listening TCP socket of :func:`ray_processes` (for reports)."""
    import psutil

    found = []
    for process in ray_processes():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found += [
                f"{process.name()}[{process.pid}] {c.laddr.ip}:{c.laddr.port}"
                for c in (getattr(process, "net_connections", None) or process.connections)(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            ]
    return found
