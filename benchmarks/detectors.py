"""The face detectors side by side on LFW, same images, same run: MTCNN (facesys's driver) and YuNet
(OpenCV Zoo's, through cv2.FaceDetectorYN), each feeding the same alignment and network (``--model``,
default dlib-resnet).

    FACESYS_THREADS=1 python benchmarks/detectors.py             # all of pairs.txt (7,701 images), ~12 min on 2 busy cores
    FACESYS_THREADS=1 python benchmarks/detectors.py --limit 40  # 40 pairs per fold: a quick look

Per detector, through ``facesys eval pairs``'s code (facesys/evaluate/experiments.py: the face nearest
the centre, pairs with a missing face called "different", the 10-fold protocol and the ROC):
- recall: share of the images in which a face is found;
- LFW 10-fold accuracy and TAR at FAR 1e-3 (landmark quality shows here: the chips are aligned on them);
- detection ms per image on the CPU (the detector's ``detect`` calls inside the pipeline, decoding
  and the network excluded), and its ratio to MTCNN's in the same run;
- the score of each image's centre face (percentiles: where the quality gates sit) and the distance
  of its landmarks from MTCNN's, in eye distances.
Run it with FACESYS_THREADS=1 on a shared machine (the thread count is reported). Writes
benchmarks/results/detectors.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, nearest_to_centre

from facesys import threads
from facesys.config import DETECTORS
from facesys.evaluate.experiments import EmbeddingCache, evaluate_pairs
from facesys.evaluate.pairs import read_lfw_pairs


class Timed:
    """A detector whose ``detect`` calls are timed; keeps each image's centre face (score, landmarks) by
    a digest of its pixels."""

    def __init__(self, detector):
        self.detector, self.name = detector, detector.name
        self.seconds, self.images, self.centre = 0.0, 0, {}

    def detect(self, images):
        started = time.perf_counter()
        found = self.detector.detect(images)
        self.seconds += time.perf_counter() - started
        self.images += len(images)
        for image, faces in zip(images, found, strict=True):
            face = faces[nearest_to_centre([f.box for f in faces], image.shape)] if faces else None
            key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
            self.centre[key] = None if face is None else (face.score, face.landmarks)
        return found


def limited(pairs: list, per_fold: int | None) -> list:
    """The first ``per_fold`` pairs of each fold, half same-person and half different (all: None)."""
    if per_fold is None:
        return pairs
    kept = []
    for fold in sorted({p.fold for p in pairs}):
        for same in (True, False):
            kept += [p for p in pairs if p.fold == fold and p.same == same][: per_fold // 2]
    return kept


def run_detector(name: str, pairs: list, model: str) -> tuple[dict, dict]:
    from facesys.vision.detect import create_detector
    from facesys.vision.embed import Embedder

    timed = Timed(create_detector(name))
    embedder = Embedder(model, detector=timed)
    embedder.faces([DATA / "lfw" / "AJ_Cook" / "AJ_Cook_0001.jpg"])  # warm-up, not counted
    timed.seconds, timed.images, timed.centre = 0.0, 0, {}
    started = time.perf_counter()
    report = evaluate_pairs(EmbeddingCache(embedder, face="center"), pairs)
    wall = time.perf_counter() - started
    scores = np.array([c[0] for c in timed.centre.values() if c is not None])
    row = {
        "images": report.images,
        "faces_found": report.images - report.images_without_face - report.unreadable_images,
        "recall": (report.images - report.images_without_face - report.unreadable_images) / report.images,
        "accuracy_mean": report.accuracy_mean,
        "accuracy_std": report.accuracy_std,
        "tar_at_far_1e-3": report.tar_at_far[1e-3][0],
        "auc": report.auc,
        "pairs_with_missing_face": report.pairs_with_missing_face,
        "detect_ms_per_image": 1e3 * timed.seconds / max(1, timed.images),
        "pipeline_ms_per_image": 1e3 * wall / report.images,
        "centre_score_percentiles": {f"p{q:g}": float(np.percentile(scores, q)) for q in (0, 1, 5, 50)} if len(scores) else {},
    }
    print(f"{name}: {row['faces_found']}/{row['images']} images, {row['detect_ms_per_image']:.1f} ms/image", file=sys.stderr)
    return row, timed.centre


def landmark_distance(ours: dict, mtcnn: dict) -> dict:
    """Per point, the mean distance of ``ours`` from MTCNN's landmarks in MTCNN's eye distances (images
    where both found a face)."""
    errors = []
    for key, a in ours.items():
        b = mtcnn.get(key)
        if a is not None and b is not None:
            eyes = np.linalg.norm(b[1][1] - b[1][0])
            errors.append(np.linalg.norm(a[1] - b[1], axis=1) / eyes)
    mean = np.mean(errors, axis=0)
    points = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
    return {"images": len(errors), **{p: float(v) for p, v in zip(points, mean, strict=True)}, "mean": float(mean.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="pairs per fold (half same, half different); default: all 600")
    parser.add_argument("--model", default="dlib-resnet", help="the network after each detector (default: dlib-resnet)")
    parser.add_argument("--out", type=Path, default=RESULTS / "detectors.json")
    args = parser.parse_args()
    pairs = limited(read_lfw_pairs(DATA / "lfw" / "pairs.txt"), args.limit)
    rows, centres = {}, {}
    load_before = os.getloadavg()
    for name in DETECTORS:
        rows[name], centres[name] = run_detector(name, pairs, args.model)
    for name in DETECTORS:
        rows[name]["detect_time_vs_mtcnn"] = rows[name]["detect_ms_per_image"] / rows["mtcnn"]["detect_ms_per_image"]
        if name != "mtcnn":
            rows[name]["landmarks_vs_mtcnn_eye_distances"] = landmark_distance(centres[name], centres["mtcnn"])

    images, count = rows["mtcnn"]["images"], threads.choose_threads()
    print(f"\nLFW pairs.txt: {len(pairs)} pairs, {images} images; {args.model}; CPU, {count} thread(s)")
    print("\n| detector | faces found | LFW 10-fold accuracy | TAR at FAR 1e-3 | detect ms/image | vs MTCNN | score p1 / p50 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        p = r["centre_score_percentiles"]
        print(
            f"| {name} | {r['faces_found']}/{r['images']} ({100 * r['recall']:.2f}%) | {100 * r['accuracy_mean']:.2f}% "
            f"± {100 * r['accuracy_std']:.2f} | {100 * r['tar_at_far_1e-3']:.2f}% | {r['detect_ms_per_image']:.1f} | "
            f"{r['detect_time_vs_mtcnn']:.2f}x | {p.get('p1', float('nan')):.3f} / {p.get('p50', float('nan')):.3f} |"
        )
    for name, r in rows.items():
        if "landmarks_vs_mtcnn_eye_distances" in r:
            print(f"\n{name} landmarks vs MTCNN (mean, eye distances): {r['landmarks_vs_mtcnn_eye_distances']}")
    import cv2
    import torch

    report = {
        "pairs": len(pairs),
        "pairs_per_fold": args.limit or 600,
        "model": args.model,
        "detectors": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "threads": threads.choose_threads(),
            "torch_threads": torch.get_num_threads(),
            "opencv": cv2.__version__,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
