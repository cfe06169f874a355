"""facesys: offline face verification and recognition.

Heavy modules (torch, opencv, facenet-pytorch) are imported only when first used, so
``import facesys`` and the CLI's help stay fast.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# OpenMP threads (torch, FAISS) sleep while they wait for work instead of spinning: beside other
# busy processes, spinning threads steal the cores the working ones need (benchmarks/contention.py:
# identify beside 4 CPU burners 10.7x slower than alone with OpenMP's default spin, 3.7x with this;
# the same speed when the machine is idle). It must be set before torch loads OpenMP; a wait policy
# or spin count the user set wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

_LAZY = {
    "FaceSystem": "facesys.system",
    "Embedder": "facesys.embed",
    "Gallery": "facesys.gallery.gallery",
    "Face": "facesys.embed",
    "FaceDetector": "facesys.detect",
    "load_image": "facesys.images",
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
