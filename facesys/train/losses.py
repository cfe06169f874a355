"""Triplet losses on L2-normalised embeddings, with Euclidean distances.

All take ``embeddings`` (N, D) (unit rows) and integer ``labels`` (N,) and return a scalar:

- ``batch_hard``: for each anchor, its farthest positive and nearest negative in the batch
  (Hermans, Beyer, Leibe 2017, "In Defense of the Triplet Loss for Person Re-Identification").
- ``semi_hard``: for each anchor-positive pair, the nearest negative that is still farther than
  the positive (within the margin), else the farthest negative (Schroff, Kalenichenko, Philbin
  2015, "FaceNet", section 3.2).
- ``batch_all``: every valid triplet; the mean over the triplets with a positive loss (Hermans et al.).

Mining happens inside whatever batch the loss sees: over a micro-batch in naive accumulation,
over the whole effective batch in exact (cached-gradient) accumulation.
"""

from __future__ import annotations

import torch

from facesys.errors import FacesysError

# Anchors (or anchor-positive pairs) handled at once by batch-all and semi-hard: bounds their memory
# to O(chunk x N) instead of O(N^3) / O(N^2 K) for the large effective batches of exact accumulation.
CHUNK = 256


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, N) Euclidean distances from the Gram matrix (O(N^2) memory); the diagonal is exactly 0
    and the gradient is finite there."""
    norms = embeddings.pow(2).sum(1)
    squared = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * embeddings @ embeddings.T).clamp_min(0.0)
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    return torch.where(eye, torch.zeros_like(squared), squared.clamp_min(1e-12).sqrt())


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positives, negatives


def batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    valid = positive.any(1) & negative.any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    hardest_positive = torch.where(positive, d, torch.full_like(d, -1.0)).amax(1)
    hardest_negative = torch.where(negative, d, torch.full_like(d, float("inf"))).amin(1)
    return torch.relu(hardest_positive - hardest_negative + margin)[valid].mean()


def semi_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    anchors, positives = positive.nonzero(as_tuple=True)
    total, count = embeddings.sum() * 0.0, 0
    for start in range(0, len(anchors), CHUNK):
        a, p = anchors[start : start + CHUNK], positives[start : start + CHUNK]
        d_ap = d[a, p].unsqueeze(1)  # (T, 1)
        d_an = d[a]  # (T, N)
        is_negative = negative[a]
        semi = is_negative & (d_an > d_ap) & (d_an < d_ap + margin)
        nearest_semi = torch.where(semi, d_an, torch.full_like(d_an, float("inf"))).amin(1)
        farthest = torch.where(is_negative, d_an, torch.full_like(d_an, -1.0)).amax(1)
        chosen = torch.where(semi.any(1), nearest_semi, farthest)
        keep = is_negative.any(1)
        total = total + torch.relu(d_ap.squeeze(1) - chosen + margin)[keep].sum()
        count += int(keep.sum())
    return total / count if count else total


def batch_all(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    total, active = embeddings.sum() * 0.0, 0
    for start in range(0, len(embeddings), CHUNK):
        rows = slice(start, start + CHUNK)
        triplet = positive[rows].unsqueeze(2) & negative[rows].unsqueeze(1)  # (anchor, positive, negative)
        losses = torch.relu(d[rows].unsqueeze(2) - d[rows].unsqueeze(1) + margin)[triplet]
        hit = losses > 1e-16
        total = total + losses[hit].sum()
        active += int(hit.sum())
    return total / active if active else total


LOSSES = {"batch-hard": batch_hard, "semi-hard": semi_hard, "batch-all": batch_all}


def get_loss(name: str):
    """The loss function registered as ``name`` (batch-hard, semi-hard, batch-all)."""
    if name not in LOSSES:
        raise FacesysError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name]
