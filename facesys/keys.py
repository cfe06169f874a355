"""API keys for the facesys service: scopes, making keys, hashing them.

A key is ``fsk_`` followed by 32 random bytes (URL-safe base64). The gallery stores only its
sha256 (:func:`hash_key`), never the key: shown once when made, it cannot be read back.

A scope grants itself and every scope before it in :data:`SCOPES`: ``identify`` (search and
verify), ``enroll`` (also add and remove faces), ``admin`` (also settings and keys).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

SCOPES = ("identify", "enroll", "admin")
KEY_PREFIX = "fsk_"
KEY_BYTES = 32  # 256 random bits
MAX_KEY_NAME_LENGTH = 100


@dataclass(frozen=True)
class ApiKey:
    """A stored key (its hash is not part of it): ``name``, ``scope``, and when it was made and
    revoked, in seconds since the epoch (``revoked_at`` None while it is active)."""

    name: str
    scope: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def allows(scope: str, needed: str) -> bool:
    """Whether a key of ``scope`` may do what needs ``needed`` (False for an unknown scope)."""
    if scope not in SCOPES or needed not in SCOPES:
        return False
    return SCOPES.index(scope) >= SCOPES.index(needed)


def new_key() -> str:
    """A new random key (``fsk_`` + 43 URL-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The sha256 hex digest of ``key``: what the gallery stores and looks keys up by.

    A fast hash is right here (unlike for passwords): a key holds 256 random bits, so there is
    nothing to guess from the hash however fast guesses are, and a lookup by hash costs one
    indexed query per request (no per-key salt: the hash itself is the index)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
