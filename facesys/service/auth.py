"""API keys and scopes as FastAPI dependencies: ``Depends(require("enroll"))`` answers 401 for a
missing, unknown or revoked key and 403 for a key without the scope, and gives the endpoint the
:class:`Caller` (whose name goes into the gallery's audit log)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from facesys.keys import allows
from facesys.service.errors import ApiError
from facesys.service.request_store import RequestStore, request_store

bearer = HTTPBearer(auto_error=False, description="An API key made with `facesys keys create NAME --scope ...`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``actor`` as the audit log names it, and the key's ``scope``."""

    actor: str
    scope: str


def require(scope: str) -> Callable:
    """A dependency that lets a request through only with a key of ``scope`` (or a wider one)."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        store: Annotated[RequestStore, Depends(request_store)],
    ) -> Caller:
        caller = await run_in_threadpool(identify_caller, request.app.state.service, credentials, store)
        if not allows(caller.scope, scope):
            raise ApiError(403, f"{caller.actor} has scope {caller.scope!r}; this needs {scope!r}")
        return caller

    return check


def identify_caller(service, credentials: HTTPAuthorizationCredentials | None, store: RequestStore) -> Caller:
    """The Caller a request's credentials stand for. A request without credentials is admin only
    on a loopback address, and only when the service runs ``--allow-anonymous`` or the gallery
    never had a key (read per request from the store: a gallery that had keys always needs one,
    even after its last key is revoked)."""
    gallery = service.system.gallery
    if credentials is None:
        if service.settings.loopback and service.settings.allow_anonymous:
            return Caller("anonymous (--allow-anonymous)", "admin")
        with store.using() as opened:
            if service.settings.loopback and not gallery.keys_required(opened):
                return Caller("anonymous (no keys defined)", "admin")
        raise ApiError(401, "no API key: send 'Authorization: Bearer <key>'", headers=CHALLENGE)
    with store.using() as opened:
        key = gallery.key_for(credentials.credentials, opened)
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=CHALLENGE)
    return Caller(f"key {key.name}", key.scope)
