"""``facenet-vggface2`` and ``facenet-casia``: facenet-pytorch's InceptionResnetV1 (512-D).

Weights come from a local file (``weights=`` / ``--weights``), else from facenet-pytorch, which
downloads them on first use into torch's hub cache (``$TORCH_HOME/checkpoints``) and reads them
from there afterwards. Offline with no local file, creating the model fails with a ModelError
that explains both ways.

Chips: 160x160, standardised as facenet-pytorch does (``(x * 255 - 127.5) / 128``). facenet-pytorch
crops MTCNN's box without rotation; the template puts MTCNN's landmarks where they fall on average
in such a crop (fitted by ``benchmarks/fit_alignment_template.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from facesys.errors import ModelError
from facesys.hashing import file_sha256
from facesys.models._registry import ModelSpec, register_model

if TYPE_CHECKING:
    from torch import nn

FACENET_TEMPLATE = (
    (46.258, 62.193),
    (118.332, 61.087),
    (82.685, 93.052),
    (51.573, 121.344),
    (115.301, 120.426),
)
# Facenet-pytorch's published files (its ``inception_resnet_v1.py``); the hub cache keeps these names.
_FILES = {"vggface2": "20180402-114759-vggface2.pt", "casia-webface": "20180408-102900-casia-webface.pt"}


def _hub_file(dataset: str) -> Path:
    """Where facenet-pytorch keeps the downloaded weights: ``<torch home>/checkpoints/<file>``.

    Computed as torch (and facenet-pytorch's ``get_torch_home``) does, without importing torch.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser() / "checkpoints" / _FILES[dataset]


def _inception_resnet_v1(dataset: str) -> type[nn.Module]:
    """facenet-pytorch's network class; its package imports torchvision, which the CPU-only set-up leaves out."""
    try:
        from facenet_pytorch import InceptionResnetV1
    except (ImportError, RuntimeError) as exc:  # RuntimeError: a torchvision built for another torch
        raise ModelError(
            f"facenet-{dataset}: facenet-pytorch cannot be imported ({type(exc).__name__}: {exc}); it needs "
            "torchvision and requests, which the CPU-only set-up leaves out: install a torchvision that fits torch"
        ) from None
    return InceptionResnetV1


def _make_builder(dataset: str):
    def build() -> nn.Module:
        import torch
        from torch import nn

        InceptionResnetV1 = _inception_resnet_v1(dataset)

        class FacenetBackbone(nn.Module):
            """(N, 3, 160, 160) RGB in [0, 1] -> (N, 512); standardises as facenet-pytorch does."""

            def __init__(self) -> None:
                super().__init__()
                self.net = InceptionResnetV1(classify=False, num_classes={"vggface2": 8631, "casia-webface": 10575}[dataset])

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net((x * 255.0 - 127.5) / 128.0)

            def named_stages(self) -> list[tuple[str, nn.Module]]:
                """(name, module) of each stage in forward order, for freezing the early ones."""
                n = self.net
                stem = nn.ModuleList([n.conv2d_1a, n.conv2d_2a, n.conv2d_2b, n.conv2d_3b, n.conv2d_4a, n.conv2d_4b])
                head = nn.ModuleList([n.last_linear, n.last_bn])
                return [
                    ("stem", stem),
                    ("repeat_1", n.repeat_1),
                    ("mixed_6a", n.mixed_6a),
                    ("repeat_2", n.repeat_2),
                    ("mixed_7a", n.mixed_7a),
                    ("repeat_3", n.repeat_3),
                    ("block8", n.block8),
                    ("head", head),
                ]

        return FacenetBackbone()

    def load_weights(backbone: nn.Module, weights: str | None) -> str:
        import torch
        from facenet_pytorch.models.inception_resnet_v1 import load_weights as facenet_download_and_load

        if weights is None:
            try:  # facenet-pytorch's own loader: downloads into the hub cache once, then reads it
                facenet_download_and_load(backbone.net, dataset)
            except Exception as exc:
                raise ModelError(
                    f"facenet-{dataset}: weights are not on this machine ({_hub_file(dataset)}) and could "
                    f"not be downloaded ({type(exc).__name__}). Connect to the internet once, or get "
                    f"{_FILES[dataset]} elsewhere and give it as the weights file (or put it at that path).",
                    parameter="weights",
                ) from None
            return file_sha256(_hub_file(dataset))
        source = Path(weights)
        if not source.is_file():
            raise ModelError(f"{source}: weights file not found")
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
            backbone.net.load_state_dict(state)
        except Exception as exc:
            raise ModelError(f"{source}: not an InceptionResnetV1 ({dataset}) weights file ({type(exc).__name__})") from None
        return file_sha256(source)

    return build, load_weights


def _register(name: str, dataset: str, description: str, threshold: float) -> None:
    build, load_weights = _make_builder(dataset)
    register_model(
        ModelSpec(
            name=name,
            description=description,
            architecture="inception-resnet-v1",
            input_size=160,
            template=FACENET_TEMPLATE,
            embedding_dim=512,
            threshold=threshold,
            build=build,
            load_weights=load_weights,
            weights_location=lambda: str(_hub_file(dataset)),
            licence="MIT (facenet-pytorch)",
        )
    )


# Thresholds: facenet-pytorch's LFW example reports best accuracy near 1.1 (Euclidean on unit vectors).
_register("facenet-vggface2", "vggface2", "InceptionResnetV1 trained on VGGFace2 (facenet-pytorch; download or --weights)", 1.1)
_register(
    "facenet-casia", "casia-webface", "InceptionResnetV1 trained on CASIA-WebFace (facenet-pytorch; download or --weights)", 1.1
)
