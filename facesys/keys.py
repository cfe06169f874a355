"""API keys for the facesys service: scopes, making keys, hashing them.

A key is ``fsk_`` followed by 32 random bytes (URL-safe base64). The gallery stores only its
sha256 (:func:`hash_key`), never the key: shown once when made, it cannot be read back.

A scope grants itself and every scope before it in :data:`SCOPES`: ``identify`` (search and
verify), ``enroll`` (also add and remove faces), ``admin`` (also settings and keys).

A key may expire (``expires_at``) and carry a request rate (``rate``, :func:`parse_rate`: at most
N requests per second, minute, hour or day, enforced by the service per process).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from facesys.errors import InvalidValueError

SCOPES = ("identify", "enroll", "admin")
KEY_PREFIX = "fsk_"
KEY_BYTES = 32  # 256 random bits
MAX_KEY_NAME_LENGTH = 100
# A rate's period as written (``10/s``, ``100/min``) -> as stored and as the ``limits`` package reads it
RATE_PERIODS = {"s": "second", "sec": "second", "second": "second", "m": "minute", "min": "minute", "minute": "minute"}
RATE_PERIODS |= {"h": "hour", "hour": "hour", "d": "day", "day": "day"}
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True)
class ApiKey:
    """A stored key (its hash is not part of it): ``name``, ``scope``, and when it was made and
    revoked, in seconds since the epoch (``revoked_at`` None while it is active); when it expires
    and was last used (None: never), and its request ``rate`` (``10/second``; None: no limit)."""

    name: str
    scope: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None
    last_used_at: float | None = None
    rate: str | None = None

    @property
    def active(self) -> bool:
        """Not revoked (it may have expired)."""
        return self.revoked_at is None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (time.time() if now is None else now)

    def refusal(self, now: float | None = None) -> str | None:
        """Why the key opens nothing (``revoked``, ``expired``), or None when it is usable now."""
        if not self.active:
            return "revoked"
        return "expired" if self.expired(now) else None


def allows(scope: str, needed: str) -> bool:
    """Whether a key of ``scope`` may do what needs ``needed`` (False for an unknown scope)."""
    if scope not in SCOPES or needed not in SCOPES:
        return False
    return SCOPES.index(scope) >= SCOPES.index(needed)


def parse_rate(text: object) -> str:
    """A request rate as stored: ``N/second``, ``N/minute``, ``N/hour`` or ``N/day`` (N a whole
    number > 0), from ``10/s``, ``100/min``, ``1000/h``, ``5/day``...; InvalidValueError otherwise."""
    found = _RATE.fullmatch(text.lower()) if isinstance(text, str) else None
    if found is None or int(found[1]) == 0 or found[2] not in RATE_PERIODS:
        raise InvalidValueError(f"rate {text!r}: use N/s, N/min, N/h or N/day with a whole number N > 0, e.g. 10/s")
    return f"{int(found[1])}/{RATE_PERIODS[found[2]]}"


def new_key() -> str:
    """A new random key (``fsk_`` + 43 URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The sha256 hex digest of ``key``: what the gallery stores and looks keys up by.

    A fast hash is right here (unlike for passwords): a key holds 256 random bits, so there is
    nothing to guess from the hash however fast guesses are, and a lookup by hash costs one
    indexed query per request (no per-key salt: the hash itself is the index)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
