"""Transfer learning: freeze the early stages (they detect simple features), train the later ones."""

from __future__ import annotations

from torch import nn

from facesys.errors import FacesysError


def stage_names(model: nn.Module) -> list[str]:
    """Stage names of an EmbeddingModel's backbone, input side first."""
    return [name for name, _ in model.backbone.named_stages()]


def freeze_until(model: nn.Module, last_frozen: str | None) -> list[str]:
    """Freeze every stage up to and including ``last_frozen`` (None: freeze nothing).

    Returns the names of the stages left trainable. FacesysError for an unknown stage name.
    """
    stages = model.backbone.named_stages()
    names = [name for name, _ in stages]
    if last_frozen is not None and last_frozen not in names:
        raise FacesysError(f"freeze: unknown stage {last_frozen!r}; stages of this model: {', '.join(names)}")
    cut = names.index(last_frozen) + 1 if last_frozen else 0
    for i, (_, module) in enumerate(stages):
        for parameter in module.parameters():
            parameter.requires_grad_(i >= cut)
    return names[cut:]


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except BatchNorm layers (statistics stay fixed) and fully frozen stages.

    Fixed statistics make the two passes of exact accumulation compute the same function.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    for _, stage in model.backbone.named_stages():
        if not any(p.requires_grad for p in stage.parameters()):
            stage.eval()
