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


def real_model(name: str):
    """A registered network as fine-tuning runs it: early stages frozen, BatchNorm fixed, in float64."""
    from facesys.models import create_model
    from facesys.train.freeze import freeze_until, set_train_mode

    model = create_model(name).double()
    freeze_until(model, "stage2")
    set_train_mode(model)
    return model


def trainable_gradient(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.requires_grad])


def real_chips(model: nn.Module, people: int = 4, per_person: int = 2):
    torch.manual_seed(2)
    size = model.spec.input_size
    labels = torch.arange(people).repeat_interleave(per_person)
    return torch.rand(people, 3, 1, 1, dtype=torch.float64)[labels] * 0.5 + 0.5 * torch.rand(len(labels), 3, size, size), labels


@pytest.mark.parametrize("name", ["dlib-resnet", "sface"])
def test_exact_accumulation_of_a_real_network_equals_one_large_batch(name):
    """Fixed BatchNorm statistics and no random layer: the exact gradient is the large batch's."""
    model = real_model(name)
    model.apply(lambda m: m.eval() if isinstance(m, nn.Dropout) else None)
    x, labels = real_chips(model)
    batch_hard(model(x), labels).backward()
    expected = trainable_gradient(model)
    model.zero_grad(set_to_none=True)
    exact_backward(model, batch_hard, chunks(x, labels, 2))
    torch.testing.assert_close(trainable_gradient(model), expected, rtol=1e-7, atol=1e-9)
    assert expected.abs().max() > 1e-4


def test_exact_accumulation_draws_the_same_dropout_masks_in_both_passes():
    """SFace's head has dropout 0.4, active when the head is fine-tuned: the gradient of exact
    accumulation is the one of the large batch seen through the masks its first pass drew."""
    model = real_model("sface")
    assert any(isinstance(m, nn.Dropout) and m.training for m in model.modules())
    x, labels = real_chips(model)
    torch.manual_seed(7)
    batch_hard(torch.cat([model(inputs) for inputs, _ in chunks(x, labels, 2)]), labels).backward()
    expected = trainable_gradient(model)
    after_reference = torch.get_rng_state()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    exact_backward(model, batch_hard, chunks(x, labels, 2))
    torch.testing.assert_close(trainable_gradient(model), expected, rtol=1e-7, atol=1e-9)
    assert torch.equal(torch.get_rng_state(), after_reference)  # one pass's worth of random numbers used
    model.zero_grad(set_to_none=True)
    torch.manual_seed(8)  # other masks, another gradient: the test compares something
    exact_backward(model, batch_hard, chunks(x, labels, 2))
    assert (trainable_gradient(model) - expected).abs().max() > 1e-4
