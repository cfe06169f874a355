"""GPU throughput: facesys against facenet-pytorch's own eager fp32 path, same GPU, same run.

    python benchmarks/gpu.py                       # on a machine with a CUDA GPU
    python benchmarks/gpu.py --device cpu --images 32 --faces 256   # a quick check that it runs

Embedding (faces/s; uint8 chips on the host -> unit vectors on the host, transfers included):
- baseline: facenet-pytorch ``InceptionResnetV1`` in fp32, eager, NCHW, batch ``--batch``;
- facesys: ``Embedder("facenet-vggface2")`` (the same network; weights are random because none can
  be downloaded here, which does not change the speed) with fp32 and with bf16 autocast +
  channels-last, and the default model ``dlib-resnet`` fp32 and bf16.
  For each 16-bit mode, the lowest cosine to its fp32 embeddings on real chips is reported
  (dlib-resnet has real weights, so that number is meaningful; for the random facenet it is not).
Detection (images/s on ``--images`` LFW photos of 250x250 in batches of ``--detect-batch``):
- baseline: facenet-pytorch ``MTCNN(keep_all=True).detect``;
- facesys: ``FaceDetector`` (our batched MTCNN driver over the same P/R/O-Net weights).
Every timing is the median of ``--repeats`` runs after a warm-up. Writes benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.datasets import people_in
from facesys.vision.images import load_image


def timed(function, repeats: int, sync) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` runs, after one warm-up run."""
    function()
    sync()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        sync()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def lfw_images(count: int) -> list[np.ndarray]:
    photos = [p for ps in people_in(DATA / "lfw").values() for p in ps[:1]]
    return [load_image(p) for p in photos[:: max(1, len(photos) // count)][:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--detect-batch", type=int, default=200)
    parser.add_argument("--faces", type=int, default=8192, help="chips per embedding run")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args()

    import torch
    from facenet_pytorch import MTCNN, InceptionResnetV1

    from facesys.vision.detect import FaceDetector
    from facesys.vision.embed import Embedder

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    images = lfw_images(args.images)
    stacked = np.stack(images)
    rows = []

    # -- detection ----------------------------------------------------------------------------
    baseline = MTCNN(keep_all=True, device=args.device)
    ours = FaceDetector(device=args.device, batch_size=args.detect_batch)

    def detect_baseline() -> None:
        for start in range(0, len(stacked), args.detect_batch):
            baseline.detect(stacked[start : start + args.detect_batch])

    for name, run in (("facenet-pytorch MTCNN", detect_baseline), ("facesys FaceDetector", lambda: ours.detect(images))):
        seconds = timed(run, args.repeats, sync)
        rows.append({"task": "detect", "path": name, "per_second": round(len(images) / seconds, 1), "unit": "images/s"})

    # -- embedding ----------------------------------------------------------------------------
    found = ours.detect(images)
    real = {size: [] for size in (150, 160)}
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "facenet-random.pt"
        torch.save(InceptionResnetV1(classify=False, num_classes=8631).state_dict(), weights)
        embedders = {
            ("dlib-resnet", precision): Embedder("dlib-resnet", device=args.device, precision=precision, detector=ours)
            for precision in ("fp32", "bf16")
        } | {
            ("facenet-vggface2", precision): Embedder(
                "facenet-vggface2", weights=str(weights), device=args.device, precision=precision, detector=ours
            )
            for precision in ("fp32", "bf16")
        }
    for embedder in embedders.values():
        size = embedder.spec.input_size
        if not real[size]:
            real[size] = [c for image, faces in zip(images, found, strict=True) for c in embedder.chips(image, faces[:1])]
    for embedder in embedders.values():
        embedder.batch_size = args.batch

    network = InceptionResnetV1(classify=False, num_classes=8631).to(args.device).eval()
    network.load_state_dict(embedders[("facenet-vggface2", "fp32")].model.backbone.net.state_dict())
    chips160 = np.stack([real[160][i % len(real[160])] for i in range(args.faces)])

    def embed_baseline() -> None:
        with torch.inference_mode():
            for start in range(0, len(chips160), args.batch):
                x = torch.from_numpy(chips160[start : start + args.batch]).to(args.device).permute(0, 3, 1, 2).float()
                network((x - 127.5) / 128.0).cpu()

    seconds = timed(embed_baseline, args.repeats, sync)
    rows.append(
        {"task": "embed", "path": "facenet-pytorch InceptionResnetV1 fp32 eager", "per_second": round(args.faces / seconds, 1)}
    )
    for (model, precision), embedder in embedders.items():
        size = embedder.spec.input_size
        chips = np.stack([real[size][i % len(real[size])] for i in range(args.faces)])
        seconds = timed(lambda e=embedder, c=chips: e.embed_chips(c), args.repeats, sync)
        row = {"task": "embed", "path": f"facesys {model} {precision}", "per_second": round(args.faces / seconds, 1)}
        if precision != "fp32":
            reference = embedders[(model, "fp32")].embed_chips(np.stack(real[size]))
            low = embedder.embed_chips(np.stack(real[size]))
            row["min_cosine_vs_fp32"] = round(float(np.sum(reference * low, axis=1).min()), 5)
        rows.append(row)

    print(f"device: {device_name}; {len(images)} LFW images, {args.faces} chips per embedding run, batch {args.batch}")
    print("\n| task | path | per second | vs facenet-pytorch | min cosine vs fp32 |")
    print("|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["task"] == row["task"])["per_second"]
        row["speed_up"] = round(row["per_second"] / base, 2)
        unit = row.get("unit", "faces/s")
        cosine = row.get("min_cosine_vs_fp32", "")
        print(f"| {row['task']} | {row['path']} | {row['per_second']} {unit} | {row['speed_up']}x | {cosine} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device_name, "images": len(images), "faces": args.faces, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
