"""Model registry: ``create_model(name | checkpoint path)``, ``list_models()``, checkpoints."""

from facesys.models._registry import (
    LANDMARK_NAMES,
    ModelInfo,
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    load_checkpoint,
    register_model,
    save_checkpoint,
)

__all__ = [
    "LANDMARK_NAMES",
    "ModelInfo",
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
