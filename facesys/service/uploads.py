"""Bounded requests: the body-size limit (checked as bytes arrive, not only from Content-Length)
and uploaded files turned into named in-memory images."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesys.service.errors import ApiError, error_response
from facesys.vision.images import ImageBytes, declared_pixels

MAX_FILENAME = 120


class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` gets 413 before anything reads
    it whole (a declared Content-Length is refused at once; a streamed body when it passes the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received, refused = 0, False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # answer now; the app then sees a client that went away
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded)

    def _message(self) -> str:
        return f"request body is over the limit of {self.max_bytes:,} bytes (--max-upload-mb)"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, self._message(), headers={"Connection": "close"})(scope, receive, send)


def upload_name(filename: str | None, position: int) -> str:
    """A client's file name made safe to show and store: its last path part, no control or
    invisible characters, at most MAX_FILENAME characters; ``upload <n>`` when it has none."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in "\u2028\u2029").strip()
    return name[:MAX_FILENAME] or f"upload {position}"


async def read_uploads(files: list[UploadFile], field: str, max_files: int, max_pixels: int) -> list[ImageBytes]:
    """The uploaded files of ``field`` as ImageBytes (400 when there is none, 413 when too many)."""
    if not files:
        raise ApiError(400, f"{field}: upload at least one image")
    if len(files) > max_files:
        raise ApiError(413, f"{field}: {len(files)} files; at most {max_files} per request (--max-files)")
    images = []
    for position, upload in enumerate(files, start=1):
        images.append(ImageBytes(upload_name(upload.filename, position), await upload.read(), max_pixels))
        await upload.close()
    return images


def check_total_pixels(images: list[ImageBytes], field: str, max_request_pixels: int) -> None:
    """413 when the photos of one request declare more than ``max_request_pixels`` pixels in all
    (read from their headers, before any is decoded: decoding is what takes the memory)."""
    total = sum(declared_pixels(image) for image in images)
    if total > max_request_pixels:
        raise ApiError(
            413,
            f"{field}: the photos declare {total:,} pixels in all; at most {max_request_pixels:,} "
            "are decoded per request (--max-request-pixels): send fewer or smaller photos",
        )


def describe_uploads(openapi: dict, max_files: int, max_bytes: int, max_pixels: int) -> dict:
    """The OpenAPI document with its file fields described so that every client generator reads
    them as files: ``type: string, format: binary`` beside OpenAPI 3.1's ``contentMediaType`` (which
    some, e.g. openapi-python-client, read as text), and the limits the service enforces (files per
    request, body size, pixels)."""
    limits = f"At most {max_files} files, {max_bytes:,} bytes in all, {max_pixels:,} pixels per image."
    for schema in openapi.get("components", {}).get("schemas", {}).values():
        for field in schema.get("properties", {}).values():
            item = field.get("items", field)
            if item.get("type") != "string" or "contentMediaType" not in item:
                continue
            item["format"] = "binary"
            if field is not item:
                field.update(minItems=1, maxItems=max_files)
            field["description"] = f"{field.get('description', '').rstrip('.')}. {limits}".lstrip(". ")
    return openapi
