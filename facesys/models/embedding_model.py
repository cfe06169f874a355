"""The wrapper every registered model is returned in: backbone + spec + weights identity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facesys.models._registry import ModelSpec


class EmbeddingModel(nn.Module):
    """(N, 3, S, S) float RGB in [0, 1] -> (N, D) float unit vectors (L2-normalised).

    ``spec`` describes the chips it expects (size S, alignment template) and its default
    threshold; ``model_id`` is ``name@<first 16 hex of the weights' sha256>``, so a gallery can
    refuse embeddings made by another model.
    """

    def __init__(self, backbone: nn.Module, spec: ModelSpec, weights_sha256: str):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.weights_sha256 = weights_sha256

    @property
    def model_id(self) -> str:
        return f"{self.spec.name}@{self.weights_sha256[:16]}"

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(chips), dim=1)
