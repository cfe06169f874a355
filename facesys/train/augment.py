"""Augmentations suited to faces, on (N, 3, S, S) float chips in [0, 1].

Horizontal flip, small crops (scale 0.85-1, the face stays centred), colour jitter, blur and
down-scaling (a face seen from farther away). Random numbers come from the ``generator`` given,
so a resumed run repeats them exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(chips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, size, _ = chips.shape
    out = []
    for chip in chips:
        r = torch.rand(8, generator=generator)
        if r[0] < 0.5:
            chip = chip.flip(2)
        scale = 0.85 + 0.15 * float(r[1])
        crop = max(8, round(size * scale))
        top, left = int(r[2] * (size - crop + 1)), int(r[3] * (size - crop + 1))
        chip = F.interpolate(
            chip[None, :, top : top + crop, left : left + crop], size=(size, size), mode="bilinear", align_corners=False
        )[0]
        brightness, contrast = 0.8 + 0.4 * float(r[4]), 0.8 + 0.4 * float(r[5])
        mean = chip.mean()
        chip = ((chip - mean) * contrast + mean) * brightness
        if r[6] < 0.2:  # blur
            kernel = torch.tensor([1.0, 2.0, 1.0], dtype=chip.dtype) / 4
            chip = F.conv2d(F.pad(chip[:, None], (1, 1, 1, 1), mode="replicate"), (kernel[:, None] * kernel[None])[None, None])[
                :, 0
            ]
        if r[7] < 0.2:  # down-scale to 24-64 px and back
            low = 24 + int(40 * float(torch.rand(1, generator=generator)))
            chip = F.interpolate(
                F.interpolate(chip[None], size=(low, low), mode="area"), size=(size, size), mode="bilinear", align_corners=False
            )[0]
        out.append(chip.clamp(0, 1))
    return torch.stack(out) if n else chips
