"""Where models run: the torch device (checked once, with one clear error) and the numeric precision.

Precision: ``fp32``; ``bf16`` or ``fp16`` run the network under ``torch.autocast`` (convolutions in
16 bits, the final normalisation in fp32); ``auto`` is bf16 on a CUDA GPU that supports it, else
fp32. Both 16-bit modes keep every embedding within cosine 0.999 of fp32 on real faces
(tests/vision/test_embed.py).
"""

from __future__ import annotations

import re

from facesys.config import PRECISIONS
from facesys.errors import FacesysError


def check_device(device: str) -> str:
    """``device`` (``cpu``, ``cuda`` or ``cuda:N``) if this machine has it; FacesysError otherwise."""
    if device == "cpu":
        return device
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise FacesysError(f"device {device!r}: not a device; use cpu, cuda or cuda:N", parameter="device")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise FacesysError(
            f"device {device!r}: no CUDA GPU is available to torch {torch.__version__} here; use the cpu", parameter="device"
        )
    if int(device.partition(":")[2] or 0) >= count:
        raise FacesysError(
            f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}", parameter="device"
        )
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``precision`` on ``device`` (``auto`` chooses)."""
    if precision not in PRECISIONS:
        raise FacesysError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}", parameter="precision")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"
