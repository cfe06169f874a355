"""LFW 10-fold verification: facesys (MTCNN + fitted alignment + dlib-resnet port) against
face_recognition (dlib HOG detector + dlib 5-point alignment + the same dlib weights), same pairs,
same protocol, same run.

    python benchmarks/lfw_vs_face_recognition.py            # full pairs.txt, ~25 min on 2 cores
    python benchmarks/lfw_vs_face_recognition.py --folds 1  # quick look

Protocol: the official pairs.txt (10 folds x 600 pairs); per fold the threshold that is best on
the other 9 folds is applied to the held-out fold; the accuracy is the mean of the 10 held-out
accuracies. Face choice, for both: the detected face nearest the image centre (LFW's labelled
person is centred). When a detector finds no face:
- face_recognition: the whole image is used as the face box (as in the reference measurement);
- facesys: MTCNN is run again with lower thresholds; if it still finds none, the mean landmarks of
  all faces found in the set are used (LFW images are roughly aligned). Both counts are printed.

Writes benchmarks/results/lfw_vs_face_recognition.json; embeddings are cached in
benchmarks/results/cache/ (``--no-cache`` recomputes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, nearest_to_centre

from facesys.evaluate.pairs import read_lfw_pairs
from facesys.evaluate.protocol import kfold_accuracy


def facesys_embeddings(files: list[Path], flip: bool) -> tuple[np.ndarray, dict]:
    from facesys.vision.align import align_face
    from facesys.vision.detect import FaceDetector
    from facesys.vision.embed import Embedder
    from facesys.vision.images import load_image

    embedder = Embedder("dlib-resnet", flip=flip, detector="mtcnn")  # face_recognition's weights
    retry = FaceDetector(thresholds=(0.3, 0.4, 0.5), min_score=0.5)
    landmarks: list[np.ndarray | None] = []
    images = []
    stats = {"no_face_first_pass": 0, "found_on_retry": 0, "mean_landmarks_used": 0}
    for start in range(0, len(files), 64):
        batch = [load_image(f) for f in files[start : start + 64]]
        for image, faces in zip(batch, embedder.detector.detect(batch), strict=True):
            if not faces:
                stats["no_face_first_pass"] += 1
                faces = retry.detect([image])[0]
                stats["found_on_retry"] += bool(faces)
            landmarks.append(faces[nearest_to_centre([f.box for f in faces], image.shape)].landmarks if faces else None)
        images.extend(batch)
        print(f"\rfacesys detect {len(images)}/{len(files)}", end="", file=sys.stderr)
    template = np.asarray(embedder.spec.template)
    prior = np.mean([p for p in landmarks if p is not None], axis=0)
    vectors = np.zeros((len(files), embedder.spec.embedding_dim), np.float32)
    for start in range(0, len(files), 64):
        chips = []
        for image, points in zip(images[start : start + 64], landmarks[start : start + 64], strict=True):
            if points is None:
                stats["mean_landmarks_used"] += 1
                points = prior
            chips.append(align_face(image, points, template, embedder.spec.input_size))
        vectors[start : start + len(chips)] = embedder.embed_chips(np.stack(chips))
        print(f"\rfacesys embed {start + len(chips)}/{len(files)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return vectors, stats


def face_recognition_embeddings(files: list[Path]) -> tuple[np.ndarray, dict]:
    import face_recognition

    vectors = np.zeros((len(files), 128), np.float32)
    stats = {"no_face_whole_image_used": 0}
    for i, f in enumerate(files):
        image = face_recognition.load_image_file(f)
        boxes = face_recognition.face_locations(image)  # HOG, upsample 1: its defaults
        if boxes:
            top, right, bottom, left = boxes[nearest_to_centre([(b[3], b[0], b[1], b[2]) for b in boxes], image.shape)]
            location = (top, right, bottom, left)
        else:
            stats["no_face_whole_image_used"] += 1
            location = (0, image.shape[1], image.shape[0], 0)
        vectors[i] = face_recognition.face_encodings(image, [location])[0]  # 5-point model, num_jitters=1
        if i % 100 == 0:
            print(f"\rface_recognition {i}/{len(files)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return vectors, stats


def cached(name: str, files: list[Path], compute, use_cache: bool) -> tuple[np.ndarray, dict, float]:
    """Embeddings of ``files`` by ``compute``, from the cache when it holds exactly these files."""
    path = RESULTS / "cache" / f"{name}.npz"
    keys = np.array([str(f) for f in files])
    if use_cache and path.is_file():
        data = np.load(path, allow_pickle=False)
        if np.array_equal(data["files"], keys):
            return data["vectors"], json.loads(str(data["stats"])), float(data["seconds"])
    start = time.perf_counter()
    vectors, stats = compute(files)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, files=keys, vectors=vectors, stats=json.dumps(stats), seconds=seconds)
    return vectors, stats, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=10, help="evaluate only the first N folds")
    parser.add_argument("--flip", action="store_true", help="facesys with flip test-time augmentation")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()

    pairs = [p for p in read_lfw_pairs(DATA / "lfw" / "pairs.txt") if p.fold < args.folds]
    files = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {f: i for i, f in enumerate(files)}
    a = np.array([index[p.a] for p in pairs])
    b = np.array([index[p.b] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(pairs)} pairs, {len(files)} unique images, {os.cpu_count()} CPUs")

    methods = {
        "facesys" + ("+flip" if args.flip else ""): lambda fs: facesys_embeddings(fs, args.flip),
        "face_recognition": face_recognition_embeddings,
    }
    report = {"pairs": len(pairs), "images": len(files), "methods": {}}
    per_fold = {}
    for name, compute in methods.items():
        vectors, stats, seconds = cached(name, files, compute, not args.no_cache)
        distances = np.linalg.norm(vectors[a] - vectors[b], axis=1)
        result = kfold_accuracy(distances, same, folds)
        per_fold[name] = result.accuracies
        report["methods"][name] = {
            "accuracy_mean": result.mean,
            "accuracy_std": result.std,
            "fold_accuracies": result.accuracies.tolist(),
            "fold_thresholds": [f.threshold for f in result.folds],
            "embedding_seconds": round(seconds, 1),
            **stats,
        }
    ours, theirs = list(per_fold)
    diff = per_fold[ours] - per_fold[theirs]
    report["paired_difference"] = {
        "per_fold_points": (100 * diff).round(3).tolist(),
        "mean_points": float(100 * diff.mean()),
        "std_points": float(100 * diff.std()),
        "folds_better": int((diff > 0).sum()),
        "folds_worse": int((diff < 0).sum()),
    }

    print(f"\n{'method':<18} {'accuracy':>10} {'± std':>7}  {'time s':>7}  no-face handling")
    for name, r in report["methods"].items():
        extra = ", ".join(f"{k}={v}" for k, v in r.items() if k.startswith(("no_face", "found", "mean_land")))
        print(
            f"{name:<18} {100 * r['accuracy_mean']:9.2f}% {100 * r['accuracy_std']:6.2f}  {r['embedding_seconds']:7.0f}  {extra}"
        )
    print(f"\nper-fold difference ({ours} - {theirs}), points: {report['paired_difference']['per_fold_points']}")
    d = report["paired_difference"]
    print(
        f"mean {d['mean_points']:+.3f} ± {d['std_points']:.3f} points; "
        f"better in {d['folds_better']} folds, worse in {d['folds_worse']}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"lfw_vs_face_recognition{'_flip' if args.flip else ''}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
