"""What a training run depends on, without torch: ``facesys train`` takes its option defaults from
:class:`TrainConfig`, the trainer (facesys/train/trainer.py) runs it."""

from __future__ import annotations

from dataclasses import dataclass

from facesys.config import DEFAULT_MODEL
from facesys.errors import FacesysError


@dataclass
class TrainConfig:
    """Everything a run depends on (saved in its checkpoints). P x K = micro_batch x accum_steps x world."""

    out: str
    model: str = DEFAULT_MODEL
    weights: str | None = None
    people: int = 32
    per_person: int = 4
    micro_batch: int = 32
    accum_steps: int = 4
    accum_mode: str = "exact"
    loss: str = "batch-hard"
    margin: float = 0.2
    optimizer: str = "adamw"
    lr: float = 1e-5
    weight_decay: float = 1e-4
    steps: int = 100
    freeze: str | None = "stage2"
    augment: bool = False
    checkpoint_every: int = 50
    validate_every: int = 25
    seed: int = 0
    device: str = "cpu"

    def check(self, world: int) -> None:
        from facesys.train.accumulation import MODES
        from facesys.train.losses import get_loss

        if self.accum_mode not in MODES:
            raise FacesysError(f"--accum-mode must be one of {', '.join(MODES)}")
        if self.people * self.per_person != self.micro_batch * self.accum_steps * world:
            raise FacesysError(
                f"P x K = {self.people} x {self.per_person} = {self.people * self.per_person} must equal "
                f"micro-batch x accum-steps x processes = {self.micro_batch} x {self.accum_steps} x {world}"
            )
        if self.optimizer not in ("adamw", "sgd"):
            raise FacesysError("--optimizer must be adamw or sgd")
        if self.micro_batch % self.per_person:
            raise FacesysError(
                f"--micro-batch {self.micro_batch} must be a multiple of K={self.per_person} (whole people per micro-batch)"
            )
        get_loss(self.loss)
