"""Calibrate a model's default thresholds on LFW's pairsDevTrain (View 1, meant for model
selection; the evaluation pairs of pairs.txt are not used).

    python benchmarks/calibrate_default_threshold.py [--model dlib-resnet]

1. Verification: the accuracy-optimal threshold (Euclidean distance between unit embeddings) on
   pairsDevTrain, with its accuracy there and on pairsDevTest.
2. Open-set identification: the impostor distance distribution over every pair of different
   people among pairsDevTrain's images (millions of pairs); the table gives, per false-accept
   rate per comparison (FAR), the threshold that reaches it. Identification picks its threshold
   from this table for the gallery's size (see facesys/decide/match.py).

Writes benchmarks/results/default_threshold_<model>.json; the values go into the model's spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.evaluate.experiments import EmbeddingCache
from facesys.evaluate.pairs import read_lfw_pairs
from facesys.evaluate.protocol import accuracy_at, best_threshold
from facesys.vision.embed import Embedder


def embed_files(embedder: Embedder, files: list[Path]) -> dict[Path, np.ndarray | None]:
    """The embedding of the face nearest each LFW image's centre (None where no face is found)."""
    return EmbeddingCache(embedder, face="center").embed(files)


def far_table(vectors: dict[Path, np.ndarray | None], rates=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5)) -> list[list[float]]:
    """[[FAR, threshold], ...]: the distance below which that fraction of impostor pairs falls."""
    items = [(f.parent.name, v) for f, v in vectors.items() if v is not None]
    people = np.array([name for name, _ in items])
    matrix = np.stack([v for _, v in items]).astype(np.float64)
    impostor = []
    for i in range(len(items) - 1):
        d = np.linalg.norm(matrix[i + 1 :] - matrix[i], axis=1)
        impostor.append(d[people[i + 1 :] != people[i]])
    impostor = np.sort(np.concatenate(impostor))
    return [[rate, round(float(impostor[int(rate * len(impostor))]), 4)] for rate in rates], len(impostor)


def pair_distances(embedder: Embedder, pairs, vectors=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Distances of the pairs (the face nearest each image's centre; a missing face counts as distance 2)."""
    if vectors is None:
        vectors = embed_files(embedder, sorted({p.a for p in pairs} | {p.b for p in pairs}))
    missing = sum(v is None for v in vectors.values())
    d = np.array(
        [
            2.0 if vectors[p.a] is None or vectors[p.b] is None else float(np.linalg.norm(vectors[p.a] - vectors[p.b]))
            for p in pairs
        ]
    )
    return d, np.array([p.same for p in pairs]), missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dlib-resnet")
    args = parser.parse_args()
    embedder = Embedder(args.model)
    lfw = DATA / "lfw"
    train_pairs = read_lfw_pairs(lfw / "pairsDevTrain.txt")
    train_vectors = embed_files(embedder, sorted({p.a for p in train_pairs} | {p.b for p in train_pairs}))
    train_d, train_same, train_missing = pair_distances(embedder, train_pairs, train_vectors)
    test_d, test_same, test_missing = pair_distances(embedder, read_lfw_pairs(lfw / "pairsDevTest.txt"))
    threshold = best_threshold(train_d, train_same)
    result = {
        "model": embedder.model_id,
        "threshold": round(threshold, 4),
        "train_pairs": len(train_d),
        "train_accuracy": accuracy_at(train_d, train_same, threshold),
        "test_pairs": len(test_d),
        "test_accuracy": accuracy_at(test_d, test_same, threshold),
        "images_without_face": train_missing + test_missing,
    }
    result["identify_far_table"], result["impostor_pairs"] = far_table(train_vectors)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"default_threshold_{args.model}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
