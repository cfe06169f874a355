"""The FastAPI app: start-up (model loaded and gallery opened in the background; /healthz says
when), the page at /, request guards (body size, Host and Origin, CORS) and the /v1 API."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from facesys import __version__
from facesys.service.api import router
from facesys.service.deps import Service
from facesys.service.errors import error_response, install_error_handlers
from facesys.service.library_api import router as library_router
from facesys.service.schemas import ErrorAnswer, Health, exact_integer_bounds
from facesys.service.settings import ServiceSettings, is_loopback
from facesys.service.uploads import BodyLimit, describe_uploads

STATIC = Path(__file__).with_name("static")


class RequestGuard:
    """ASGI middleware against requests a browser was tricked into sending. A service on a loopback
    address answers only Host names of this machine (no DNS rebinding); a request with an Origin
    header must come from the service's own origin or an allowed ``cors`` origin (no cross-site
    form posts to a keyless local service)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin", b"").decode("latin-1")
            problem = None
            if not utf8(scope.get("raw_path") or b""):
                await error_response(400, "path: not valid UTF-8 after percent-decoding")(scope, receive, send)
                return
            if self.settings.loopback and not is_loopback(urlsplit(f"//{host}").hostname or ""):
                problem = f"Host {host!r} is not this machine; a loopback service answers only localhost"
            elif origin and origin not in self.settings.cors and urlsplit(origin).netloc != host:
                problem = f"requests from origin {origin!r} are not allowed (serve --cors ORIGIN allows one)"
            if problem:
                await error_response(403, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def utf8(raw_path: bytes) -> bool:
    """Whether a request's raw path is UTF-8 once percent-decoded (else names in it would reach the
    endpoints with U+FFFD in place of the bytes)."""
    try:
        unquote_to_bytes(raw_path.decode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service's app for ``settings`` (one per worker process)."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        service.start()
        loading = asyncio.get_running_loop().run_in_executor(None, service.load)
        yield
        await service.batcher.stop()
        loading.cancel()
        await asyncio.get_running_loop().run_in_executor(None, service.stop)

    app = FastAPI(
        title="facesys",
        version=__version__,
        description="Offline face verification and recognition. See docs/service.md.",
        lifespan=lifespan,
        responses={400: {"model": ErrorAnswer}, 401: {"model": ErrorAnswer}},
        docs_url=None,  # served below from a packaged Swagger UI: no CDN, works offline
        redoc_url=None,
    )
    app.state.service = service
    install_error_handlers(app)
    if settings.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors),
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestGuard, settings=settings)

    @app.get("/healthz", response_model=Health, responses={503: {"model": ErrorAnswer}}, tags=["service"])
    def healthz() -> dict:
        """Ready once the model is loaded and the gallery opened; 503 before (or when that failed),
        while the gallery's database cannot be reached, and while the gallery's schema is newer
        than this facesys (the message names the version)."""
        service.require_ready()
        gallery = service.system.gallery
        if gallery.exists():  # GalleryUnavailableError (503) while a database is down
            with gallery.open():  # GalleryVersionError (503) once a newer facesys upgraded it
                pass
        return {
            "status": "ready",
            "model": service.system.embedder.model_id,
            "gallery": str(service.system.gallery.location),
            "batches": service.batcher.batches,
            "batched_images": service.batcher.images,
        }

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="facesys API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.include_router(router)
    app.include_router(library_router)
    generated = app.openapi

    def openapi() -> dict:
        """FastAPI's document, its uploads described for client generators (made once)."""
        if app.openapi_schema is None:
            limits = settings.max_files, settings.max_upload_bytes, settings.max_pixels
            describe_uploads(exact_integer_bounds(generated()), *limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``serve --workers N``: the settings come in an environment variable."""
    return create_app(ServiceSettings.from_environment())
