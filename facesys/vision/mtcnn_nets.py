"""MTCNN's P-, R- and O-Net, with facenet-pytorch's pretrained weights, without importing facenet-pytorch.

The layers and parameter names are those of ``facenet_pytorch.models.mtcnn`` so its state dicts
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``, shipped in its wheel) load unchanged. They are
defined here because importing that module imports torchvision, whose package import pulls in
``torch._dynamo`` (~0.9 s of every command's start-up on this machine; benchmarks/startup.py).
tests/vision/test_mtcnn.py checks that the detector still gives facenet-pytorch's boxes to the bit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

from facesys.errors import ModelError


def facenet_pytorch_data(name: str) -> Path:
    """Path of a file in facenet-pytorch's ``data`` folder, found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("MTCNN weights: facenet-pytorch is not installed (pip install 'facenet-pytorch>=2.5.3,<2.6')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise ModelError(f"MTCNN weights: {path} is missing; reinstall facenet-pytorch")
    return path


def _load(net: nn.Module, file: str) -> nn.Module:
    net.load_state_dict(torch.load(facenet_pytorch_data(file), map_location="cpu", weights_only=True))
    return net.eval()


def _flatten_as_trained(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, W*H*C) in the (N, W, H, C) order the dense layers were trained on."""
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: (N, 3, H, W) normalised pixels -> box shifts (N, 4, h, w), face probabilities (N, 2, h, w)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net: (N, 3, 24, 24) crops -> box shifts (N, 4), face probabilities (N, 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_as_trained(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) crops -> box shifts (N, 4), landmarks (N, 10), face probabilities (N, 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_as_trained(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def pretrained_nets() -> tuple[PNet, RNet, ONet]:
    """The three nets in eval mode on the CPU, facenet-pytorch's weights loaded."""
    return _load(PNet(), "pnet.pt"), _load(RNet(), "rnet.pt"), _load(ONet(), "onet.pt")
