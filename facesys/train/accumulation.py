"""Gradient accumulation for triplet losses: the classic ("naive") recipe and the exact one.

``naive``: every micro-batch is embedded with grad, its loss (mined inside the micro-batch) is
divided by the number of micro-batches and back-propagated; the optimizer steps once after all.
It saves memory, but for a triplet loss it is *not* the large-batch gradient: hard negatives
are only looked for inside each micro-batch.

``exact`` (GradCache; Gao, Zhang, Han, Callan 2021, "Scaling Deep Contrastive Learning Batch
Size under Memory Limited Setup"): embed every micro-batch without grad, compute the loss and the
mining over the whole effective batch on the detached embeddings, keep d(loss)/d(embedding), then
re-run each micro-batch with grad and back-propagate those cached gradients. The result is the
gradient of the full-batch loss, with the memory of one micro-batch (plus the (B, D) embeddings).
Layers must behave the same in both passes: with BatchNorm in training mode the two passes see
different statistics, so freeze BN/affine statistics when fine-tuning (dlib-resnet's affine
layers are fixed buffers; ``freeze.set_train_mode`` keeps BatchNorm in eval mode). Random
layers (SFace's dropout) draw the same masks in both passes: each micro-batch's second pass
starts from the random-number state its first pass started from (GradCache's ``RandContext``).

With DistributedDataParallel, each process holds its share of the effective batch: gradient
all-reduce is skipped (``no_sync``) on all but the last micro-step; in exact mode the embeddings
of all processes are gathered, so mining spans the global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _no_sync(model: nn.Module, last: bool):
    """DDP's no_sync() on every micro-step but the last; a no-op for a plain module."""
    if not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def naive_backward(model: nn.Module, loss_fn: LossFn, chunks: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Classic accumulation over micro-batches ``chunks`` of (inputs, labels); returns the mean loss.

    Gradients are added to ``.grad``; the caller zeroes them before and steps after.
    """
    total = 0.0
    for i, (inputs, labels) in enumerate(chunks):
        with _no_sync(model, last=i == len(chunks) - 1):
            loss = loss_fn(model(inputs), labels) / len(chunks)
            loss.backward()
        total += float(loss.detach())
    return total


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from all processes in rank order (no gradient)."""
    _, world = _world()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class _RandomState:
    """The CPU and CUDA random-number states at one moment, to draw the same random numbers again."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def exact_backward(model: nn.Module, loss_fn: LossFn, chunks: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Cached-gradient accumulation: the gradient of ``loss_fn`` over the whole (global) batch.

    Every process must hold the same number of samples. Returns the loss of the global batch.
    """
    rank, world = _world()
    states, local = [], []
    with torch.no_grad():
        for inputs, _ in chunks:
            states.append(_RandomState())
            local.append(model(inputs))
    local = torch.cat(local)
    labels = torch.cat([labels for _, labels in chunks])
    everyone = _gather(local)
    all_labels = _gather(labels)
    cached = everyone.detach().requires_grad_(True)
    loss = loss_fn(cached, all_labels)
    loss.backward()
    # DDP averages gradients over processes; the global loss's gradient is their sum.
    mine = cached.grad[rank * len(local) : (rank + 1) * len(local)] * world
    start, after = 0, _RandomState()
    for i, (inputs, _) in enumerate(chunks):
        with _no_sync(model, last=i == len(chunks) - 1):
            states[i].restore()  # the same dropout masks as the first pass
            embeddings = model(inputs)
            embeddings.backward(mine[start : start + len(inputs)])
        start += len(inputs)
    after.restore()
    return float(loss.detach())


MODES = {"naive": naive_backward, "exact": exact_backward}
