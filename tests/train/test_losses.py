"""Triplet losses on tiny hand-made batches with known answers."""

from __future__ import annotations

import pytest
import torch

from facesys.errors import FacesysError
from facesys.train.losses import batch_all, batch_hard, get_loss, pairwise_distances, semi_hard

# Four points on a line (not unit vectors: the losses only need distances).
POINTS = torch.tensor([[0.0], [1.0], [3.0], [3.5]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1])


def test_pairwise_distances_and_their_gradient_at_zero():
    x = POINTS.clone().requires_grad_(True)
    d = pairwise_distances(x)
    assert torch.allclose(d[0], torch.tensor([0.0, 1.0, 3.0, 3.5], dtype=torch.float64))
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_hard_known_value():
    # anchor 0: pos 1.0, neg min 3.0 -> 0; anchor 1: pos 1.0, neg 2.0 -> relu(1 - 2 + m)
    # anchor 2: pos 0.5, neg min 2.0; anchor 3: pos 0.5, neg 2.5. With margin 1.5: [0, 0.5, 0, 0].
    assert batch_hard(POINTS, LABELS, margin=1.5).item() == pytest.approx(0.5 / 4)


def test_batch_all_averages_active_triplets():
    # Triplets (a, p, n) with d(a,p) - d(a,n) + 1.5 > 0: (1,0,2): 1-2+1.5=0.5, (2,3,1): 0.5-2+1.5=0 no,
    # (3,2,1): 0.5-2.5+1.5=-0.5 no, (0,1,2): 1-3+1.5=-0.5 no, (1,0,3): 1-2.5+1.5=0 no, (2,3,0)... no.
    assert batch_all(POINTS, LABELS, margin=1.5).item() == pytest.approx(0.5)


def test_semi_hard_prefers_negatives_just_beyond_the_positive():
    points = torch.tensor([[0.0], [1.0], [1.2], [5.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    # anchor 0, positive 1 (d=1): negatives at 1.2 (semi-hard, within margin 0.5) and 5.0 -> uses 1.2: 0.3.
    # anchor 1, positive 0 (d=1): negatives at 0.2 (too hard) and 4.0 (beyond margin): no semi-hard ->
    # farthest (4.0): relu(1 - 4 + 0.5) = 0.
    assert semi_hard(points, labels, margin=0.5).item() == pytest.approx(0.3 / 2)


def test_no_valid_triplet_gives_zero_with_a_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    for name in ("batch-hard", "semi-hard", "batch-all"):
        loss = get_loss(name)(x, torch.tensor([0, 1, 2]))
        assert loss.item() == 0.0
        loss.backward()


def test_unknown_loss_name():
    with pytest.raises(FacesysError, match="unknown loss"):
        get_loss("quadruplet")


def test_chunking_does_not_change_the_losses_or_gradients(monkeypatch):
    import facesys.train.losses as losses

    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(30, 8, dtype=torch.float64), dim=1)
    labels = torch.arange(10).repeat_interleave(3)
    for fn in (losses.semi_hard, losses.batch_all):
        whole = x.clone().requires_grad_(True)
        expected = fn(whole, labels)
        expected.backward()
        monkeypatch.setattr(losses, "CHUNK", 7)
        chunked = x.clone().requires_grad_(True)
        value = fn(chunked, labels)
        value.backward()
        monkeypatch.setattr(losses, "CHUNK", 256)
        assert value.item() == pytest.approx(expected.item(), rel=1e-12)
        torch.testing.assert_close(chunked.grad, whole.grad)
