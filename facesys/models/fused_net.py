"""The network of a fused model (facesys/models/fusion.py): member networks reading one canvas chip."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesys.errors import ModelError


class FusedNet(nn.Module):
    """(N, 3, C, C) canvas chips, RGB in [0, 1] -> (N, sum of member dims) float: each member's
    unit vector times ``scales[m]``, concatenated (the EmbeddingModel wrapper normalises the whole).

    ``nets``: the member backbones; ``sizes``: their chip sizes; ``thetas``: (M, 2, 3) float32
    affine_grid matrices cutting each member's chip from the canvas (fusion.member_transform).
    """

    def __init__(self, nets: list[nn.Module], sizes: list[int], thetas: np.ndarray, scales: list[float]):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.sizes = list(sizes)
        self.register_buffer("thetas", torch.as_tensor(thetas, dtype=torch.float32), persistent=False)
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float32), persistent=False)

    def member_chips(self, chips: torch.Tensor, index: int) -> torch.Tensor:
        """(N, 3, S_m, S_m): member ``index``'s chips cut from the canvas chips (bilinear)."""
        size = self.sizes[index]
        theta = self.thetas[index].to(chips.dtype).expand(len(chips), 2, 3)
        grid = F.affine_grid(theta, [len(chips), 3, size, size], align_corners=False)
        cut = F.grid_sample(chips, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return cut.contiguous(memory_format=torch.channels_last)  # as the Embedder feeds every network

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        parts = [F.normalize(net(self.member_chips(chips, i)).float(), dim=1) * self.scales[i] for i, net in enumerate(self.nets)]
        return torch.cat(parts, dim=1)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """Fine-tuning works on one network: fine-tune a member, then fuse the checkpoint."""
        raise ModelError("a fused model cannot be fine-tuned; fine-tune one of its networks", parameter="model")
