"""Accumulated gradients against the full-batch gradient (float64, a tiny model, fixed data)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facesys.train.accumulation import exact_backward, naive_backward
from facesys.train.losses import batch_all, batch_hard, semi_hard


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(6, 4).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.layer(x), dim=1)


def data(people: int = 6, per_person: int = 4):
    torch.manual_seed(1)
    labels = torch.arange(people).repeat_interleave(per_person)
    centres = torch.randn(people, 6, dtype=torch.float64)
    x = centres[labels] + 0.8 * torch.randn(len(labels), 6, dtype=torch.float64)
    return x, labels


def gradient(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def full_batch_gradient(loss_fn, x, labels) -> torch.Tensor:
    model = Tiny()
    loss_fn(model(x), labels).backward()
    return gradient(model)


def chunks(x, labels, size):
    return [(x[i : i + size], labels[i : i + size]) for i in range(0, len(x), size)]


@pytest.mark.parametrize("size", [1, 4, 6, 12])
def test_naive_accumulation_of_a_per_sample_loss_is_exact(size):
    x, _ = data()
    target = torch.randn(len(x), 4, dtype=torch.float64)
    targets = dict(zip(map(int, range(len(x))), target, strict=True))
    index = torch.arange(len(x))

    def per_sample(embeddings, which):  # mean squared error to each sample's own target
        return (embeddings - torch.stack([targets[int(i)] for i in which])).pow(2).sum(1).mean()

    expected = full_batch_gradient(per_sample, x, index)
    model = Tiny()
    naive_backward(model, per_sample, chunks(x, index, size))
    torch.testing.assert_close(gradient(model), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss_fn", [batch_hard, semi_hard, batch_all], ids=["batch-hard", "semi-hard", "batch-all"])
@pytest.mark.parametrize("size", [1, 3, 4, 8, 24])
def test_exact_accumulation_equals_the_full_batch_triplet_gradient(loss_fn, size):
    x, labels = data()
    expected = full_batch_gradient(loss_fn, x, labels)
    model = Tiny()
    exact_backward(model, loss_fn, chunks(x, labels, size))
    assert torch.allclose(gradient(model), expected, rtol=0, atol=1e-6)
    assert expected.abs().max() > 1e-3  # the test compares something


def test_naive_accumulation_misses_hard_negatives_in_other_micro_batches():
    x, labels = data()
    # Micro-batches of 8 hold two people each: a hard negative in another micro-batch is never seen.
    expected = full_batch_gradient(batch_hard, x, labels)
    naive = Tiny()
    naive_backward(naive, batch_hard, chunks(x, labels, 8))
    difference = (gradient(naive) - expected).abs().max()
    assert difference > 1e-3, difference
