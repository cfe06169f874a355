"""Encryption at rest of a gallery's biometric data: AES-256-GCM (``cryptography``), a key per gallery.

A gallery key is 32 random bytes kept in a key file (``facesys gallery keygen FILE``: base64 text,
mode 0600), never in the gallery. Everything biometric is *sealed* before it leaves the process:
``FSE1`` + a 96-bit random nonce + ciphertext + 128-bit tag for bytes (crops, embeddings, index
files, exports), and ``fse1:`` + the same in URL-safe base64 for text (landmarks). Each sealing
draws a fresh nonce (NIST SP 800-38D allows 2^32 random-nonce messages per key; rotate with
``gallery rekey`` long before: a million-face gallery seals a few million values in its life).
The associated data binds a value to its ``context`` (the gallery's id, or "export"), so a value
copied from another gallery with the same key does not open. A wrong key or an altered value
raises :class:`~facesys.errors.GalleryKeyError`, one line naming the key file.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from facesys.errors import GalleryKeyError

KEY_FILE_ENV = "FACESYS_KEY_FILE"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16
SEALED = b"FSE1"  # sealed bytes start with this
SEALED_TEXT = "fse1:"  # sealed text starts with this
KEY_CHECK = b"facesys gallery key check"
CHUNK_BYTES = 1 << 20  # a sealed stream (an export) is sealed in chunks of this many bytes
STREAM_MAGIC = b"FACESYS-SEALED\n"
EXPORT_CONTEXT = "export"  # exports open with the key alone, in any gallery that has it


@dataclass(frozen=True)
class GalleryKey:
    """A gallery key: ``secret`` (32 bytes, never shown) and ``source``, the file it was read
    from (for messages)."""

    secret: bytes = field(repr=False)
    source: str

    @classmethod
    def from_file(cls, path: str | Path) -> GalleryKey:
        """The key in ``path``: base64 or hex text of 32 bytes (what keygen writes), or the 32
        bytes themselves. GalleryKeyError naming the file when it is missing, readable by other
        users, or not a key."""
        path = Path(path)
        try:
            info = path.stat()
            data = path.read_bytes()
        except OSError as exc:
            raise GalleryKeyError(f"{path}: cannot read the key file ({exc.strerror})", parameter="key_file") from None
        if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise GalleryKeyError(
                f"{path}: key file is readable or writable by every user (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 {path}",
                parameter="key_file",
            )
        secret = _decoded(data)
        if secret is None:
            raise GalleryKeyError(
                f"{path}: not a gallery key (32 bytes, as base64 or hex text; 'facesys gallery keygen FILE' makes one)",
                parameter="key_file",
            )
        return cls(secret, str(path))

    def sealer(self, context: str) -> Sealer:
        """A sealer of this key bound to ``context`` (a gallery id, or "export")."""
        return Sealer(self, context)


def _decoded(data: bytes) -> bytes | None:
    """32 key bytes from a key file's content, or None."""
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    for decode in (base64.urlsafe_b64decode, base64.standard_b64decode, binascii.unhexlify):
        try:
            secret = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(secret) == KEY_BYTES:
            return secret
    return None


def key_from(key_file: str | Path | None) -> GalleryKey | None:
    """The key of ``key_file``, else of ``$FACESYS_KEY_FILE``, else None (an unencrypted gallery)."""
    chosen = key_file if key_file is not None else os.environ.get(KEY_FILE_ENV) or None
    return GalleryKey.from_file(chosen) if chosen is not None else None


def write_new_key(path: str | Path) -> GalleryKey:
    """Make a random key and write it to the new file ``path`` (mode 0600, base64 text); an existing
    file is never overwritten. GalleryKeyError naming the file when it cannot be written."""
    path = Path(path)
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GalleryKeyError(f"{path}: exists already; a key file is never overwritten", parameter="key_file") from None
    except OSError as exc:
        raise GalleryKeyError(f"{path}: cannot write the key file ({exc.strerror})", parameter="key_file") from None
    with os.fdopen(descriptor, "wb") as out:
        out.write(base64.urlsafe_b64encode(secret) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return GalleryKey(secret, str(path))


class Sealer:
    """Seals and opens values with one key in one ``context`` (see the module docstring)."""

    def __init__(self, key: GalleryKey, context: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only galleries with a key pay its import

        self.key = key
        self._cipher = AESGCM(key.secret)
        self._context = f"facesys:{context}".encode()

    def seal(self, data: bytes | bytearray | memoryview, extra: bytes = b"") -> bytes:
        """``data`` sealed: SEALED + nonce + ciphertext + tag (len(data) + 32 bytes)."""
        nonce = os.urandom(NONCE_BYTES)
        return SEALED + nonce + self._cipher.encrypt(nonce, bytes(data), self._context + extra)

    def open(self, blob: bytes | memoryview, extra: bytes = b"") -> bytes:
        """The bytes sealed in ``blob``. GalleryKeyError when it is not sealed, or not with this
        key and context (a wrong key, another gallery's value, an altered byte)."""
        blob = bytes(blob)
        if not blob.startswith(SEALED):
            raise GalleryKeyError(f"a value of an encrypted gallery is not sealed (key {self.key.source})")
        from cryptography.exceptions import InvalidTag

        nonce = blob[len(SEALED) : len(SEALED) + NONCE_BYTES]
        try:
            return self._cipher.decrypt(nonce, blob[len(SEALED) + NONCE_BYTES :], self._context + extra)
        except InvalidTag:
            raise GalleryKeyError(
                f"{self.key.source}: this key does not open the gallery's data (another key, or the data was altered)",
                parameter="key_file",
            ) from None

    def seal_text(self, text: str) -> str:
        return SEALED_TEXT + base64.urlsafe_b64encode(self.seal(text.encode())[len(SEALED) :]).decode()

    def open_text(self, text: str) -> str:
        try:
            blob = SEALED + base64.urlsafe_b64decode(text[len(SEALED_TEXT) :])
        except (ValueError, binascii.Error):
            blob = b""
        return self.open(blob).decode()

    def key_check(self) -> str:
        """A token kept in the gallery (meta ``encryption``) by which a key is recognised as its own."""
        return base64.b64encode(self.seal(KEY_CHECK)).decode()

    def opens(self, token: str) -> bool:
        """Whether ``token`` (from :meth:`key_check`) was made with this key and context."""
        try:
            return self.open(base64.b64decode(token)) == KEY_CHECK
        except (GalleryKeyError, ValueError, binascii.Error):
            return False

    # -- streams (exports) ------------------------------------------------------------------------

    def seal_stream(self, out: BinaryIO) -> SealingWriter:
        """A writable file object that seals what is written to it into ``out`` in chunks."""
        return SealingWriter(self, out)

    def open_stream(self, source: BinaryIO) -> Iterator[bytes]:
        """The chunks sealed by :meth:`seal_stream` in ``source`` (which starts after STREAM_MAGIC), in
        order. GalleryKeyError when a chunk is altered, reordered, missing or not this key's."""
        index, last = 0, False
        while not last:
            head = source.read(5)
            if len(head) < 5:
                raise GalleryKeyError(f"sealed file ends early (chunk {index}): it is cut short")
            last, size = head[0] == 1, int.from_bytes(head[1:], "little")
            blob = source.read(size)
            if len(blob) < size:
                raise GalleryKeyError(f"sealed file ends early (chunk {index}): it is cut short")
            yield self.open(blob, _chunk_context(index, last))
            index += 1


def _chunk_context(index: int, last: bool) -> bytes:
    """Associated data of a stream chunk: its number and whether it is the last (STREAM construction)."""
    return b":chunk:" + index.to_bytes(8, "little") + (b"\x01" if last else b"\x00")


class SealingWriter:
    """File-like: bytes written are sealed in CHUNK_BYTES chunks, each framed as
    [1 byte last?][4 bytes length][sealed chunk], after STREAM_MAGIC; :meth:`close` seals the last."""

    def __init__(self, sealer: Sealer, out: BinaryIO):
        self._sealer, self._out = sealer, out
        self._buffer = bytearray()
        self._index = 0
        self._position = 0
        self.closed = False
        out.write(STREAM_MAGIC)

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) > CHUNK_BYTES:
            self._emit(bytes(self._buffer[:CHUNK_BYTES]), last=False)
            del self._buffer[:CHUNK_BYTES]
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def _emit(self, chunk: bytes, last: bool) -> None:
        blob = self._sealer.seal(chunk, _chunk_context(self._index, last))
        self._out.write((b"\x01" if last else b"\x00") + len(blob).to_bytes(4, "little") + blob)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True


# -- files sealed whole (exports) --------------------------------------------------------------------


@contextmanager
def sealed_output(out: BinaryIO, key: GalleryKey | None) -> Iterator[BinaryIO]:
    """Write through this into the open file ``out``: sealed in chunks with ``key`` (an export of
    an encrypted gallery), or as it is when ``key`` is None."""
    if key is None:
        yield out
        return
    writer = key.sealer(EXPORT_CONTEXT).seal_stream(out)
    yield writer  # type: ignore[misc]
    writer.close()


def opened_file(path: Path, key: GalleryKey | None) -> Path | io.BytesIO:
    """``path`` when it is not sealed, else its content opened with ``key`` (in memory: never in
    clear on disk). GalleryKeyError naming ``path`` when it is sealed and ``key`` is None or not its key."""
    try:
        with open(path, "rb") as source:
            if source.read(len(STREAM_MAGIC)) != STREAM_MAGIC:
                return path
            if key is None:
                raise GalleryKeyError(
                    f"{path}: the file is encrypted; open it in a gallery opened with its key (--key-file or ${KEY_FILE_ENV})",
                    parameter="key_file",
                )
            try:
                return io.BytesIO(b"".join(key.sealer(EXPORT_CONTEXT).open_stream(source)))
            except GalleryKeyError as exc:
                raise GalleryKeyError(f"{path}: cannot be opened with {key.source} ({exc})", parameter="key_file") from None
    except OSError:
        return path  # the caller reports a missing or unreadable file
