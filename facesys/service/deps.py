"""What the endpoints depend on, in one place (as FastAPI's project template keeps its ``deps``):
the :class:`Service` they share, readiness, the key scopes, the shapes of path and query
parameters, and the error statuses every route may answer. Routers import this, never the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable
from typing import Annotated, TypeVar
from urllib.parse import quote

from fastapi import Depends, Path, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from facesys import threads
from facesys.errors import MAX_ID, FacesysError
from facesys.gallery.store import normalize_name
from facesys.service import schemas
from facesys.service.auth import Caller, require
from facesys.service.batching import MicroBatcher
from facesys.service.errors import ApiError
from facesys.service.key_use import KeyUses
from facesys.service.request_store import RequestStore, request_store
from facesys.service.settings import ServiceSettings
from facesys.service.throttle import FailureBackoff, KeyRates

T = TypeVar("T")
log = logging.getLogger("facesys.service")


class Service:
    """What the endpoints share: the settings, the FaceSystem, the micro-batcher, readiness, and
    the door's state (bad keys per address, keys' rates and last uses: facesys/service/throttle.py)."""

    def __init__(self, settings: ServiceSettings):
        from facesys.gallery import Gallery
        from facesys.system import FaceSystem

        self.settings = settings
        threads.configure(settings.threads, share=settings.workers)
        # the index is kept in memory; saved when the service stops
        gallery = Gallery(settings.gallery, save_index=False, key_file=settings.key_file)
        options = {"device": settings.device, "weights": settings.weights, "precision": settings.precision}
        self.system = FaceSystem(gallery, model=settings.model, detector=settings.detector, **options)
        self.batcher = MicroBatcher(self._pipeline, settings.batch_size, settings.batch_wait_ms / 1000, settings.max_queue)
        self.ready = False
        self.problem: str | None = None  # why it cannot become ready
        self.stopping = threading.Event()
        self.backoff, self.rates, self.key_uses = FailureBackoff(), KeyRates(), KeyUses(gallery)

    def load(self) -> None:
        """Load the model, open the gallery and load its index (in a worker thread at start-up);
        a database gallery is then followed by a thread that keeps the index current."""
        gallery = self.system.gallery
        try:
            embedder = self.system.embedder
            if gallery.exists():
                gallery.require_model(embedder.model_id)
                with gallery.open() as store:
                    gallery.refresh(store)
            self.ready = True
            log.info("ready: model %s, gallery %s", embedder.model_id, gallery.location)
        except Exception as exc:
            self.problem = str(exc) if isinstance(exc, FacesysError) else f"{type(exc).__name__}: {exc}"
            log.error("cannot become ready: %s", self.problem)
            return
        if not gallery.is_folder:
            threading.Thread(target=gallery.follow, args=(self.stopping,), name="facesys-follow", daemon=True).start()

    def start(self) -> None:
        """Start recording the keys' last uses (a thread, once a minute)."""
        threading.Thread(target=self.key_uses.follow, args=(self.stopping,), name="facesys-key-uses", daemon=True).start()

    def stop(self) -> None:
        """Stop following the gallery, record the keys' last uses and save the in-memory index for
        the next start."""
        self.stopping.set()
        with contextlib.suppress(FacesysError):
            self.key_uses.write()
        if self.ready:
            with contextlib.suppress(FacesysError):
                self.system.gallery.save_index()

    def require_ready(self) -> None:
        if not self.ready:
            raise ApiError(503, self.problem or "model is loading; retry shortly (see /healthz)", "not_ready")

    def _pipeline(self, images: list) -> list:
        """One decoding, detection and network pass over a batch of uploads (every face, largest
        first; an upload that cannot be used comes back with its error)."""
        return self.system.embedder.faces(images, select="all", errors="collect", batch_size=max(1, len(images)))


class NameConvertor(Convertor):
    """A person's (or key's) name in a path: any characters, ``/`` and newlines included, so that
    every name reaches the endpoint, which stores it as data or refuses it with 400."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("name", NameConvertor())


def ready(request: Request) -> Service:
    """The service, once it is ready (503 before)."""
    service: Service = request.app.state.service
    service.require_ready()
    return service


ERRORS = {status: {"model": schemas.ErrorAnswer} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}
Ready = Annotated[Service, Depends(ready)]
MayIdentify = Annotated[Caller, Depends(require("identify"))]
MayEnroll = Annotated[Caller, Depends(require("enroll"))]
Admin = Annotated[Caller, Depends(require("admin"))]
RequestStoreDep = Annotated[RequestStore, Depends(request_store)]  # the one store open a request shares
Threshold = Annotated[float | None, Query(ge=0.0, le=2.0, description="Distance threshold (overrides the gallery's)")]
# Names in a path are checked by the gallery (normalize_name: one-line 400s); the schema states the rules.
PersonPath = Annotated[str, Path(description="The person's name, percent-encoded", json_schema_extra=schemas.PERSON_NAME)]
KeyPath = Annotated[str, Path(description="The key's name, percent-encoded", json_schema_extra=schemas.KEY_NAME)]
# An id no row can have (out of range, not a number) names nothing: 404 (service/errors.py), never an overflow.
FaceId = Annotated[int, Path(ge=1, le=MAX_ID, description="An enrolled face's id")]
JPEG = {200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "A JPEG face crop"}}


async def within_time(service: Service, work: Awaitable[T]) -> T:
    """``work``'s result, or 503 "timeout" after ``--request-timeout`` seconds (queued recognition
    is then dropped; an enrollment already running still finishes, photo by photo)."""
    try:
        return await asyncio.wait_for(work, service.settings.request_timeout_s)
    except TimeoutError:
        raise ApiError(503, f"no answer within {service.settings.request_timeout_s:g} s (--request-timeout)", "timeout") from None


def person_name(name: str) -> str:
    """A name from the URL as the gallery stores it (400 when it cannot name a person)."""
    try:
        return normalize_name(name)
    except FacesysError as exc:
        raise ApiError(400, f"name: {exc}") from None
