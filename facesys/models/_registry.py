"""Model registry in the style of timm: ``create_model(name)`` and ``list_models()``.

Every model declares what the rest of facesys needs to use it: the chip size and the 5-point
alignment template it expects, the embedding dimension and its default verification threshold.
All models produce L2-normalised embeddings compared by Euclidean distance (on unit vectors
``d = sqrt(2 - 2 cos)``, so it orders pairs exactly as cosine similarity does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facesys.errors import ModelError
from facesys.hashing import file_sha256

if TYPE_CHECKING:
    from torch import nn

# Landmark order used everywhere in facesys (MTCNN's): left eye, right eye, nose tip, left and
# right mouth corners, "left" and "right" as seen in the image.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

CHECKPOINT_FORMAT = "facesys-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """The model a gallery's embeddings come from: ``model_id`` (name@sha256 prefix), the name or
    path it was created from, the sha256 of its weights and its embedding dimension."""

    model_id: str
    name: str
    weights_sha256: str
    dim: int


@dataclass(frozen=True)
class ModelSpec:
    """What facesys needs to know about an embedding network.

    ``template`` holds the 5 landmarks (LANDMARK_NAMES order) in chip pixels of an
    ``input_size`` x ``input_size`` chip; ``threshold`` is the default verification threshold,
    a Euclidean distance between unit embeddings; ``architecture`` names the nn.Module family
    (a checkpoint of a fine-tuned model keeps it). ``build()`` returns the backbone with random
    weights; ``load_weights(backbone, path_or_None)`` fills in the pretrained weights (from
    ``path`` when given) and returns their sha256; ``weights_location()`` says where they are.
    ``far_table``: ((false-accept rate, threshold), ...) measured on impostor pairs, FAR
    decreasing; open-set identification picks its threshold from it (facesys/decide/match.py).
    ``licence``: the weights' licence as published (or as the user declared it for their own model).
    """

    name: str
    description: str
    architecture: str
    input_size: int
    template: tuple[tuple[float, float], ...]
    embedding_dim: int
    threshold: float
    build: Callable[[], nn.Module]
    load_weights: Callable[[nn.Module, str | None], str]
    weights_location: Callable[[], str]
    base: str | None = None  # a checkpoint's registered model (its build and weights come from it)
    far_table: tuple[tuple[float, float], ...] = ()
    licence: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry under ``spec.name``."""
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of the registered models, the default (facesys.config.DEFAULT_MODEL) first."""
    from facesys.config import DEFAULT_MODEL

    _load_models()
    return sorted(_REGISTRY, key=lambda name: name != DEFAULT_MODEL)  # stable: the others in registration order


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or ModelError listing the known names."""
    _load_models()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}, or a checkpoint file path")
    return _REGISTRY[name]


def _load_builtin_models() -> None:
    from facesys.models import dlib_model, dlib_sface, facenet, sface  # noqa: F401  (registers on import)


def _load_models() -> None:
    """The built-in models, then the user's own prepared ones (a built-in name always wins)."""
    from facesys.models.user_models import register_user_models

    _load_builtin_models()
    register_user_models()


def wrap_backbone(backbone: nn.Module, spec: ModelSpec, weights_sha256: str) -> nn.Module:
    """An ``EmbeddingModel`` (the L2-normalising wrapper) around ``backbone``."""
    from facesys.models.embedding_model import EmbeddingModel

    return EmbeddingModel(backbone, spec, weights_sha256)


def create_model(name_or_path: str, weights: str | None = None, device: str = "cpu") -> nn.Module:
    """The model ``name_or_path`` with its weights, in eval mode on ``device``.

    ``name_or_path`` is a registered name (see :func:`list_models`) or a facesys checkpoint file
    (``*.pt`` written by :func:`save_checkpoint`). ``weights`` optionally points a registered model
    at a local weights file. Returns an ``EmbeddingModel``: (N, 3, S, S) float RGB in [0, 1] ->
    (N, D) float32 unit vectors; ``.spec`` and ``.model_id`` describe it.
    """
    if Path(name_or_path).suffix in (".pt", ".pth") or Path(name_or_path).is_file():
        model = load_checkpoint(name_or_path)
    else:
        spec = get_model_spec(name_or_path)
        backbone = spec.build()
        model = wrap_backbone(backbone, spec, spec.load_weights(backbone, weights))
    return model.to(device).eval()


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    threshold: float | None = None,
    far_table: tuple[tuple[float, float], ...] | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``model`` (an EmbeddingModel) as a facesys checkpoint ``create_model`` can load.

    The file carries the architecture id, alignment template, chip size, embedding size, a
    threshold (``threshold`` or the model's) and the weights; it is read back with
    ``torch.load(weights_only=True)``.
    """
    import torch

    spec: ModelSpec = model.spec
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": spec.architecture,
        "base_model": spec.base or spec.name,
        "input_size": spec.input_size,
        "template": [list(p) for p in spec.template],
        "embedding_dim": spec.embedding_dim,
        "threshold": float(spec.threshold if threshold is None else threshold),
        "far_table": [list(row) for row in (spec.far_table if far_table is None else far_table)],
        "state_dict": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "extra": extra or {},
    }
    torch.save(state, path)


def load_checkpoint(path: str | Path) -> nn.Module:
    """An EmbeddingModel from a facesys checkpoint file, read with ``weights_only=True``."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: checkpoint file not found") from None
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{path}: not a readable facesys checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path}: not a facesys checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ModelError(f"{path}: checkpoint version {state['version']} is newer than this facesys")
    base = get_model_spec(state["base_model"])
    spec = ModelSpec(
        name=path.stem,
        description=f"checkpoint {path.name} ({state['architecture']}, from {base.name})",
        architecture=state["architecture"],
        input_size=int(state["input_size"]),
        template=tuple((float(x), float(y)) for x, y in state["template"]),
        embedding_dim=int(state["embedding_dim"]),
        threshold=float(state["threshold"]),
        far_table=tuple((float(r), float(t)) for r, t in state.get("far_table", [])),
        build=base.build,
        load_weights=base.load_weights,
        weights_location=lambda: str(path),
        base=base.name,
    )
    backbone = base.build()
    try:
        backbone.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{path}: weights do not fit architecture {state['architecture']}: {exc}") from None
    return wrap_backbone(backbone, spec, file_sha256(path))
