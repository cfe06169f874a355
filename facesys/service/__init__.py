"""facesys as a REST service: a FastAPI app over one FaceSystem (``facesys serve``).

Modules: ``settings`` (what ``serve`` is started with), ``app`` (the app, its start-up and the
page), ``deps`` (what the endpoints depend on: the Service, readiness, scopes, parameter shapes),
``api`` and ``library_api`` (the /v1 endpoints), ``auth`` (API keys and scopes), ``batching``
(micro-batches of recognition work in a worker thread), ``uploads`` (bounded request bodies and
uploaded images), ``errors`` (every failure as one JSON error object), ``schemas`` (typed answers).
See docs/service.md.
"""

from facesys.service.app import create_app
from facesys.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
