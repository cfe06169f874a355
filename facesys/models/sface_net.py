"""SFace's network (OpenCV Zoo's ``face_recognition_sface_2021dec``) as a torch module.

A MobileFaceNet-style chain without residual connections: a 3x3 stem at full resolution, 13
depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each followed by batch-norm and PReLU)
down to 7x7x1024, then batch-norm, dropout, a linear layer to 128-D and a final batch-norm.
Input: (N, 3, 112, 112) float RGB in [0, 1]; the network standardises it as the original graph
does, ``(x * 255 - 127.5) / 128``. Output: (N, 128) float, not normalised.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = 112
EMBEDDING_DIM = 128
STEM_CHANNELS = 32
# (output channels, stride of the depthwise conv) of each depthwise-separable block, input side first.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)
# Blocks of each stage (one stage per resolution: 112, 56, 28, 14, 7 pixels), for freezing.
STAGE_BLOCKS = {"stem": (0, 1), "stage1": (1, 3), "stage2": (3, 5), "stage3": (5, 11), "stage4": (11, 13)}


def conv_unit(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> PReLU, the unit every layer of the body repeats."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, eps=1e-3),
        nn.PReLU(out_channels),
    )


class SFaceNet(nn.Module):
    """SFace's backbone: (N, 3, 112, 112) RGB in [0, 1] -> (N, 128) float (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_unit(3, STEM_CHANNELS, 3, 1)
        blocks, channels = [], STEM_CHANNELS
        for out_channels, stride in BLOCKS:
            blocks.append(
                nn.Sequential(
                    conv_unit(channels, channels, 3, stride, groups=channels),  # depthwise
                    conv_unit(channels, out_channels, 1, 1),  # pointwise
                )
            )
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        side = INPUT_SIZE // 2 ** sum(stride == 2 for _, stride in BLOCKS)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels, eps=2e-5),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(channels * side * side, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM, eps=2e-5),
        )

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips * 255.0 - 127.5) / 128.0
        return self.head(self.blocks(self.stem(x)))

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of each stage, input side first: stem, stage1..stage4 by resolution, head."""
        stages = [("stem", nn.Sequential(self.stem, self.blocks[0]))]
        stages += [(name, self.blocks[start:stop]) for name, (start, stop) in STAGE_BLOCKS.items() if name != "stem"]
        return [*stages, ("head", self.head)]

    def load_onnx_weights(self, graph_weights: list[tuple[str, list[torch.Tensor]]]) -> None:
        """Fill the layers from the original graph: ``(op_type, tensors)`` per Conv, BatchNormalization,
        PRelu and Gemm node in graph order (conv: weight; batch-norm: scale, bias, mean, variance;
        PReLU: slope; Gemm: weight, bias). ValueError when the graph does not fit this network.
        """
        layers = [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.BatchNorm1d | nn.PReLU | nn.Linear)]
        if len(layers) != len(graph_weights):
            raise ValueError(f"the graph has {len(graph_weights)} weighted layers, SFace has {len(layers)}")
        for layer, (op_type, tensors) in zip(layers, graph_weights, strict=True):
            targets = _targets(layer)
            expected = {nn.Conv2d: "Conv", nn.PReLU: "PRelu", nn.Linear: "Gemm"}.get(type(layer), "BatchNormalization")
            if op_type != expected or len(tensors) != len(targets):
                raise ValueError(f"layer {type(layer).__name__} meets graph node {op_type}")
            for target, tensor in zip(targets, tensors, strict=True):
                if target.numel() != tensor.numel():
                    raise ValueError(f"{type(layer).__name__}: {tuple(tensor.shape)} weights for {tuple(target.shape)}")
                with torch.no_grad():
                    target.copy_(tensor.reshape(target.shape))


def _targets(layer: nn.Module) -> list[torch.Tensor]:
    """The tensors of ``layer`` in the order the ONNX node lists its weights."""
    if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
        return [layer.weight, layer.bias, layer.running_mean, layer.running_var]
    if isinstance(layer, nn.Linear):
        return [layer.weight, layer.bias]
    return [layer.weight]
