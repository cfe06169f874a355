"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a torch module.

The network is the 29-conv-layer ResNet of dlib's ``examples/dnn_face_recognition_ex.cpp``
(``anet_type``): a 7x7/2 stem, max-pool 3x3/2, then four stages of residual blocks
(32, 64, 128, 256 channels) and one more down-sampling block at 256, global average pooling and
a 128-D linear projection without bias. Batch-norm was folded by dlib into fixed per-channel
``affine`` layers, which are buffers here (never trained).

Two details of dlib's layers matter for exact parity:

- convolutions and pools with stride 2 use no padding (dlib's default padding is ``nr/2`` only
  for stride 1);
- ``add_prev`` adds tensors of different sizes by zero-padding both to the larger size
  (channels and spatially, at the end), which happens in the down-sampling blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facesys.models.dlib_format import DlibLayer, LayerSpec

INPUT_SIZE = 150
EMBEDDING_DIM = 128
# Per-channel means dlib subtracts (input_rgb_image_sized), in 0-255 pixel units; it then divides by 256.
DLIB_RGB_MEAN = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0

# (channels, number of blocks, first block down-samples) for each stage, input side first.
STAGES: tuple[tuple[int, int, bool], ...] = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head")


def _residual_spec(channels: int, down: bool) -> list[LayerSpec]:
    """dlib's ``ares``/``ares_down`` block, outermost layer first."""
    stride = 2 if down else 1
    block = [
        LayerSpec("affine"),
        LayerSpec("con", {"num_filters": channels, "nr": 3, "nc": 3, "stride_y": 1, "stride_x": 1}),
        LayerSpec("relu"),
        LayerSpec("affine"),
        LayerSpec("con", {"num_filters": channels, "nr": 3, "nc": 3, "stride_y": stride, "stride_x": stride}),
        LayerSpec("tag", {"id": 1}),
    ]
    if not down:
        return [LayerSpec("relu"), LayerSpec("add_prev", {"tag": 1}), *block]
    shortcut = [
        LayerSpec("avg_pool", {"nr": 2, "nc": 2, "stride_y": 2, "stride_x": 2}),
        LayerSpec("skip", {"id": 1}),
        LayerSpec("tag", {"id": 2}),
    ]
    return [LayerSpec("relu"), LayerSpec("add_prev", {"tag": 2}), *shortcut, *block]


def dlib_architecture() -> list[LayerSpec]:
    """The layers of dlib's ``anet_type``, outermost (loss) first, as the file nests them."""
    layers = [
        LayerSpec("loss_metric"),
        LayerSpec("fc", {"num_outputs": EMBEDDING_DIM, "bias_mode": 1}),
        LayerSpec("avg_pool", {"nr": 0, "nc": 0, "stride_y": 1, "stride_x": 1}),
    ]
    for channels, blocks, down in reversed(STAGES):
        for index in reversed(range(blocks)):
            layers += _residual_spec(channels, down and index == 0)
    layers += [
        LayerSpec("max_pool", {"nr": 3, "nc": 3, "stride_y": 2, "stride_x": 2}),
        LayerSpec("relu"),
        LayerSpec("affine"),
        LayerSpec("con", {"num_filters": 32, "nr": 7, "nc": 7, "stride_y": 2, "stride_x": 2}),
        LayerSpec("input_rgb_image_sized", {"nr": INPUT_SIZE, "nc": INPUT_SIZE}),
    ]
    return layers


class Affine(nn.Module):
    """Fixed per-channel scale and shift: ``y = gamma * x + beta`` on (N, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta.view(1, -1, 1, 1), x, self.gamma.view(1, -1, 1, 1))


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two (N, C, H, W) tensors, each zero-padded to the larger size."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """conv3x3(stride) -> affine -> relu -> conv3x3 -> affine, plus the shortcut, then relu.

    A down-sampling block (stride 2, no padding) adds a 2x2/2 average-pooled shortcut,
    zero-padded in channels (dlib's ``ares_down``).
    """

    def __init__(self, in_channels: int, channels: int, down: bool):
        super().__init__()
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = Affine(channels)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, shortcut))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet.

    Input: (N, 3, 150, 150) float RGB in [0, 1], a face chip aligned as dlib aligns them.
    Output: (N, 128) float, the raw descriptor (not L2-normalised; dlib compares raw vectors).
    Stages, input side first: ``stem``, ``stage1`` .. ``stage5``, ``head`` (see STAGE_NAMES).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(DLIB_RGB_MEAN).view(1, 3, 1, 1) / 255.0)
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 0), Affine(32), nn.ReLU(), nn.MaxPool2d(3, 2))
        in_channels = 32
        for name, (channels, blocks, down) in zip(STAGE_NAMES[1:], STAGES, strict=False):
            stage = [ResidualBlock(in_channels if i == 0 else channels, channels, down and i == 0) for i in range(blocks)]
            self.add_module(name, nn.Sequential(*stage))
            in_channels = channels
        self.head = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of each stage in forward order, for freezing the early ones."""
        return [(name, getattr(self, name)) for name in STAGE_NAMES]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.rgb_mean) * (255.0 / DLIB_SCALE)
        for _, stage in self.named_stages()[:-1]:
            x = stage(x)
        return self.head(x.mean(dim=(2, 3)))

    @torch.no_grad()
    def load_dlib_layers(self, layers: list[DlibLayer]) -> None:
        """Copy weights read by :func:`read_dlib_network` (forward order) into this module."""
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        affines = [m for m in self.modules() if isinstance(m, Affine)]
        file_convs = [layer for layer in layers if layer.kind == "con"]
        file_affines = [layer for layer in layers if layer.kind == "affine"]
        (file_fc,) = [layer for layer in layers if layer.kind == "fc"]
        (file_input,) = [layer for layer in layers if layer.kind == "input_rgb_image_sized"]
        if len(convs) != len(file_convs) or len(affines) != len(file_affines):
            raise ValueError("the file's layer counts do not match DlibResNet")
        for module, layer in zip(convs, file_convs, strict=True):
            module.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
            module.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
        for module, layer in zip(affines, file_affines, strict=True):
            module.gamma.copy_(torch.from_numpy(layer.arrays["gamma"]))
            module.beta.copy_(torch.from_numpy(layer.arrays["beta"]))
        self.head.weight.copy_(torch.from_numpy(file_fc.arrays["weight"]).T)
        means = [file_input.values[k] for k in ("avg_red", "avg_green", "avg_blue")]
        self.rgb_mean.copy_(torch.tensor(means).view(1, 3, 1, 1) / 255.0)
