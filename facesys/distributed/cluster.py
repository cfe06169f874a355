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

A local Ray (:func:`local_ray`, what ``connected`` starts, and the test clusters build on it) also
gets, for its whole life, :func:`local_environment` (inherited by every Ray process it starts): the
loopback mode above, usage statistics off (Ray would send them to the internet), token
authentication with a token of its own in the environment (Ray would otherwise write one to
``~/.ray/auth_token``) and quiet logs; its files go to a fresh short ``/tmp/fray-*`` folder
(:func:`session_folder`, removed after; Ray's default ``/tmp/ray`` is shared by every Ray of the
machine, and its Unix socket paths may not exceed 107 bytes), its object store is bounded
(``LOCAL_OBJECT_STORE_BYTES``; Ray's default takes 30% of the memory) and it has no dashboard.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

from facesys.errors import FacesysError

LOCAL = "local"
LOOPBACK = "127.0.0.1"
REACH_TIMEOUT_S = 5.0  # how long a host:port may take to accept a connection
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>[A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")
TEMP_ROOT = "/tmp"  # short: Ray's Unix sockets live in the session folder (107 bytes at most)
# The shipped model (~100 MB of weights, once per node) and the batches in flight fit; beyond it Ray
# spills to the session folder. Ray's own minimum is 75 MiB.
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
# ray.init arguments of every driver here: no dashboard, no worker output forwarded, warnings only.
QUIET = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
_AUTH_MODE, _AUTH_TOKEN, _AUTH_TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


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
        raise FacesysError('Ray is not installed: in the facesys checkout, pip install -e ".[ray]"', parameter="ray") from None
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
    if address == LOCAL:
        with local_ray(cpus):
            yield ray
        return
    _reachable(address)
    _token_if_any()
    try:
        with _loopback_kept(ray, _is_loopback(address)):
            ray.init(address=address, **QUIET)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... from a bad or dead address
        ray.shutdown()
        raise FacesysError(f"ray address {address}: cannot join ({_first_line(exc)})", parameter="ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def local_ray(
    cpus: int | None = None,
    gpus: int | None = None,
    object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES,
    system_config: dict | None = None,
) -> Iterator[str]:
    """A new one-node Ray on this machine, joined for the ``with`` block and stopped after (see the
    module docstring); yields its address (``127.0.0.1:PORT``). ``cpus``/``gpus``: what it may hand
    out (None: what the machine has). FacesysError when it cannot start on the loopback address."""
    ray = import_ray()
    with local_environment(), session_folder() as folder:
        try:
            info = ray.init(
                address=LOCAL,  # always a new Ray, never a running one (nor RAY_ADDRESS's)
                num_cpus=cpus,
                num_gpus=gpus,
                object_store_memory=object_store_bytes,
                _node_ip_address=LOOPBACK,
                _temp_dir=folder,
                _system_config=system_config,
                **QUIET,
            )
        except Exception as exc:
            ray.shutdown()
            raise FacesysError(f"a local Ray cannot start ({_first_line(exc)})", parameter="ray") from None
        try:
            if ray.util.get_node_ip_address() != LOOPBACK:
                raise FacesysError(f"a local Ray would not bind {LOOPBACK} only (this Ray version resolves it otherwise)", "ray")
            yield info.address_info["gcs_address"]
        finally:
            ray.shutdown()


def local_variables(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables every process of a local Ray gets (see the module docstring). A
    user's own authentication mode or token (RAY_AUTH_MODE, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH in
    ``environ``, default this process's) is kept; otherwise a new token, only in the environment."""
    environ = os.environ if environ is None else environ
    variables = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # 127.0.0.1 stays 127.0.0.1 in every Ray process
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        "RAY_SCHEDULER_EVENTS": "0",  # no scheduler event messages on the driver
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # silences a FutureWarning per worker without GPUs
        _AUTH_MODE: environ.get(_AUTH_MODE, "token"),
    }
    if variables[_AUTH_MODE].lower() == "token" and not (environ.get(_AUTH_TOKEN) or environ.get(_AUTH_TOKEN_PATH)):
        variables[_AUTH_TOKEN] = secrets.token_hex(16)
    return variables


@contextlib.contextmanager
def local_environment() -> Iterator[None]:
    """:func:`local_variables` in this process's environment for the ``with`` block (the Ray
    processes started in it inherit them), the previous values back after; Ray's settings read at
    import or cached (the loopback mode, its configuration, the token) follow both ways."""
    variables = local_variables()
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    _reload_ray_settings()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reload_ray_settings()


def _reload_ray_settings() -> None:
    """Ray's copies of the environment, read again where ray is imported (a later import reads it)."""
    if "ray" not in sys.modules:
        return
    from ray._private import ray_constants

    name, default = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, not ray_constants.IS_WINDOWS_OR_OSX
    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(name, default)  # as at import
    with contextlib.suppress(ImportError):  # token authentication: recent Rays only
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # the configuration first: a draining thread may reload the token
        AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def session_folder() -> Iterator[str]:
    """A new short folder under TEMP_ROOT for one Ray's session (logs, sockets, spilled objects),
    removed after the block (and again at exit: Ray was seen to recreate it, empty, after a node died)."""
    folder = tempfile.mkdtemp(prefix="fray-", dir=TEMP_ROOT if os.path.isdir(TEMP_ROOT) else None)
    atexit.register(shutil.rmtree, folder, True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
