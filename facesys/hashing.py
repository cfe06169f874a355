"""The sha256 of a file, read in chunks: one function for every layer (models, enrollment, the
photo library), below all of them."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20  # bytes read at a time


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read ``CHUNK`` bytes at a time; OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
