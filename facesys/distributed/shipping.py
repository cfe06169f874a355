"""The embedding model a driver ships to its pipeline actors: weights through Ray's object store
(safetensors bytes, no pickle), never downloaded or converted again by a worker.

A registered model is rebuilt from its spec (``build``) and filled with the shipped weights; a
checkpoint keeps the spec fields it was saved with over its registered base model's build.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from facesys.models import get_model_spec
from facesys.models._registry import wrap_backbone

SPEC_FIELDS = ("name", "description", "architecture", "input_size", "template", "embedding_dim", "threshold", "far_table")


@dataclass(frozen=True)
class Shipped:
    """What an actor needs besides the weights: the registered ``base`` model, the ``spec`` fields
    that differ from it (a checkpoint's), the weights' sha256 (the model id), and the pipeline's
    options: detector name, flip, precision."""

    base: str
    spec: dict
    weights_sha256: str
    detector: str | None
    flip: bool
    precision: str


def pack(embedder) -> tuple[Shipped, bytes]:
    """(what to build, the weights as safetensors bytes) of ``embedder``'s model."""
    from safetensors.torch import save

    model = embedder.model
    spec = model.spec
    fields = {} if spec.base is None else {name: getattr(spec, name) for name in SPEC_FIELDS}
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.backbone.state_dict().items()}
    detector = getattr(embedder.detector, "name", None)
    options = Shipped(spec.base or spec.name, fields, model.weights_sha256, detector, embedder.flip, embedder.precision)
    return options, save(state)


def unpack(shipped: Shipped, weights: bytes, device: str):
    """The Embedder ``pack`` described, on ``device``, from the shipped ``weights``."""
    from safetensors.torch import load

    from facesys.vision.embed import Embedder

    base = get_model_spec(shipped.base)
    spec = base
    if shipped.spec:  # a checkpoint: its own name, template, threshold... over its base's build
        spec = replace(base, **shipped.spec, base=shipped.base, weights_location=lambda: "shipped by the driver")
    backbone = base.build()
    backbone.load_state_dict(load(weights))
    model = wrap_backbone(backbone, spec, shipped.weights_sha256)
    precision = shipped.precision if device != "cpu" or shipped.precision in ("fp32", "bf16") else "fp32"
    return Embedder(model, device=device, flip=shipped.flip, detector=shipped.detector, precision=precision)
