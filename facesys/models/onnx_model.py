"""A face-embedding network the user brings as an ONNX file: checks, chip geometry, normalisation,
and the torch module that runs it (onnx2torch; onnxruntime is not needed).

What facesys feeds such a network, decided once when the model is prepared:

- **Chips**: RGB, channels first, ``S x S`` with ``S`` read from the graph's input ``(N, 3, S, S)``,
  aligned on the standard 5-point ArcFace template (112x112, insightface's ``arcface_dst``) scaled to
  ``S`` (insightface's rule: ``S`` a multiple of 128 is the 112 template scaled by ``S / 128`` and
  moved right by ``8 * S / 128``; any other ``S`` is the 112 template scaled by ``S / 112``).
- **Pixel values**: if the graph normalises its input itself -- its input goes straight into
  ``Sub``/``Add``/``Mul``/``Div`` nodes with a constant operand, as OpenCV Zoo's SFace and
  insightface's MXNet-born ArcFace graphs do -- it gets raw RGB in [0, 255]. Otherwise the kind
  decides: ``arcface`` and ``generic`` get ``(x - 127.5) / 127.5``, ``sface`` ``(x - 127.5) / 128``
  (``x`` RGB in [0, 255]).
- **Threshold**: the user's, else a rough default per kind, marked uncalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from facesys.errors import ModelError
from facesys.models.onnx_graph import _first_line

if TYPE_CHECKING:
    import onnx
    from torch import nn

# insightface's arcface_dst: left eye, right eye, nose, mouth left, mouth right (as seen in the
# image: facesys's LANDMARK_NAMES order) in a 112x112 chip.
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
ARITHMETIC = ("Sub", "Add", "Mul", "Div")  # a graph whose input goes only into these (by constants) normalises itself
CHECK_BATCH = 2  # images of the forward pass that checks a graph (2 also catches a batch size fixed at 1)


class Kind(NamedTuple):
    """What a kind of network expects: ``(x - mean) / std`` of RGB ``x`` in [0, 255], and a rough
    default threshold (Euclidean distance between unit vectors; NOT calibrated for any model)."""

    mean: float
    std: float
    threshold: float


# Keys: facesys.config.ONNX_KINDS. Thresholds: sface is OpenCV's cosine 0.363 for FaceRecognizerSF
# (d = sqrt(2 - 2 cos)); arcface / generic are cosine 0.3, a common starting point for ArcFace models.
KINDS = {
    "arcface": Kind(127.5, 127.5, 1.183),
    "sface": Kind(127.5, 128.0, 1.129),
    "generic": Kind(127.5, 127.5, 1.183),
}


@dataclass(frozen=True)
class OnnxFacts:
    """What prepare learned from a graph: chip size, embedding size and the input normalisation
    ``(x - mean) / std`` of RGB in [0, 255] (``by_graph``: the graph normalises, so 0 and 1)."""

    input_size: int
    embedding_dim: int
    mean: float
    std: float
    by_graph: bool


def arcface_template(size: int) -> tuple[tuple[float, float], ...]:
    """The ArcFace 5-point template for an ``size`` x ``size`` chip (see the module docstring)."""
    if size % 128 == 0:
        ratio, shift = size / 128, 8.0 * size / 128
    else:
        ratio, shift = size / 112, 0.0
    return tuple((round(x * ratio + shift, 4), round(y * ratio, 4)) for x, y in ARCFACE_TEMPLATE_112)


def check_onnx_model(path: str | Path, kind: str) -> tuple[onnx.ModelProto, OnnxFacts]:
    """The folded graph at ``path`` (facesys/models/onnx_graph.py) and what facesys needs to run it.

    ModelError, one line naming the file and the problem, for anything facesys cannot run: not
    ONNX, not one float image input ``(N, 3, S, S)`` with a fixed square ``S``, not one output
    ``(N, D)``, NaN or infinite weights, operators onnx2torch cannot convert, or a forward pass on
    blank images that fails, or gives non-finite values or the wrong shape.
    """
    import numpy as np

    from facesys.models.onnx_graph import read_onnx, weights

    path = Path(path)
    if kind not in KINDS:
        raise ModelError(f"unknown kind {kind!r} of ONNX model; known: {', '.join(KINDS)}", parameter="kind")
    model = read_onnx(path)
    graph = model.graph
    size = _image_size(path, graph)
    declared_dim = _embedding_dim(path, graph)
    for name, array in weights(model).items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ModelError(f"{path}: weight {name!r} holds NaN or infinite values")
    _check_operators(path, model)
    mean, std, by_graph = normalisation(graph, kind)
    backbone = onnx_backbone(model, mean, std, path)
    dim = _check_forward(path, backbone, size)
    if declared_dim is not None and dim != declared_dim:
        raise ModelError(f"{path}: the output is declared (N, {declared_dim}) but the graph gives (N, {dim})")
    return model, OnnxFacts(size, dim, mean, std, by_graph)


def normalisation(graph: onnx.GraphProto, kind: str) -> tuple[float, float, bool]:
    """(mean, std, by_graph) for RGB in [0, 255]: (0, 1, True) when the graph normalises its
    input itself (every node reading the input is Sub/Add/Mul/Div with a constant operand), else
    the kind's (see the module docstring)."""
    image = graph.input[0].name
    constants = {tensor.name for tensor in graph.initializer}
    readers = [node for node in graph.node if image in node.input]
    if readers and all(node.op_type in ARITHMETIC and _other_operand_constant(node, image, constants) for node in readers):
        return 0.0, 1.0, True
    chosen = KINDS[kind]
    return chosen.mean, chosen.std, False


def onnx_backbone(model: onnx.ModelProto, mean: float, std: float, path: str | Path) -> nn.Module:
    """The graph as a torch module taking (N, 3, S, S) RGB in [0, 1]: ``graph((255 x - mean) / std)``.

    ModelError naming ``path`` when onnx2torch cannot convert it.
    """
    try:
        graph = _onnx2torch().convert(model)
    except Exception as exc:  # onnx2torch raises NotImplementedError, ValueError, KeyError, ...
        raise ModelError(f"{path}: onnx2torch cannot convert the graph ({type(exc).__name__}: {_first_line(exc)})") from None
    return _backbone_class()(graph, mean, std)


@cache
def _backbone_class() -> type[nn.Module]:
    from torch import Tensor, nn

    class OnnxBackbone(nn.Module):
        """A converted ONNX graph behind its input normalisation."""

        def __init__(self, graph: nn.Module, mean: float, std: float) -> None:
            super().__init__()
            self.graph = graph
            self.scale, self.offset = 255.0 / std, mean / std

        def forward(self, x: Tensor) -> Tensor:
            return self.graph(x * self.scale - self.offset)

        def named_stages(self) -> list[tuple[str, nn.Module]]:
            """(name, module) of each converted node that holds weights, in graph order (facesys train freezes by them)."""
            return [(name, module) for name, module in self.graph.named_children() if any(True for _ in module.parameters())]

    return OnnxBackbone


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """The declared shape of a graph input or output (``str`` for a named or unknown axis), or None."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in tensor.shape.dim]


def _shape_text(dims: list[int | str] | None) -> str:
    return "unknown" if dims is None else "(" + ", ".join(str(d) for d in dims) + ")"


def _image_size(path: Path, graph: onnx.GraphProto) -> int:
    """S of the one image input (N, 3, S, S), or ModelError."""
    from onnx import TensorProto

    if len(graph.input) != 1:
        names = ", ".join(repr(value.name) for value in graph.input) or "none"
        raise ModelError(f"{path}: the graph takes {len(graph.input)} inputs ({names}); facesys feeds it one image batch")
    image = graph.input[0]
    element = image.type.tensor_type.elem_type
    if element != TensorProto.FLOAT:
        raise ModelError(
            f"{path}: input {image.name!r} is {TensorProto.DataType.Name(element).lower()}; facesys feeds float32 images"
        )
    dims = _dims(image)
    if dims is None or len(dims) != 4 or dims[1] != 3 or not isinstance(dims[2], int) or dims[2] <= 0 or dims[2] != dims[3]:
        raise ModelError(
            f"{path}: input {image.name!r} has shape {_shape_text(dims)}; facesys needs (N, 3, S, S): "
            "RGB channels first, a fixed square size S"
        )
    return dims[2]


def _embedding_dim(path: Path, graph: onnx.GraphProto) -> int | None:
    """D of the one output (N, D) when the graph declares it (None: left to the forward pass), or ModelError."""
    if len(graph.output) != 1:
        names = ", ".join(repr(value.name) for value in graph.output)
        raise ModelError(f"{path}: the graph has {len(graph.output)} outputs ({names}); facesys needs one embedding (N, D)")
    dims = _dims(graph.output[0])
    if dims is not None and len(dims) != 2:
        raise ModelError(f"{path}: output {graph.output[0].name!r} has shape {_shape_text(dims)}; facesys needs (N, D)")
    return dims[1] if dims is not None and isinstance(dims[1], int) and dims[1] > 0 else None


def _onnx2torch():
    """The onnx2torch package; ModelError saying how to install it where it is missing (or its torchvision is)."""
    try:
        import onnx2torch
        import onnx2torch.node_converters.registry
    except ImportError as exc:
        raise ModelError(
            f"ONNX models need onnx2torch, which cannot be imported ({exc.name or exc}): pip install onnx2torch "
            "(it needs torchvision), or pip install -e '.[onnx-models]' in the facesys checkout",
            parameter="weights",
        ) from None
    return onnx2torch


def _check_operators(path: Path, model: onnx.ModelProto) -> None:
    """ModelError listing every operator onnx2torch has no converter for at the model's opset."""
    get_converter = _onnx2torch().node_converters.registry.get_converter
    versions = {entry.domain or "": entry.version for entry in model.opset_import}
    versions.setdefault("", versions.get("ai.onnx", 1))
    missing = []
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        try:
            get_converter(node.op_type, versions.get(domain, 1), domain)
        except NotImplementedError:
            label = f"{domain}.{node.op_type}" if domain else node.op_type
            if label not in missing:
                missing.append(label)
    if missing:
        opset = versions[""]
        raise ModelError(f"{path}: operators facesys cannot run (no onnx2torch converter at opset {opset}): {', '.join(missing)}")


def _check_forward(path: Path, backbone: nn.Module, size: int) -> int:
    """D of the backbone's output on CHECK_BATCH blank chips, or ModelError."""
    import torch

    try:
        with torch.no_grad():
            out = backbone.eval()(torch.zeros(CHECK_BATCH, 3, size, size))
    except Exception as exc:
        raise ModelError(
            f"{path}: the graph fails on a batch of {CHECK_BATCH} blank {size}x{size} images "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != CHECK_BATCH or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{path}: the graph gives {shape} for {CHECK_BATCH} images; facesys needs ({CHECK_BATCH}, D), D >= 2")
    if not torch.isfinite(out).all():
        raise ModelError(f"{path}: the graph gives NaN or infinite values on blank {size}x{size} images")
    return int(out.shape[1])


def _other_operand_constant(node: onnx.NodeProto, image: str, constants: set[str]) -> bool:
    others = [name for name in node.input if name != image]
    return len(others) == 1 and others[0] in constants
