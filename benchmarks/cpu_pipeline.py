"""CPU speed, facesys against face_recognition on the same LFW photos in the same run, plus the
wall time of the command line started cold.

    python benchmarks/cpu_pipeline.py                 # 240 photos, ~3 min on 2 cores
    python benchmarks/cpu_pipeline.py --images 400

Per face (in-process, after a warm-up of ``--warmup`` photos on both sides):
- face_recognition: ``face_encodings(image, [box])`` (its 5-point landmarks, chip extraction and
  the dlib network, num_jitters=1) on the box its HOG detector found; detection timed apart.
- facesys: ``Embedder.chips`` + ``embed_chips`` (alignment and the dlib-resnet port, batched as
  enrollment does); detection (``FaceDetector.detect``, batched) timed apart.
Enrollment, end to end (photo file -> stored face): face_recognition = ``load_image_file`` +
``face_locations`` + ``face_encodings`` per photo (it stores nothing; a lower bound); facesys =
``FaceSystem.enroll_many`` into a new gallery (decode, detect, quality checks, align, embed,
crop, SQLite commit per photo).
Command line (new processes): ``facesys --help``, ``facesys gallery stats`` and ``facesys verify a b``,
each run three times (the first after the benchmark's own work, so files are in the page cache).
Writes benchmarks/results/cpu_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, ROOT

from facesys.datasets import people_in


def lfw_photos(count: int) -> list[Path]:
    """``count`` LFW photos, one per person, people in sorted order (deterministic)."""
    photos = [ps[0] for ps in people_in(DATA / "lfw").values()]
    return photos[:: max(1, len(photos) // count)][:count]


def time_face_recognition(warm: list[Path], photos: list[Path]) -> dict:
    import face_recognition

    for photo in warm:
        image = face_recognition.load_image_file(photo)
        face_recognition.face_encodings(image, face_recognition.face_locations(image)[:1])
    load_s = detect_s = embed_s = 0.0
    faces = 0
    for photo in photos:
        started = time.perf_counter()
        image = face_recognition.load_image_file(photo)
        loaded = time.perf_counter()
        boxes = face_recognition.face_locations(image)  # HOG, upsample 1: its defaults
        detected = time.perf_counter()
        face_recognition.face_encodings(image, boxes[:1])  # one face per photo, as enrollment
        embedded = time.perf_counter()
        load_s += loaded - started
        detect_s += detected - loaded
        embed_s += embedded - detected
        faces += bool(boxes)
    return _summary(len(photos), faces, load_s, detect_s, embed_s, load_s + detect_s + embed_s)


def time_facesys(warm: list[Path], photos: list[Path], batch: int) -> dict:
    from facesys.system import FaceSystem
    from facesys.vision.embed import Embedder
    from facesys.vision.images import load_image

    embedder = Embedder()
    for start in range(0, len(warm), batch):
        embedder.embed(warm[start : start + batch])
    load_s = detect_s = embed_s = 0.0
    faces = 0
    for start in range(0, len(photos), batch):
        started = time.perf_counter()
        images = [load_image(p) for p in photos[start : start + batch]]
        loaded = time.perf_counter()
        detections = embedder.detector.detect(images)
        detected = time.perf_counter()
        chips = [embedder.chips(image, found[:1]) for image, found in zip(images, detections, strict=True) if found]
        embedder.embed_chips(np.concatenate(chips))
        embedded = time.perf_counter()
        load_s += loaded - started
        detect_s += detected - loaded
        embed_s += embedded - detected
        faces += len(chips)

    with tempfile.TemporaryDirectory() as folder:
        system = FaceSystem(Path(folder) / "gallery", embedder=embedder)
        started = time.perf_counter()
        report = system.enroll_many([(p.parent.name, p) for p in photos])  # batches of PHOTO_BATCH photos
        enroll_s = time.perf_counter() - started
        started = time.perf_counter()
        for a, b in zip(photos[:10], photos[10:20], strict=True):
            system.verify(a, b)
        verify_s = (time.perf_counter() - started) / 10
    summary = _summary(len(photos), faces, load_s, detect_s, embed_s, enroll_s)
    summary["enrolled"] = report.count("enrolled")
    summary["verify_two_photos_ms"] = round(verify_s * 1e3, 1)
    return summary


def _summary(photos: int, faces: int, load_s: float, detect_s: float, embed_s: float, enroll_s: float) -> dict:
    return {
        "photos": photos,
        "faces": faces,
        "load_ms_per_photo": round(load_s / photos * 1e3, 2),
        "detect_ms_per_photo": round(detect_s / photos * 1e3, 2),
        "embed_ms_per_face": round(embed_s / max(faces, 1) * 1e3, 2),
        "enroll_photos_per_s": round(photos / enroll_s, 2),
    }


def cli_times(photos: list[Path], repeats: int = 3) -> dict:
    """Wall seconds of new ``facesys`` processes (``python -m facesys.cli``, what the ``facesys`` script runs)."""
    with tempfile.TemporaryDirectory() as folder:
        gallery = Path(folder) / "gallery"
        commands = {
            "facesys --help": ["--help"],
            "facesys verify a b": ["verify", str(photos[0]), str(photos[1])],
            "facesys gallery stats": ["--gallery", str(gallery), "gallery", "stats"],
        }
        subprocess.run(
            [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), "enroll", "--name", "someone", str(photos[0])],
            check=True,
            capture_output=True,
        )
        out = {}
        for name, arguments in commands.items():
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "facesys.cli", *arguments], capture_output=True, cwd=ROOT)
                seconds.append(round(time.perf_counter() - started, 3))
                if done.returncode not in (0, 1):
                    raise SystemExit(f"{name} failed: {done.stderr.decode()}")
            out[name] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="photos per facesys batch")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_pipeline.json")
    args = parser.parse_args()

    import torch

    photos = lfw_photos(args.images + args.warmup)
    warm, measured = photos[: args.warmup], photos[args.warmup :]
    rows = {"face_recognition": time_face_recognition(warm, measured), "facesys": time_facesys(warm, measured, args.batch)}
    fr, fs = rows["face_recognition"], rows["facesys"]
    ratios = {
        "embed_per_face": round(fr["embed_ms_per_face"] / fs["embed_ms_per_face"], 2),
        "detect_per_photo": round(fr["detect_ms_per_photo"] / fs["detect_ms_per_photo"], 2),
        "enroll": round(fs["enroll_photos_per_s"] / fr["enroll_photos_per_s"], 2),
    }
    cli = cli_times(measured)

    print(f"{len(measured)} LFW photos (250x250) after {args.warmup} warm-up photos; torch threads {torch.get_num_threads()}")
    print("\n| | face_recognition | facesys | facesys speed-up |")
    print("|---|---|---|---|")
    print(f"| embed, ms per face | {fr['embed_ms_per_face']} | {fs['embed_ms_per_face']} | {ratios['embed_per_face']}x |")
    print(f"| detect, ms per photo | {fr['detect_ms_per_photo']} | {fs['detect_ms_per_photo']} | {ratios['detect_per_photo']}x |")
    print(f"| enroll end to end, photos/s | {fr['enroll_photos_per_s']} | {fs['enroll_photos_per_s']} | {ratios['enroll']}x |")
    print(f"| faces found | {fr['faces']} | {fs['faces']} | |")
    print(f"| facesys verify of two photos, in-process, model loaded | | {fs['verify_two_photos_ms']} ms | |")
    print("\n| command (new process) | wall s, 3 runs |")
    print("|---|---|")
    for name, seconds in cli.items():
        print(f"| `{name}` | {' / '.join(str(s) for s in seconds)} |")
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "torch_threads": torch.get_num_threads()},
        "photos": len(measured),
        "warmup": args.warmup,
        "rows": rows,
        "speed_up": ratios,
        "cli_seconds": cli,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
