"""One open of the gallery's store per request: the API-key check and the identify call share it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from fastapi import Request

from facesys.gallery.store import TruthStore


class RequestStore:
    """The gallery's store for one request: opened when first used (None while there is no
    gallery), closed when the request ends, never while a call is using it (a timed-out request's
    batch may still be running in the batcher's thread)."""

    def __init__(self, gallery):
        self._gallery = gallery
        self._store: TruthStore | None = None
        self._closed = False
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def using(self) -> Iterator[TruthStore | None]:
        """The open store, held for the caller until the block ends; None when there is no gallery
        or the request has ended (the caller then opens its own)."""
        with self._lock:
            if self._store is None and not self._closed and self._gallery.exists():
                self._store = self._gallery.open()
            yield self._store

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
            if store is not None:
                store.close()


def request_store(request: Request) -> Iterator[RequestStore]:
    """A FastAPI dependency (cached per request, so every dependency and the route get the same one)."""
    handle = RequestStore(request.app.state.service.system.gallery)
    try:
        yield handle
    finally:
        handle.close()
