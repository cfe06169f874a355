"""Clustering metrics from true and predicted labels: pairwise and BCubed precision, recall, F1.

Both come from the contingency table (faces per (person, cluster) cell), never from a list of
pairs: O(N log N) for any N.

- Pairwise: over all unordered face pairs, precision = same-cluster pairs that are same-person /
  same-cluster pairs, recall = same-person pairs that are same-cluster / same-person pairs. Large
  clusters dominate (pairs grow as size squared).
- BCubed (Bagga & Baldwin 1998; Amigo et al. 2009): per face, precision = share of its cluster
  that is its person, recall = share of its person that is in its cluster; each averaged over faces.

A ratio with nothing to count (no same-cluster pairs, say) is 1.0: nothing was wrongly joined.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facesys.datasets import people_in
from facesys.errors import FacesysError


def contingency(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty cells of the table: (C,) faces per cell, (C,) its person's row, (C,) its cluster's column."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(f"labels: expected two (N,) arrays, got {truth.shape} and {predicted.shape}")
    _, person = np.unique(truth, return_inverse=True)
    _, cluster = np.unique(predicted, return_inverse=True)
    cells, counts = np.unique(np.stack([person.ravel(), cluster.ravel()]), axis=1, return_counts=True)
    return counts, cells[0], cells[1]


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _ratio(part: float, whole: float) -> float:
    return 1.0 if whole == 0 else part / whole


def cluster_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Pairwise and BCubed precision/recall/F1, faces, people and clusters of (N,) labels."""
    n = len(truth)
    counts, person, cluster = contingency(truth, predicted)
    per_person = np.bincount(person, counts).astype(np.float64)  # faces of each person
    per_cluster = np.bincount(cluster, counts).astype(np.float64)  # faces in each cluster

    def pairs(x: np.ndarray) -> float:
        x = x.astype(np.float64)
        return float((x * (x - 1) / 2).sum())

    together, clustered, same = pairs(counts), pairs(per_cluster), pairs(per_person)
    pair_p, pair_r = _ratio(together, clustered), _ratio(together, same)
    cube_p = _ratio(float((counts**2 / per_cluster[cluster]).sum()), n)
    cube_r = _ratio(float((counts**2 / per_person[person]).sum()), n)
    return {
        "faces": n,
        "people": len(per_person),
        "clusters": len(per_cluster),
        "pairwise_precision": pair_p,
        "pairwise_recall": pair_r,
        "pairwise_f1": _f1(pair_p, pair_r),
        "bcubed_precision": cube_p,
        "bcubed_recall": cube_r,
        "bcubed_f1": _f1(cube_p, cube_r),
    }


def labelled_photos(root: Path) -> list[tuple[str, Path]]:
    """(person, photo) of every photo in a folder-per-person ``root``; FacesysError when there are none."""
    photos = [(name, path) for name, paths in people_in(root).items() for path in paths]
    if not photos:
        raise FacesysError(f"{root}: no photos to cluster (expected one sub-folder of photos per person)")
    return photos


def evaluate_clustering(cache, photos: list[tuple[str, Path]], threshold: float | None = None) -> dict:
    """Embed the (person, photo) ``photos`` through ``cache`` (an EmbeddingCache), cluster the faces
    with ``cluster_faces`` and score the clusters against the names. ``threshold`` None: the model's
    clustering threshold. A photo without a face is a cluster of its own."""
    from facesys.decide.clustering import cluster_faces, cluster_threshold

    started = time.perf_counter()
    vectors = cache.embed([path for _, path in photos])
    embed_seconds = time.perf_counter() - started
    found = np.array([vectors[path] is not None for _, path in photos])
    if threshold is None:
        threshold = cluster_threshold(cache.embedder.spec)
    faces = np.stack([vectors[path] for _, path in photos if vectors[path] is not None]) if found.any() else np.zeros((0, 1))
    started = time.perf_counter()
    labels = cluster_faces(faces.astype(np.float32), threshold=threshold)
    cluster_seconds = time.perf_counter() - started
    ids = np.empty(len(photos), np.int64)
    ids[found] = labels
    ids[~found] = (labels.max() + 1 if len(labels) else 0) + np.arange((~found).sum())
    unreadable = sum(path in cache.unreadable for _, path in photos)
    return {
        "threshold": float(threshold),
        **cluster_metrics(np.array([name for name, _ in photos]), ids),
        "images_without_face": int((~found).sum()) - unreadable,
        "unreadable_images": unreadable,
        "missing_face_policy": "a photo without a face is a cluster of its own",
        "embed_seconds": embed_seconds,
        "cluster_seconds": cluster_seconds,
    }
