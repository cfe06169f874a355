"""Fit a fused model's normalisation statistics on LFW's pairsDevTrain (label-free).

    python benchmarks/fit_fusion.py [--weights 0.5 0.5]

Embeds every pairsDevTrain image once with the fused model, takes each member's unit vectors out of
the fused ones, and fits the mean and spread of each member's cosines over every pair of images
(no labels used). Prints the ``Member(...)`` lines for facesys/models/dlib_sface.py with the
fusion's pairsDevTrain / pairsDevTest accuracy at its best threshold, and writes
benchmarks/results/fusion_dlib+sface.json.
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
from facesys.models import get_model_spec
from facesys.models.dlib_sface import MEMBERS
from facesys.models.fusion import fit_statistics, member_vectors
from facesys.vision.embed import Embedder

MODEL = "dlib+sface"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", help="one per member (default: the model's)")
    args = parser.parse_args()
    embedder = Embedder(MODEL)
    weights = args.weights or [m.weight for m in MEMBERS]
    dims = [get_model_spec(m.name).embedding_dim for m in MEMBERS]
    lfw = DATA / "lfw"
    train, test = read_lfw_pairs(lfw / "pairsDevTrain.txt"), read_lfw_pairs(lfw / "pairsDevTest.txt")
    cache = EmbeddingCache(embedder, face="center")
    vectors = cache.embed(sorted({p.a for p in train + test} | {p.b for p in train + test}))
    train_files = sorted({p.a for p in train} | {p.b for p in train})
    found = [f for f in train_files if vectors[f] is not None]
    parts = member_vectors(np.stack([vectors[f] for f in found]), dims)
    statistics = [fit_statistics(part) for part in parts]
    rows = []
    for member, weight, (mean, std) in zip(MEMBERS, weights, statistics, strict=True):
        rows.append({"name": member.name, "weight": weight, "mean": round(mean, 5), "std": round(std, 5)})

    def fused_distances(pairs) -> tuple[np.ndarray, np.ndarray]:
        """Distances of unit fused vectors built with the fitted statistics (2.0 where a face is missing)."""
        usable = [p for p in pairs if vectors[p.a] is not None and vectors[p.b] is not None]
        a = member_vectors(np.stack([vectors[p.a] for p in usable]), dims)
        b = member_vectors(np.stack([vectors[p.b] for p in usable]), dims)
        scale = [row["weight"] / row["std"] for row in rows]
        score = sum(s * (x * y).sum(axis=1) for s, x, y in zip(scale, a, b, strict=True)) / sum(scale)
        d = np.sqrt(np.maximum(2 - 2 * score, 0))
        lost = [p.same for p in pairs if p not in usable]  # a missing face: distance 2, "different"
        return np.concatenate([d, np.full(len(lost), 2.0)]), np.array([p.same for p in usable] + lost)

    train_d, train_same = fused_distances(train)
    threshold = best_threshold(train_d, train_same)
    test_d, test_same = fused_distances(test)
    result = {
        "model": MODEL,
        "members": rows,
        "images": len(found),
        "train_accuracy": accuracy_at(train_d, train_same, threshold),
        "test_accuracy": accuracy_at(test_d, test_same, threshold),
    }
    for row in rows:
        print(f'    Member("{row["name"]}", weight={row["weight"]}, mean={row["mean"]}, std={row["std"]}),')
    print(f"pairsDevTrain {result['train_accuracy']:.4f}  pairsDevTest {result['test_accuracy']:.4f}  ({len(found)} images)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"fusion_{MODEL}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
