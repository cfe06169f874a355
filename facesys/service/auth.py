"""API keys and scopes as FastAPI dependencies: ``Depends(require("enroll"))`` answers 401 for a
missing, unknown, revoked or expired key (one message for the last three, so the answer never
says whether a key existed; the log says which), 403 for a key without the scope, and 429 with
``Retry-After`` for a client address in back-off after bad keys or a key past its rate
(facesys/service/throttle.py); it gives the endpoint the :class:`Caller` (whose name goes into the
gallery's audit log). The log names the client address and the key's name, never the key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from facesys.keys import allows, hash_key
from facesys.service.errors import ApiError
from facesys.service.request_store import RequestStore, request_store

bearer = HTTPBearer(auto_error=False, description="An API key made with `facesys keys create NAME --scope ...`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
REFUSED_KEY = "unknown, revoked or expired API key"  # one answer for the three: it says nothing about the key
log = logging.getLogger("facesys.service")


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
        address = request.client.host if request.client else "unknown"
        caller = await run_in_threadpool(identify_caller, request.app.state.service, credentials, store, address)
        if not allows(caller.scope, scope):
            raise ApiError(403, f"{caller.actor} has scope {caller.scope!r}; this needs {scope!r}")
        return caller

    return check


def identify_caller(
    service, credentials: HTTPAuthorizationCredentials | None, store: RequestStore, address: str = "unknown"
) -> Caller:
    """The Caller a request's credentials stand for, from client ``address``. A request without
    credentials is admin only on a loopback address, and only when the service runs
    ``--allow-anonymous`` or the gallery never had a key (read per request from the store: a
    gallery that had keys always needs one, even after its last key is revoked). A good key is
    looked at before the address's back-off, so it is served whoever else guesses from there."""
    gallery = service.system.gallery
    if credentials is None:
        if service.settings.loopback and service.settings.allow_anonymous:
            return Caller("anonymous (--allow-anonymous)", "admin")
        with store.using() as opened:
            if service.settings.loopback and not gallery.keys_required(opened):
                return Caller("anonymous (no keys defined)", "admin")
        raise ApiError(401, "no API key: send 'Authorization: Bearer <key>'", headers=CHALLENGE)
    with store.using() as opened:
        key = gallery.key_for(credentials.credentials, opened, any_state=True)
    refusal = "unknown" if key is None else key.refusal()
    if refusal is not None:
        refuse_key(service, address, "an unknown key" if key is None else f"key {key.name!r} ({refusal})")
    if (over := service.rates.over(key.name, key.rate) if key.rate else None) is not None:
        seconds, first = over
        if first:
            log.warning("key %r from %s is over its rate %s: 429 for %d s", key.name, address, key.rate, seconds)
        raise too_many(f"this key's rate ({key.rate}) is used up", seconds)
    service.key_uses.note(hash_key(credentials.credentials))
    return Caller(f"key {key.name}", key.scope)


def refuse_key(service, address: str, what: str) -> NoReturn:
    """Refuse a request with a bad key (``what``: which, for the log only): 429 while ``address``
    is in back-off, else 401, counting the failure."""
    waiting = service.backoff.waiting(address)
    if waiting is not None:
        seconds, first = waiting
        if first:
            log.warning("client %s in back-off after bad API keys (%s): 429 for %d s", address, what, seconds)
        raise too_many("too many bad API keys from this address", seconds)
    backoff = service.backoff.failed(address)
    log.warning("refused %s from %s%s", what, address, f"; back-off {backoff:g} s" if backoff else "")
    raise ApiError(401, REFUSED_KEY, headers=CHALLENGE)


def too_many(problem: str, seconds: int) -> ApiError:
    """429 with the seconds to wait in ``Retry-After`` and in the message."""
    return ApiError(429, f"{problem}; retry in {seconds} s", headers={"Retry-After": str(seconds)})
