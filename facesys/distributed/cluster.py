"""Joining Ray for one job: a local Ray started on the loopback address, or a running cluster.

``address``: None or ``local`` starts a local Ray for the job (every process of it on 127.0.0.1, no
dashboard) and stops it after; ``auto`` joins the cluster started on this machine (``ray start``);
``host:port`` or ``ray://host:port`` joins that one (checked first: nothing answering there is an
error within seconds, not Ray's minutes of retries). A Ray already initialised in this process (a
test's, a notebook's) is used as it is and left running (asked for ``local``, ``auto`` or its own
address).

Ray turns a loopback address into the machine's network address unless its no-cluster mode is on
(ray._private.services.resolve_ip_for_localhost reads ray_constants.ENABLE_RAY_CLUSTER, set from
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when ray is imported): that mode is on while a local Ray starts or
a loopback address is joined, so nothing is sent anywhere but 127.0.0.1 (checked after the start).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from types import ModuleType

from facesys.errors import FacesysError

LOCAL = "local"
LOOPBACK = "127.0.0.1"
REACH_TIMEOUT_S = 5.0  # how long a host:port may take to accept a connection
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>[A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


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
        _same_ray(ray, address)
        yield ray
        return
    options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address == LOCAL:
        options.update(num_cpus=cpus, _node_ip_address=LOOPBACK)
    else:
        _reachable(address)
        _token_if_any()
    try:
        with _loopback_kept(ray, address == LOCAL or _is_loopback(address)):
            ray.init(address=address, **options)  # "local": always a new Ray, never a running one
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... from a bad or dead address
        ray.shutdown()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacesysError(f"ray address {address}: cannot join ({first})", parameter="ray") from None
    if address == LOCAL and ray.util.get_node_ip_address() != LOOPBACK:
        ray.shutdown()
        raise FacesysError(f"a local Ray would not bind {LOOPBACK} only (this Ray version resolves it otherwise)", "ray")
    try:
        yield ray
    finally:
        ray.shutdown()


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a host:port or ray://host:port address (None: ``auto``)."""
    match = _ADDRESS.match(address)
    return (match["host"].strip("[]"), int(match["port"])) if match else None


def _is_loopback(address: str) -> bool:
    where = _host_port(address)
    return where is not None and (where[0].startswith("127.") or where[0] in _LOOPBACK_HOSTS)


def _reachable(address: str) -> None:
    """FacesysError unless something accepts a connection at ``address`` within REACH_TIMEOUT_S."""
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise FacesysError(f"ray address {address}: cannot join (nothing answers there: {why})", parameter="ray") from None


@contextlib.contextmanager
def _loopback_kept(ray: ModuleType, keep: bool) -> Iterator[None]:
    """Ray's no-cluster mode on for the block when ``keep`` (see the module docstring)."""
    if not keep:
        yield
        return
    from ray._private import ray_constants

    mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = mode


def _token_if_any() -> None:
    """Join with token authentication when this machine holds a Ray token and RAY_AUTH_MODE is not
    set, as the ``ray`` command does (``ray start`` enables it by default; ``ray.init`` joining an
    address does not look for the token by itself in Ray 2.60)."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _same_ray(ray: ModuleType, address: str) -> None:
    """FacesysError when this process already joined another Ray than ``address``."""
    if address in (LOCAL, "auto"):
        return
    joined = ray.get_runtime_context().gcs_address
    if _host_port(address) != _host_port(joined):
        raise FacesysError(f"ray address {address}: this process has already joined the Ray at {joined}", parameter="ray")
