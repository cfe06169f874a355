"""What a service is started with: the global options, where it listens and its limits."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, field

from facesys import config

SETTINGS_ENV = "FACESYS_SERVICE_SETTINGS"  # how ``serve --workers N`` hands its settings to each worker process


@dataclass(frozen=True)
class ServiceSettings:
    """``gallery``/``key_file``/``model``/``detector``/``device``/``weights``/``precision``/``threads``: as the
    CLI's global options;
    ``workers``: processes serving (each takes at most an equal share of the cores);
    ``host``/``port``: where to listen; ``cors``: origins allowed to call from a browser;
    ``max_upload_bytes``: largest request body; ``max_files``: uploads per request;
    ``max_pixels``: largest declared image size decoded; ``max_request_pixels``: declared
    pixels of all of a request's photos together; ``request_timeout_s``: longest a
    request waits for its answer; ``batch_size`` (images) and ``batch_wait_ms``: when a
    micro-batch closes; ``max_queue``: requests waiting before new ones get 503;
    ``allow_anonymous``: requests without a key are admin (loopback only; ``serve --allow-anonymous``)."""

    gallery: str | None = None
    key_file: str | None = None  # an encrypted gallery's key file (its path: the key itself never leaves it)
    model: str | None = None
    detector: str | None = None  # None: the default detector
    device: str = "cpu"
    weights: str | None = None
    precision: str = "auto"
    threads: int | str | None = None  # None: from the environment (FACESYS_THREADS), else automatic
    workers: int = 1
    host: str = config.SERVICE_HOST
    port: int = config.SERVICE_PORT
    cors: tuple[str, ...] = field(default_factory=tuple)
    max_upload_bytes: int = config.MAX_UPLOAD_MB * 2**20
    max_files: int = config.MAX_FILES
    max_pixels: int = config.MAX_UPLOAD_PIXELS
    max_request_pixels: int = config.MAX_REQUEST_PIXELS
    request_timeout_s: float = config.REQUEST_TIMEOUT_S
    batch_size: int = config.PHOTO_BATCH
    batch_wait_ms: float = config.BATCH_WAIT_MS
    max_queue: int = config.MAX_QUEUE
    allow_anonymous: bool = False

    @property
    def loopback(self) -> bool:
        """Whether the service listens on this machine only."""
        return is_loopback(self.host)

    def to_environment(self) -> None:
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> ServiceSettings:
        values = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
        values["cors"] = tuple(values.get("cors", ()))
        return cls(**values)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
