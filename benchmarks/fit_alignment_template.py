"""Fit the 5-point alignment templates that make MTCNN landmarks reproduce each model's chips.

dlib-resnet: dlib aligns with its own 5-point shape predictor, whose points (eye corners and the
base of the nose) differ from MTCNN's (eye centres, nose tip, mouth corners). For each image of
the fit set, this script runs dlib's own pipeline (HOG detector, 5-point predictor,
``get_face_chip_details(shape, 150, 0.25)`` as ``compute_face_descriptor`` uses it), maps the
MTCNN landmarks of the same face into dlib's 150x150 chip with dlib's chip mapping
(``get_mapping_to_chip``: the rotated chip rectangle's corners to the chip's corner pixels), and
averages them. Aligning MTCNN landmarks onto that mean with a least-squares similarity then
reproduces dlib's chip geometry.

facenet-*: facenet-pytorch crops the MTCNN box (margin 0) and resizes it to 160x160; the template
is the mean of the landmarks in that crop's coordinates.

Fit set: LFW people who appear in no pair of pairs.txt (so the evaluation pairs stay unseen),
``--images`` images drawn with a fixed seed; only faces both pipelines find are used.

    python benchmarks/fit_alignment_template.py --images 1500

prints the templates and their spread, and writes benchmarks/results/alignment_template.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, dlib_model_files, lfw_pair_people, nearest_to_centre

from facesys.vision.detect import FaceDetector
from facesys.vision.images import load_image


def dlib_chip_mapping(details) -> np.ndarray:
    """(2, 3) affine matrix image -> chip pixels, as dlib's ``get_mapping_to_chip``."""
    rect, angle = details.rect, details.angle
    cx, cy = (rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0
    c, s = np.cos(angle), np.sin(angle)

    def rotate(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy, cy + s * dx + c * dy

    src = np.array([rotate(rect.left(), rect.top()), rotate(rect.right(), rect.top()), rotate(rect.right(), rect.bottom())])
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float64)
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import dlib

    lfw = DATA / "lfw"
    excluded = lfw_pair_people(lfw / "pairs.txt")
    files = sorted(p for d in lfw.iterdir() if d.is_dir() and d.name not in excluded for p in d.glob("*.jpg"))
    random.Random(args.seed).shuffle(files)
    files = files[: args.images]

    _, sp5_path = dlib_model_files()
    hog = dlib.get_frontal_face_detector()
    sp5 = dlib.shape_predictor(str(sp5_path))
    detector = FaceDetector()

    dlib_points, facenet_points = [], []
    start = time.time()
    images = [load_image(f) for f in files]
    detections = detector.detect(images)
    for image, faces in zip(images, detections, strict=True):
        rects = hog(image, 1)
        if not rects or not faces:
            continue
        rect = rects[nearest_to_centre([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], image.shape)]
        face = faces[nearest_to_centre([f.box for f in faces], image.shape)]
        details = dlib.get_face_chip_details(sp5(image, rect), 150, 0.25)
        mapping = dlib_chip_mapping(details)
        chip_points = face.landmarks.astype(np.float64) @ mapping[:, :2].T + mapping[:, 2]
        if np.abs(chip_points - 75).max() > 75:  # the two detectors found different faces
            continue
        dlib_points.append(chip_points)
        x1, y1, x2, y2 = face.box
        facenet_points.append((face.landmarks - [x1, y1]) * [160 / (x2 - x1), 160 / (y2 - y1)])

    dlib_points, facenet_points = np.array(dlib_points), np.array(facenet_points)
    result = {
        "fit_set": f"{len(files)} LFW images of people in no pair of pairs.txt (seed {args.seed})",
        "faces_used": len(dlib_points),
        "seconds": round(time.time() - start, 1),
        "dlib-resnet": {
            "size": 150,
            "template": dlib_points.mean(0).round(3).tolist(),
            "std_px": dlib_points.std(0).round(2).tolist(),
        },
        "facenet": {
            "size": 160,
            "template": facenet_points.mean(0).round(3).tolist(),
            "std_px": facenet_points.std(0).round(2).tolist(),
        },
    }
    print(f"faces used: {result['faces_used']} of {len(files)} images ({result['seconds']} s)")
    print(f"{'model':<12} {'point':<12} {'x':>8} {'y':>8} {'std x':>6} {'std y':>6}")
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    for model in ("dlib-resnet", "facenet"):
        for name, (x, y), (sx, sy) in zip(names, result[model]["template"], result[model]["std_px"], strict=True):
            print(f"{model:<12} {name:<12} {x:8.3f} {y:8.3f} {sx:6.2f} {sy:6.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "alignment_template.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
