"""CPU check of facesys' batched MTCNN driver against facenet-pytorch's MTCNN, same photos, same run.

    python benchmarks/mtcnn_cpu_check.py              # 200 LFW photos (250x250), batches of 16
    python benchmarks/mtcnn_cpu_check.py --images 64 --repeats 1

Both detectors get the same (16, 250, 250, 3) uint8 batches: facenet-pytorch
``MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7]).detect(batch, landmarks=True)``
and ``facesys.vision.mtcnn.BatchedMTCNN().detect(batch)``. After a warm-up batch each, the whole set is
timed ``--repeats`` times, the two detectors taking turns; images/s is from the median pass.
Agreement: faces paired by IoU, then the largest and median absolute differences of box corners,
landmarks (pixels) and scores, and the images whose face counts differ (all faces, and faces with
score >= 0.9). Prints a table and writes benchmarks/results/mtcnn_cpu_check.json.

    python benchmarks/mtcnn_cpu_check.py --threads-check [--burners 2]   # ~1-3 min

Thread policy check (issue 25): ``FaceDetector.detect`` called directly (outside the photo workers),
one image per call and ``--batch`` images per call, in a new process per setting
(``FACESYS_THREADS=1``, ``=2``, unset = automatic), the settings taking turns ``--repeats`` times,
optionally beside ``--burners`` CPU-burning processes. Prints ms per image (median over the rounds),
CPU ms per image, torch's thread count and the load; writes benchmarks/results/mtcnn_threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.datasets import people_in
from facesys.vision.images import load_image


def lfw_images(count: int) -> np.ndarray:
    """``count`` LFW photos (250x250), one per person, spread over the sorted names (deterministic)."""
    photos = [ps[0] for ps in people_in(DATA / "lfw").values()]
    return np.stack([load_image(p) for p in photos[:: max(1, len(photos) // count)][:count]])


def facenet_faces(mtcnn, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    boxes, scores, points = mtcnn.detect(batch, landmarks=True)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    return [
        empty if b is None else (np.asarray(b, np.float32), np.asarray(s, np.float32), np.asarray(p, np.float32))
        for b, s, p in zip(boxes, scores, points, strict=True)
    ]


def run_all(detect, images: np.ndarray, batch: int) -> tuple[float, list]:
    started = time.perf_counter()
    faces = [face for start in range(0, len(images), batch) for face in detect(images[start : start + batch])]
    return time.perf_counter() - started, faces


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def agreement(ours: list, theirs: list) -> dict:
    box_d, point_d, score_d = [], [], []
    count_mismatch = confident_mismatch = faces = 0
    for (b, s, p), (rb, rs, rp) in zip(ours, theirs, strict=True):
        faces += len(rb)
        count_mismatch += len(b) != len(rb)
        confident_mismatch += (s >= 0.9).sum() != (rs >= 0.9).sum()
        if not len(b) or not len(rb):
            continue
        overlap = iou(rb, b)
        for i, j in enumerate(overlap.argmax(1)):
            if overlap[i, j] > 0.5:
                box_d.append(np.abs(b[j] - rb[i]).max())
                point_d.append(np.abs(p[j] - rp[i]).max())
                score_d.append(abs(float(s[j]) - float(rs[i])))

    def stats(values: list) -> dict:
        return {"max": float(np.max(values)), "median": float(np.median(values))} if values else {}

    return {
        "facenet_faces": faces,
        "faces_paired": len(box_d),
        "count_mismatch_images": int(count_mismatch),
        "count_mismatch_images_score_ge_0.9": int(confident_mismatch),
        "box_corner_abs_diff_px": stats(box_d),
        "landmark_abs_diff_px": stats(point_d),
        "score_abs_diff": stats(score_d),
        "bitwise_identical_pairs": int(sum(d == 0 for d in box_d)),
    }


THREAD_SETTINGS = {"FACESYS_THREADS=1": "1", "FACESYS_THREADS=2": "2", "automatic (unset)": None}


def threads_worker(images: int, batch: int) -> None:
    """Runs in a new process: ms and CPU ms per image of direct ``FaceDetector.detect`` calls; one JSON line."""
    import torch

    from facesys.vision.detect import FaceDetector

    pictures = list(lfw_images(images))
    detector = FaceDetector()
    detector.detect(pictures[:batch])  # warm-up
    out = {}
    for mode, size in (("single", 1), ("batch", batch)):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(pictures), size):
            detector.detect(pictures[start : start + size])
        out[f"{mode}_ms"] = (time.perf_counter() - wall) / len(pictures) * 1e3
        out[f"{mode}_cpu_ms"] = (time.process_time() - cpu) / len(pictures) * 1e3
    running = Path("/proc/loadavg").read_text().split()[3]
    print(json.dumps(out | {"torch_threads": torch.get_num_threads(), "running": running, "load1": os.getloadavg()[0]}))


def threads_check(args: argparse.Namespace) -> None:
    """Fixed thread counts against the automatic one, direct detect calls, settings taking turns."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    runs: dict[str, list[dict]] = {name: [] for name in THREAD_SETTINGS}
    try:
        for _ in range(args.repeats):
            for name, value in THREAD_SETTINGS.items():
                env = {
                    k: v
                    for k, v in os.environ.items()
                    if k not in ("FACESYS_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                }
                env |= {"FACESYS_THREADS": value} if value else {}
                command = [sys.executable, __file__, "--threads-worker", "--images", str(args.images), "--batch", str(args.batch)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(name, runs[name][-1], flush=True)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    keys = ("single_ms", "single_cpu_ms", "batch_ms", "batch_cpu_ms")
    table = {name: {key: round(statistics.median(r[key] for r in rs), 1) for key in keys} for name, rs in runs.items()}
    print(f"\n{args.images} LFW images, direct FaceDetector.detect, {args.burners} burners, median of {args.repeats} rounds")
    print(f"{'setting':<22}{'1/call ms':>10}{'cpu ms':>8}{f'{args.batch}/call ms':>12}{'cpu ms':>8}  load (1 min) per round")
    for name, row in table.items():
        loads = ", ".join(f"{r['load1']:.1f}" for r in runs[name])
        print(f"{name:<22}{row['single_ms']:>10}{row['single_cpu_ms']:>8}{row['batch_ms']:>12}{row['batch_cpu_ms']:>8}  {loads}")
    report = {
        "images": args.images,
        "batch": args.batch,
        "burners": args.burners,
        "cpus": os.cpu_count(),
        "median": table,
        "runs": runs,
    }
    out = args.out or RESULTS / "mtcnn_threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="default 200 (32 with --threads-check)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads-check", action="store_true", help="fixed thread counts against the automatic one")
    parser.add_argument("--burners", type=int, default=0, help="CPU-burning processes beside --threads-check")
    parser.add_argument("--threads-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads_worker or args.threads_check:
        args.images = args.images or 32
        if args.threads_worker:
            threads_worker(args.images, args.batch)
        else:
            threads_check(args)
        return
    args.images = args.images or 200
    args.out = args.out or RESULTS / "mtcnn_cpu_check.json"

    import torch
    from facenet_pytorch import MTCNN

    from facesys.vision.mtcnn import BatchedMTCNN

    images = lfw_images(args.images)
    facenet = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], device="cpu")
    ours = BatchedMTCNN(device="cpu")
    detectors = {"facenet-pytorch MTCNN.detect": lambda b: facenet_faces(facenet, b), "facesys BatchedMTCNN.detect": ours.detect}
    for detect in detectors.values():
        detect(images[: args.batch])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    faces = {}
    for _ in range(args.repeats):
        for name, detect in detectors.items():
            elapsed, faces[name] = run_all(detect, images, args.batch)
            seconds[name].append(elapsed)

    speed = {
        name: {"seconds": statistics.median(s), "images_per_s": len(images) / statistics.median(s), "all_seconds": s}
        for name, s in seconds.items()
    }
    reference, mine = (faces[name] for name in detectors)
    report = {
        "images": len(images),
        "image_size": list(images.shape[1:3]),
        "batch": args.batch,
        "repeats": args.repeats,
        "speed": speed,
        "speedup": speed["facesys BatchedMTCNN.detect"]["images_per_s"] / speed["facenet-pytorch MTCNN.detect"]["images_per_s"],
        "agreement": agreement(mine, reference),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_after": os.getloadavg(),
        },
    }

    print(f"{len(images)} LFW images {images.shape[1]}x{images.shape[2]}, batches of {args.batch}, CPU, median of {args.repeats}")
    print(f"{'detector':<32}{'images/s':>10}{'seconds':>10}")
    for name, row in speed.items():
        print(f"{name:<32}{row['images_per_s']:>10.1f}{row['seconds']:>10.2f}")
    print(f"speed-up {report['speedup']:.2f}x")
    agree = report["agreement"]
    paired, identical = agree["faces_paired"], agree["bitwise_identical_pairs"]
    print(f"faces: facenet {agree['facenet_faces']}, paired {paired}, with bitwise identical boxes {identical}")
    mismatch, confident = agree["count_mismatch_images"], agree["count_mismatch_images_score_ge_0.9"]
    print(f"images with a different face count: {mismatch} (faces with score >= 0.9: {confident})")
    for key in ("box_corner_abs_diff_px", "landmark_abs_diff_px", "score_abs_diff"):
        values = agree[key]
        print(f"{key:<26} max {values.get('max', float('nan')):.3g}  median {values.get('median', float('nan')):.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
