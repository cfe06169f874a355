"""Non-maximum suppression through torchvision's compiled operator, without importing the torchvision package.

``import torchvision`` (which any ``torchvision.ops`` import runs) imports its models and ``torch._dynamo``:
~0.9 s of start-up for one C++ function. The operator lives in torchvision's extension library; loading
that library registers ``torch.ops.torchvision.nms`` (CPU and, in CUDA builds, GPU kernels) exactly as
torchvision itself does, so the results are torchvision's. If the library cannot be found or loaded
(an unusual build), the torchvision package is imported after all; without torchvision (the CPU-only
set-up) or with one that does not fit the installed torch, ``torch_nms`` computes the same greedy NMS in torch.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# torchvision.ops.batched_nms shifts the groups apart and runs one NMS up to this many box coordinates
# (boxes.numel()) on the CPU (elsewhere: ONE_CALL_LIMIT_GPU), one NMS per group above; the two can
# differ in the last float bit of an overlap, so facesys follows the same rule to keep
# facenet-pytorch's boxes to the bit.
ONE_CALL_LIMIT_CPU, ONE_CALL_LIMIT_GPU = 4000, 100_000


_loading = threading.Lock()  # photo workers may ask for the operator at once: it is loaded by one of them


def _nms_operator() -> Callable[[Tensor, Tensor, float], Tensor]:
    with _loading:
        return _load_nms_operator()


@functools.cache
def _load_nms_operator() -> Callable[[Tensor, Tensor, float], Tensor]:
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.submodule_search_locations:
        folder = next(iter(spec.submodule_search_locations))
        finder = importlib.machinery.FileFinder(
            folder, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
        )
        for name in ("_C_stable", "_C"):  # the library's name in recent and in older torchvision releases
            library = finder.find_spec(name)
            if library is not None and library.origin and Path(library.origin).is_file():
                try:
                    torch.ops.load_library(library.origin)
                    return torch.ops.torchvision.nms
                except (OSError, RuntimeError, AttributeError):
                    break
    try:
        from torchvision.ops import nms

        torch.ops.torchvision.nms  # noqa: B018  (a torchvision built for another torch may import without its operator)
    except (ImportError, OSError, RuntimeError, AttributeError):
        return torch_nms
    return nms


TORCH_NMS_ROWS = 512  # boxes whose overlaps torch_nms computes at once (rows x K floats)


def torch_nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """``torchvision.ops.nms`` in plain torch: the same arithmetic, order and ties (a stable sort, best first).

    Greedy: the best remaining box is kept and every later box overlapping it by IoU > ``threshold``
    is dropped. Overlaps are computed a block of rows at a time; the greedy pass reads them on the CPU.
    """
    if not boxes.numel():
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.sort(stable=True, descending=True)[1]
    x1, y1, x2, y2 = boxes[order].unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    count = len(order)
    removed = np.zeros(count, dtype=bool)
    kept = []
    for start in range(0, count, TORCH_NMS_ROWS):
        rows = slice(start, min(start + TORCH_NMS_ROWS, count))
        width = (torch.minimum(x2[rows, None], x2[None, start:]) - torch.maximum(x1[rows, None], x1[None, start:])).clamp(min=0)
        height = (torch.minimum(y2[rows, None], y2[None, start:]) - torch.maximum(y1[rows, None], y1[None, start:])).clamp(min=0)
        inter = width * height
        iou = inter / (areas[rows, None] + areas[None, start:] - inter)
        overlaps = (iou.double() > threshold).cpu().numpy()  # compared in double, as torchvision's kernel does
        for i in range(rows.start, rows.stop):
            if not removed[i]:
                kept.append(i)
                removed[start:] |= overlaps[i - start]
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Indices of the boxes (K, 4) x1, y1, x2, y2 kept by greedy IoU NMS at ``threshold``, best score first."""
    return _nms_operator()(boxes, scores, threshold)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """NMS within each group (``groups`` (K,) integer labels), as ``torchvision.ops.batched_nms`` computes it."""
    if not boxes.numel():
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if boxes.numel() <= (ONE_CALL_LIMIT_CPU if boxes.device.type == "cpu" else ONE_CALL_LIMIT_GPU):
        offsets = groups.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
        return nms(boxes + offsets[:, None], scores, threshold)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for group in torch.unique(groups):
        members = torch.where(groups == group)[0]
        keep[members[nms(boxes[members], scores[members], threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[scores[kept].sort(descending=True)[1]]
