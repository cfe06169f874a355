"""facesys: offline face verification and recognition.

Heavy modules (torch, opencv, facenet-pytorch) are imported only when first used, so
``import facesys`` and the CLI's help stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from facesys import threads

__version__ = "0.1.0"

# OpenMP's wait policy must be in the environment before torch loads OpenMP (facesys/threads.py).
threads.set_wait_policy()

_LAZY = {
    "FaceSystem": "facesys.system",
    "Embedder": "facesys.vision.embed",
    "Gallery": "facesys.gallery.gallery",
    "Face": "facesys.vision.embed",
    "FaceDetector": "facesys.vision.detect",
    "load_image": "facesys.vision.images",
    "create_model": "facesys.models",
    "list_models": "facesys.models",
    "FacesysError": "facesys.errors",
    "ImageError": "facesys.errors",
    "NoFaceError": "facesys.errors",
    "ModelError": "facesys.errors",
    "GalleryError": "facesys.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facesys' has no attribute {name!r}")
