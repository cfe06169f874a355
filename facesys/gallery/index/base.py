"""The vector-index interface: nearest-neighbour search over a gallery's embeddings, derived from
the truth store and never trusted unless it provably belongs to it.

A backend subclasses :class:`VectorIndex`. Distances are Euclidean between unit vectors (not
squared), whatever the backend computes inside, so thresholds mean the same everywhere. Saved
files carry a header naming the gallery id, generation and model they were made from, and a
sha256 of their payload; a file whose header or checksum does not match is never used. An
encrypted gallery's index files hold the payload sealed (facesys/gallery/sealing.py): the header
(ids and sizes, nothing biometric) stays readable, the vectors do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesys.errors import GalleryKeyError
from facesys.gallery.sealing import SEALED, Sealer

MAGIC = b"FACESYS-INDEX\n"
TEMPORARY_PREFIX = ".index-"  # temporary files: .index-<pid>-<random>.tmp


@dataclass(frozen=True)
class IndexHeader:
    """What a saved index was made from: the store's ``gallery_id`` and ``generation``, the
    ``model_id`` of its vectors, the ``backend`` and its ``kind``, and how many vectors it holds."""

    gallery_id: str
    generation: int
    model_id: str
    backend: str
    kind: str
    count: int


class VectorIndex(ABC):
    """Search over (N, D) float32 unit vectors keyed by int64 face ids.

    ``header`` says which store state the index agrees with (set by whoever syncs it).
    """

    backend: str  # registry name
    kinds: tuple[str, ...] = ("auto",)  # kinds this backend can be forced to; "auto" chooses by size

    def __init__(self) -> None:
        self.header: IndexHeader | None = None

    @classmethod
    @abstractmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, kind: str = "auto") -> VectorIndex:
        """A new index over ``vectors`` (N, D) float32 keyed by ``ids`` (N,) int64."""

    @classmethod
    @abstractmethod
    def chosen_kind(cls, faces: int, setting: str = "auto") -> str:
        """The kind an index of ``faces`` vectors has under ``setting`` (a forced kind or auto)."""

    @property
    @abstractmethod
    def kind(self) -> str: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """(N,) int64 ids held, ascending."""

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) float32 vectors held for ``ids`` (which must be held)."""

    @abstractmethod
    def follow(self, added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray, kind: str) -> bool:
        """Add and remove in place to become an index of ``kind``; False when it cannot (then
        rebuild): another kind wanted, grown past what its structure suits, or no removal."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 -> (Q, k') Euclidean distances ascending and (Q, k') face ids, -1 where
        there is no result; k' = min(k, len) and at least 1."""

    @abstractmethod
    def to_bytes(self) -> bytes: ...

    @classmethod
    @abstractmethod
    def from_bytes(cls, payload: bytes | memoryview) -> VectorIndex: ...

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: Path, sealer: Sealer | None = None) -> None:
        """Write to ``path`` atomically, with the header and a checksum (OSError if it cannot);
        the payload sealed with ``sealer`` when given (never in clear, not even in the temporary file)."""
        assert self.header is not None, "an index is saved only once it is known what it belongs to"
        payload = self.to_bytes()
        if sealer is not None:
            payload = sealer.seal(payload)
        header = json.dumps(self.header.__dict__ | {"sha256": hashlib.sha256(payload).hexdigest()}).encode()
        temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            with open(temporary, "wb") as out:
                out.write(MAGIC + struct.pack("<I", len(header)) + header)
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, sealer: Sealer | None = None) -> VectorIndex | None:
        """The index saved at ``path`` with its header, or None when it is missing, damaged, not
        this backend's, or not sealed with ``sealer`` (None: saved in clear)."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            return None
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4 + size
        try:
            fields = json.loads(data[len(MAGIC) + 4 : start])
            checksum = fields.pop("sha256")
            header = IndexHeader(**fields)
        except (ValueError, TypeError, KeyError):
            return None
        payload = memoryview(data)[start:]
        if header.backend != cls.backend or hashlib.sha256(payload).hexdigest() != checksum:
            return None
        if sealer is not None:
            try:
                payload = sealer.open(payload)
            except GalleryKeyError:
                return None
        elif bytes(payload[: len(SEALED)]) == SEALED:  # sealed, and no key: rebuilt from the store (which needs one)
            return None
        try:
            index = cls.from_bytes(payload)
        except (RuntimeError, ValueError):
            return None
        if len(index) != header.count:
            return None
        index.header = header
        return index
