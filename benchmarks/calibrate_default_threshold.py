"""Choose a model's default verification threshold on LFW's pairsDevTrain (View 1, for model
selection; the evaluation pairs of pairs.txt are not used).

    python benchmarks/calibrate_default_threshold.py [--model dlib-resnet]

Prints the accuracy-optimal threshold (Euclidean distance between unit embeddings) with its
train accuracy and the accuracy it then gets on pairsDevTest; writes
benchmarks/results/default_threshold_<model>.json. The value goes into the model's spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, nearest_to_centre

from facesys.embed import Embedder
from facesys.evaluate.pairs import read_lfw_pairs
from facesys.evaluate.protocol import accuracy_at, best_threshold


def pair_distances(embedder: Embedder, pairs) -> tuple[np.ndarray, np.ndarray, int]:
    """Distances of the pairs (the face nearest each image's centre; a missing face counts as distance 2)."""
    files = sorted({p.a for p in pairs} | {p.b for p in pairs})
    vectors: dict[Path, np.ndarray | None] = {}
    for start in range(0, len(files), 64):
        chunk = files[start : start + 64]
        for f, faces in zip(chunk, embedder.embed(chunk), strict=True):
            vectors[f] = faces[nearest_to_centre([face.box for face in faces], (250, 250))].embedding if faces else None
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
    train_d, train_same, train_missing = pair_distances(embedder, read_lfw_pairs(lfw / "pairsDevTrain.txt"))
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
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"default_threshold_{args.model}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
