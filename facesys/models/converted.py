"""Weights converted once from a model's source file and cached as safetensors."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from facesys.config import cache_dir

if TYPE_CHECKING:
    from torch import nn


def load_converted(backbone: nn.Module, name: str, source_sha256: str, convert: Callable[[], None]) -> None:
    """Fill ``backbone`` from ``<cache>/<name>-<sha256[:16]>.safetensors``; where that file is missing
    or damaged, ``convert()`` fills it from the source file and the result is cached (written to a
    temporary file, then renamed: a killed process never leaves half a cache; a read-only cache
    only costs the conversion next time)."""
    from safetensors.torch import load_file, save_file

    cached = cache_dir() / f"{name}-{source_sha256[:16]}.safetensors"
    if cached.is_file():
        try:
            backbone.load_state_dict(load_file(cached))
            return
        except Exception:  # a damaged cache is rebuilt from the source file
            cached.unlink(missing_ok=True)
    convert()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".tmp{os.getpid()}")
        save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, temporary)
        os.replace(temporary, cached)
    except OSError:
        pass
