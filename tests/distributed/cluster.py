"""Ray for tests and benchmarks, bound to the loopback address only (see README.md here).

Two shapes: :func:`local_ray` (one node, ``ray.init(num_cpus=2)`` as the issue asks) and
:func:`two_node_cluster` (a head and a worker node on this machine through
``ray.cluster_utils.Cluster``, the worker with a resource of its own so it can be killed mid-job).

Both build on facesys's own local Ray (facesys/distributed/cluster.py: the environment of every
Ray process, loopback only, no usage statistics, a token only in the environment, quiet, a fresh
``/tmp/fray-*`` folder removed after): what is here is only for tests, a smaller object store, the
checkout importable by workers, the killable worker node and the listener checks
(:func:`non_loopback_listeners`: every Ray process is a descendant of the process that starts Ray,
so the check walks this process's children).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facesys.distributed import cluster as facesys_ray

LOOPBACK = facesys_ray.LOOPBACK
ROOT = Path(__file__).resolve().parent.parent.parent
# The smallest object store Ray 2.60 accepts is 75 MiB; the test jobs fit in this.
OBJECT_STORE_BYTES = 128 * 2**20
# A dead node is declared after period x threshold (defaults 3 s x 5 = 15 s): a kill test waits less.
FAST_FAILURE_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


def checkout_importable() -> None:
    """This checkout on PYTHONPATH for every Ray process started from here on (functions of tests/
    and benchmarks/ travel by module name; facesys itself is installed)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])


@contextlib.contextmanager
def local_ray(num_cpus: int = 2, num_gpus: int = 0, system_config: dict | None = None) -> Iterator[str]:
    """A one-node Ray on loopback for the duration of the block, connected; yields its address.
    ``num_gpus``: GPUs it may hand to tasks and actors (0: none, even on a GPU machine)."""
    checkout_importable()
    with facesys_ray.local_ray(num_cpus, num_gpus, OBJECT_STORE_BYTES, system_config) as address:
        yield address


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
    checkout_importable()
    import ray
    from ray.cluster_utils import Cluster

    node = {"object_store_memory": OBJECT_STORE_BYTES, "node_ip_address": LOOPBACK, "num_gpus": 0}
    with facesys_ray.local_environment(), facesys_ray.session_folder() as folder:
        head = {**node, "num_cpus": head_cpus, "include_dashboard": False, "temp_dir": folder}
        if system_config:
            head["_system_config"] = system_config
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            worker = cluster.add_node(**node, num_cpus=worker_cpus, resources=worker_resources or {"worker": 1})
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, **facesys_ray.QUIET)
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
