"""Every failure as one JSON object ``{"error": {"code", "message"}}`` with its HTTP status; never
a stack trace. Library errors (FacesysError and its kinds) map to statuses here, in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesys.errors import (
    ConflictError,
    FacesysError,
    GalleryError,
    GalleryKeyError,
    GalleryUnavailableError,
    GalleryVersionError,
    ImageError,
    ImageTooLargeError,
    InvalidIdError,
    InvalidValueError,
    NoFaceError,
    NoGalleryError,
    UnknownClusterError,
    UnknownFaceError,
    UnknownKeyError,
    UnknownPersonError,
)

log = logging.getLogger("facesys.service")

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
STATUS_CODES |= {409: "conflict", 413: "too_large", 415: "not_an_image", 422: "no_face", 503: "not_ready"}
STATUS_CODES[429] = "too_many_requests"  # with a Retry-After header (facesys/service/throttle.py)


class ApiError(Exception):
    """An answer that is an error: HTTP ``status``, a short ``code`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code or STATUS_CODES.get(status, "error"), message, headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": " ".join(str(message).split())}}


def error_response(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code or STATUS_CODES.get(status, "error"), message), status_code=status, headers=headers)


# Library error -> (HTTP status, code or None for the status's own); the first match wins, so a
# subclass comes before its base. Any other FacesysError is a bad argument (400).
LIBRARY_ERRORS: list[tuple[type[FacesysError] | tuple[type[FacesysError], ...], int, str | None]] = [
    (ImageTooLargeError, 413, None),
    (ImageError, 415, None),
    (NoFaceError, 422, None),
    (GalleryUnavailableError, 503, "gallery_unavailable"),
    (GalleryVersionError, 503, "gallery_too_new"),
    (GalleryKeyError, 503, "gallery_key"),  # encrypted, re-keyed or decrypted since the service started
    ((UnknownPersonError, UnknownFaceError, UnknownClusterError, UnknownKeyError, InvalidIdError), 404, None),
    (NoGalleryError, 404, "no_gallery"),
    (ConflictError, 409, None),
    (InvalidValueError, 400, None),
    (GalleryError, 500, "gallery_error"),
]


def api_error(exc: FacesysError) -> ApiError:
    """The HTTP form of a library error."""
    status, code = next(((status, code) for kinds, status, code in LIBRARY_ERRORS if isinstance(exc, kinds)), (400, None))
    return ApiError(status, str(exc), code)


def install_error_handlers(app: FastAPI) -> None:
    """Turn every exception an endpoint can raise into one JSON error object."""

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(FacesysError)
    async def on_library_error(request: Request, exc: FacesysError) -> JSONResponse:
        error = api_error(exc)
        return error_response(error.status, error.message, error.code)

    @app.exception_handler(RequestValidationError)
    async def on_bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'request'}: {e['msg']}" for e in exc.errors()[:3]]
        if exc.errors() and all(e["loc"][:1] == ("path",) for e in exc.errors()):  # an id no face or cluster can have
            return error_response(404, "; ".join(f"{p} (so nothing has it)" for p in problems))
        return error_response(400, "; ".join(problems) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.scope.get("route_path", "?"), type(exc).__name__, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details", "internal")
