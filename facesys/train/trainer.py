"""The training loop: P x K batches, triplet loss, naive or exact accumulation, checkpoints,
exact resume, validation on people-disjoint pairs, a JSON-lines log and a plot.

Run under ``torchrun --nproc_per_node N`` for DistributedDataParallel (gloo on CPU, nccl on GPU):
each process takes its share of every effective batch (P x K = micro-batch x accum-steps x world).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from facesys.errors import FacesysError
from facesys.evaluate.pairs import Pair
from facesys.evaluate.protocol import accuracy_at, best_threshold, kfold_accuracy
from facesys.models import ModelSpec, save_checkpoint
from facesys.train.accumulation import MODES
from facesys.train.augment import augment
from facesys.train.config import TrainConfig
from facesys.train.data import ChipSet
from facesys.train.freeze import freeze_until, set_train_mode
from facesys.train.losses import get_loss
from facesys.train.sampler import PKSampler

STATE_FILE, FINAL_FILE, BEST_FILE, LOG_FILE, PLOT_FILE = "last.pt", "final.pt", "best.pt", "metrics.jsonl", "metrics.png"


def world_info() -> tuple[int, int]:
    """(rank, world size), initialising the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() and os.environ.get("FACESYS_DDP_BACKEND") != "gloo" else "gloo"
        )
        # Left to the interpreter's teardown, a rank that finishes first can abort in gloo's threads
        # ("terminate called without an active exception", seen once in CI): leave the group first.
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def check_chips(chips: ChipSet | None, spec: ModelSpec, model: str) -> None:
    """FacesysError unless ``chips`` have the chip size of the model (``spec``) they will train."""
    if chips is not None and len(chips) and chips.chips.shape[1:3] != (spec.input_size, spec.input_size):
        size = "x".join(map(str, chips.chips.shape[1:3]))
        raise FacesysError(
            f"chips are {size} pixels; model {model} takes {spec.input_size}x{spec.input_size} chips "
            "aligned to its own template (build them with its Embedder)"
        )


def _save_atomically(obj, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


class Trainer:
    """Fine-tunes ``config.model`` on ``train`` chips; validates on ``val`` pairs of ``val_chips``."""

    def __init__(
        self, config: TrainConfig, train: ChipSet, val_chips: ChipSet | None = None, val_pairs: list[Pair] | None = None
    ):
        from torch.nn.parallel import DistributedDataParallel

        from facesys.devices import check_device
        from facesys.models import create_model

        self.config = config
        self.rank, self.world = world_info()
        config.check(self.world)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.train, self.val_chips, self.val_pairs = train, val_chips, val_pairs or []
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, weights=config.weights, device=check_device(config.device))
        for chip_set in (train, val_chips):
            check_chips(chip_set, self.model.spec, config.model)
        self.trainable = freeze_until(self.model, config.freeze)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if not parameters:
            raise FacesysError(f"--freeze {config.freeze} leaves nothing to train")
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(1, config.steps))
        self.sampler = PKSampler(train.labels, config.people, config.per_person, config.seed)
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.loss_fn = get_loss(config.loss)
        self.step = 0
        self.best_accuracy, self.threshold = -1.0, self.model.spec.threshold

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.backbone.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": torch.get_rng_state(),
            "best_accuracy": self.best_accuracy,
            "threshold": self.threshold,
            "config": asdict(self.config),
        }

    def resume(self) -> bool:
        """Continue from ``out/last.pt`` if there is one; True if it did."""
        path = self.out / STATE_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.config.device, weights_only=True)
        self.model.backbone.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"])
        self.step, self.best_accuracy, self.threshold = state["step"], state["best_accuracy"], state["threshold"]
        return True

    # -- one step -----------------------------------------------------------------------------

    def micro_batches(self, indices: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This process's share of an effective batch, as (chips, labels) micro-batches."""
        share = len(indices) // self.world
        mine = indices[self.rank * share : (self.rank + 1) * share]
        chips = torch.from_numpy(self.train.chips[mine]).permute(0, 3, 1, 2).float().div_(255.0)
        if self.config.augment:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step * 101 + self.rank)
            chips = augment(chips, generator)
        chips = chips.to(self.config.device)
        labels = torch.from_numpy(self.train.labels[mine]).to(self.config.device)
        m = self.config.micro_batch
        return [(chips[i : i + m], labels[i : i + m]) for i in range(0, len(mine), m)]

    def train_step(self) -> float:
        set_train_mode(self.model)
        chunks = self.micro_batches(next(self.sampler))
        self.optimizer.zero_grad(set_to_none=True)
        loss = MODES[self.config.accum_mode](self.net, self.loss_fn, chunks)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

    # -- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def embed(self, chips: np.ndarray, batch: int = 64) -> np.ndarray:
        self.model.eval()
        out = []
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(chips[i : i + batch]).permute(0, 3, 1, 2).float().div_(255.0).to(self.config.device)
            out.append(self.model(x).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.spec.embedding_dim), np.float32)

    def validate(self) -> dict | None:
        """Accuracy on the validation pairs (k-fold if they have several folds, else at the best
        threshold) and the accuracy-optimal threshold over all of them."""
        if not self.val_pairs or self.val_chips is None or self.rank != 0:
            return None
        vectors = self.embed(self.val_chips.chips)
        index = self.val_chips.index_of()
        usable = [p for p in self.val_pairs if str(p.a) in index and str(p.b) in index]
        a = vectors[[index[str(p.a)] for p in usable]]
        b = vectors[[index[str(p.b)] for p in usable]]
        distances = np.linalg.norm(a - b, axis=1)
        same = np.array([p.same for p in usable])
        folds = np.array([p.fold for p in usable])
        threshold = best_threshold(distances, same)
        accuracy = (
            kfold_accuracy(distances, same, folds).mean
            if len(set(folds.tolist())) > 1
            else accuracy_at(distances, same, threshold)
        )
        return {"val_accuracy": accuracy, "val_threshold": threshold, "val_pairs": len(usable)}

    # -- the loop -----------------------------------------------------------------------------

    def log(self, row: dict) -> None:
        if self.rank == 0:
            with open(self.out / LOG_FILE, "a") as f:
                f.write(json.dumps(row) + "\n")

    def run(self, until: int | None = None, progress=lambda it: it) -> Path:
        """Train to ``config.steps`` (or stop after step ``until``: for tests of resume)."""
        stop = min(self.config.steps, until or self.config.steps)
        for _ in progress(range(self.step, stop)):
            started = time.perf_counter()
            loss = self.train_step()
            self.log(
                {
                    "step": self.step,
                    "loss": loss,
                    "lr": self.scheduler.get_last_lr()[0],
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
            if (self.config.validate_every and self.step % self.config.validate_every == 0) or self.step == self.config.steps:
                self.after_validation(self.validate())
            if (self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0) or self.step == stop:
                self.checkpoint()
        if self.step == self.config.steps and self.rank == 0:
            save_checkpoint(self.model, self.out / FINAL_FILE, threshold=self.threshold, extra={"train": asdict(self.config)})
            plot_metrics(self.out / LOG_FILE, self.out / PLOT_FILE)
        return self.out / FINAL_FILE

    def after_validation(self, result: dict | None) -> None:
        if result is None or self.rank != 0:
            return
        self.log({"step": self.step, **result})
        self.threshold = result["val_threshold"]
        if result["val_accuracy"] > self.best_accuracy:
            self.best_accuracy = result["val_accuracy"]
            save_checkpoint(self.model, self.out / BEST_FILE, threshold=self.threshold, extra={"step": self.step, **result})

    def checkpoint(self) -> None:
        if self.rank == 0:
            _save_atomically(self.state(), self.out / STATE_FILE)
        if self.world > 1:
            dist.barrier()


def plot_metrics(log: Path, out: Path) -> None:
    """Training loss and validation accuracy against the step, from the JSON-lines log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    accuracy = [(r["step"], r["val_accuracy"]) for r in rows if "val_accuracy" in r]
    figure, left = plt.subplots(figsize=(6, 4), dpi=110)
    if losses:
        left.plot(*zip(*losses, strict=True), color="tab:blue", label="training loss")
    left.set_xlabel("optimizer step")
    left.set_ylabel("triplet loss", color="tab:blue")
    if accuracy:
        right = left.twinx()
        right.plot(*zip(*accuracy, strict=True), "o-", color="tab:red", label="validation accuracy")
        right.set_ylabel("validation accuracy", color="tab:red")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
