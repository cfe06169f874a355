"""Joining Ray for one job: a local Ray started on the loopback address, or a running cluster.

``address``: None or ``local`` starts a local Ray for the job (every process of it on 127.0.0.1, no
dashboard) and stops it after; ``auto`` joins the cluster started on this machine (``ray start``);
``host:port`` or ``ray://host:port`` joins that one. A Ray already initialised in this process
(a test's, a notebook's) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from types import ModuleType

from facesys.errors import FacesysError

LOCAL = "local"
LOOPBACK = "127.0.0.1"
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$")


def check_address(address: str | None) -> str:
    """``address`` as given (None: ``local``); FacesysError when it cannot be a Ray address."""
    if address is None or address == LOCAL:
        return LOCAL
    if address == "auto" or _ADDRESS.match(address):
        return address
    raise FacesysError(
        f"ray address {address!r}: not an address (host:port, ray://host:port, auto, or local for a Ray on this machine)",
        parameter="ray",
    )


def import_ray() -> ModuleType:
    """The ray module; FacesysError when it is not installed."""
    try:
        import ray
    except ImportError:
        raise FacesysError('Ray is not installed: pip install "facesys[ray]"', parameter="ray") from None
    return ray


@contextlib.contextmanager
def connected(address: str | None = None, cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray joined (or started: ``cpus`` CPUs, default all) for the ``with`` block; yields the ray
    module. FacesysError naming the address when it cannot be joined."""
    address = check_address(address)
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == LOCAL:
            _start_on_loopback(ray, cpus, options)
        else:
            ray.init(address=address, **options)
    except FacesysError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... from a bad or dead address
        ray.shutdown()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacesysError(f"ray address {address}: cannot join ({first})", parameter="ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _start_on_loopback(ray: ModuleType, cpus: int | None, options: dict) -> None:
    """A new local Ray whose every process binds 127.0.0.1. Ray turns a loopback ``_node_ip_address``
    into the machine's network address unless its no-cluster mode is on (ray._private.services:
    resolve_ip_for_localhost reads ray_constants.ENABLE_RAY_CLUSTER, set from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when ray is imported): that mode is on while Ray starts (the
    node's processes are given the address explicitly), and the result is checked."""
    from ray._private import ray_constants

    mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=cpus, _node_ip_address=LOOPBACK, **options)  # "local": never a running one
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = mode
    if ray.util.get_node_ip_address() != LOOPBACK:
        ray.shutdown()
        raise FacesysError(f"a local Ray would not bind {LOOPBACK} only (this Ray version resolves it otherwise)", "ray")
