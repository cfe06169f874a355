"""Every model side by side on the same images, and the default chosen from the table.

    python benchmarks/models.py [--models dlib-resnet sface dlib+sface] [--detectors yunet mtcnn] [--limit N]

Each detector runs once per image and feeds every model, so within a detector the models differ
only in their network. Per model and detector:
- LFW 10-fold verification accuracy (pairs.txt, face nearest the centre) and TAR at FAR 1e-3;
- open-set identification on AT&T and Yale (``facesys eval identify`` defaults: 2 photos enrolled,
  half the people never enrolled, seed 0, largest face): share of probes named correctly and of
  strangers rejected at the model's default threshold;
- the demographic false-match differential: LFW's East and Southeast Asian people
  (benchmarks/data/lfw_east_southeast_asian.txt, up to 3 photos each) against 3 random groups of as
  many other LFW people with 2+ photos (seeds 0-2), at the thresholds where 0.1% and 0.5% of the
  random groups' impostor pairs match (facesys/evaluate/demographics.py);
- embedding ms per face (aligned chips, batched as facesys embeds) and end-to-end ms per image
  (decode, detect, align, embed: Embedder.faces) on this machine, each also as a ratio to the
  first model measured in the same run.
A row "w_dlib 0.2" re-weights the fused model's own member vectors (not a registered model; no
threshold table, so no open-set columns) to show the accuracy/differential trade-off.

The default model is the most accurate on LFW (10-fold, then TAR at FAR 1e-3) among those whose
differential is at most MAX_DIFFERENTIAL at both rates, through each detector; the default detector
is, for that model, the fastest end to end whose LFW accuracy is within one fold standard deviation
of the best detector's. Prints the table and writes benchmarks/results/models.json.
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
from _common import DATA, RESULTS

from facesys.datasets import people_in
from facesys.decide.match import ThresholdPolicy
from facesys.evaluate.demographics import false_match_differential
from facesys.evaluate.experiments import EmbeddingCache, evaluate_identification, evaluate_pairs, split_identification
from facesys.evaluate.pairs import read_lfw_pairs
from facesys.models import get_model_spec
from facesys.models.fusion import member_vectors
from facesys.vision.detect import create_detector, pick_faces
from facesys.vision.embed import Embedder
from facesys.vision.images import load_image

MODELS = ("dlib-resnet", "sface", "dlib+sface")
DETECTORS = ("yunet", "mtcnn")
MAX_DIFFERENTIAL = 5.0
RATES = (1e-3, 5e-3)
GROUP_FILE = Path(__file__).resolve().parent / "data" / "lfw_east_southeast_asian.txt"
PHOTOS_PER_PERSON = 3
REWEIGHTED = 0.2  # w_dlib of the re-weighted fusion row


def group_people(lfw: Path) -> tuple[dict[str, list[Path]], list[dict[str, list[Path]]]]:
    """(the Asian group, three random reference groups of as many people): name -> up to 3 photos."""
    listed = [line.strip() for line in GROUP_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    everyone = {name: photos for name, photos in people_in(lfw).items() if len(photos) >= 2}
    group = {name: everyone[name][:PHOTOS_PER_PERSON] for name in listed if name in everyone}
    others = sorted(set(everyone) - set(listed))
    references = []
    for seed in range(3):
        chosen = random.Random(seed).sample(others, len(group))
        references.append({name: everyone[name][:PHOTOS_PER_PERSON] for name in chosen})
    return group, references


def embed_all(embedders: dict[str, Embedder], faces: dict[Path, str], batch: int = 16) -> dict[str, dict]:
    """model -> path -> (D,) vector of the chosen face (``faces``: path -> 'center' or 'largest'), None without one."""
    detector = next(iter(embedders.values())).detector
    vectors: dict[str, dict[Path, np.ndarray | None]] = {name: {} for name in embedders}
    paths = sorted(faces)
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        images = [load_image(p) for p in chunk]
        found = detector.detect(images)
        picked = [pick_faces(f, image.shape, faces[p])[:1] for p, f, image in zip(chunk, found, images, strict=True)]
        for name, embedder in embedders.items():
            chips = [embedder.chips(image, face) for image, face in zip(images, picked, strict=True) if face]
            out = iter(embedder.embed_chips(np.concatenate(chips)) if chips else [])
            for path, face in zip(chunk, picked, strict=True):
                vectors[name][path] = next(out) if face else None
        print(f"\r{start + len(chunk)}/{len(paths)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return vectors


def timings(embedders: dict[str, Embedder], photos: list[Path], rounds: int = 3) -> dict[str, dict[str, float]]:
    """Per model: embedding ms/face (chips of ``photos``) and end-to-end ms/image (Embedder.faces), the
    best of ``rounds``; the models take turns within each round, so a burst of load elsewhere hits all."""
    images = [load_image(p) for p in photos]
    chips = {}
    for name, embedder in embedders.items():
        detections = embedder.detector.detect(images)
        chips[name] = np.concatenate([embedder.chips(image, d[:1]) for image, d in zip(images, detections, strict=True) if d])
        embedder.embed_chips(chips[name][:8])  # warm up
    best: dict[str, dict[str, float]] = {name: {"embed": np.inf, "end_to_end": np.inf} for name in embedders}
    for _ in range(rounds):
        for name, embedder in embedders.items():
            embed = _seconds(lambda e=embedder, c=chips[name]: e.embed_chips(c)) / len(chips[name])
            end_to_end = _seconds(lambda e=embedder: e.faces(photos, select="largest")) / len(photos)
            best[name] = {"embed": min(best[name]["embed"], embed), "end_to_end": min(best[name]["end_to_end"], end_to_end)}
    return {
        name: {"embed_ms_per_face": 1e3 * b["embed"], "end_to_end_ms_per_image": 1e3 * b["end_to_end"]}
        for name, b in best.items()
    }


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def differential(vectors: dict[Path, np.ndarray | None], group, references) -> dict[str, float]:
    def stacked(people: dict[str, list[Path]]) -> dict[str, np.ndarray]:
        found = {name: [vectors[p] for p in photos if vectors[p] is not None] for name, photos in people.items()}
        return {name: np.stack(v) for name, v in found.items() if v}

    rows = false_match_differential(stacked(group), [stacked(r) for r in references], RATES)
    return {f"ratio_at_{row.rate:g}": row.ratio for row in rows} | {f"group_fmr_at_{row.rate:g}": row.group_rate for row in rows}


def reweighted(fused: dict[Path, np.ndarray | None], weight: float) -> dict[Path, np.ndarray | None]:
    """The fused model's vectors re-weighted to ``weight`` on dlib (statistics kept)."""
    from facesys.models.dlib_sface import MEMBERS

    dims = [get_model_spec(m.name).embedding_dim for m in MEMBERS]
    scales = [(w / m.std) ** 0.5 for w, m in zip((weight, 1 - weight), MEMBERS, strict=True)]
    out = {}
    for path, vector in fused.items():
        if vector is None:
            out[path] = None
            continue
        parts = member_vectors(vector[None], dims)
        joined = np.concatenate([s * p[0] for s, p in zip(scales, parts, strict=True)])
        out[path] = (joined / np.linalg.norm(joined)).astype(np.float32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--limit", type=int, help="LFW same and different pairs per fold at most (a quick run)")
    parser.add_argument("--timing-photos", type=int, default=32)
    args = parser.parse_args()
    lfw = DATA / "lfw"
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    if args.limit:
        groups = sorted({(p.fold, p.same) for p in pairs})
        pairs = [p for key in groups for p in [q for q in pairs if (q.fold, q.same) == key][: args.limit]]
    splits = {name: split_identification(DATA / name, 2, 5, 10, 0.5, 0) for name in ("att_faces", "yalefaces")}
    group, references = group_people(lfw)
    faces = {p: "center" for pair in pairs for p in (pair.a, pair.b)}
    faces |= {p: "center" for people in (group, *references) for photos in people.values() for p in photos}
    for split in splits.values():
        photos = [p for ps in split.enrolled.values() for p in ps] + [p for _, p in split.genuine + split.impostor]
        faces |= dict.fromkeys(photos, "largest")
    started = time.perf_counter()
    rows: dict[str, dict] = {}
    for detector_name in args.detectors:
        detector = create_detector(detector_name)
        embedders = {name: Embedder(name, detector=detector) for name in args.models}
        vectors = embed_all(embedders, faces)
        for name, embedder in embedders.items():
            rows[f"{name} / {detector_name}"] = evaluate(embedder, vectors[name], pairs, splits, group, references) | {
                "network": name,
                "detector": detector_name,
            }
        if "dlib+sface" in vectors:
            mixed = reweighted(vectors["dlib+sface"], REWEIGHTED)
            report = evaluate_pairs(EmbeddingCache(None, face="center", vectors=mixed), pairs)
            rows[f"dlib+sface w_dlib {REWEIGHTED} / {detector_name}"] = {
                "model": "not registered",
                "lfw_accuracy": report.accuracy_mean,
                "lfw_accuracy_std": report.accuracy_std,
                "lfw_tar_at_far_1e-3": report.tar_at_far[1e-3][0],
            } | differential(mixed, group, references)
        evaluation_seconds = time.perf_counter() - started
        for name, timed in timings(embedders, sorted({p.a for p in pairs})[: args.timing_photos]).items():
            rows[f"{name} / {detector_name}"] |= timed
    baseline = rows[f"{args.models[0]} / {args.detectors[0]}"]
    for row in rows.values():
        if "embed_ms_per_face" in row:
            row |= {f"{k}_ratio": row[k] / baseline[k] for k in ("embed_ms_per_face", "end_to_end_ms_per_image")}
    model, detector = choose_default(rows)
    print_table(rows)
    print(
        f"default by this table: {model} through {detector} (model: most accurate on LFW among differential "
        f"<= {MAX_DIFFERENTIAL:g}x at 0.1% and 0.5%; detector: fastest within one fold std of the best accuracy)"
    )
    result = {
        "setup": {
            "lfw_pairs": len(pairs),
            "group_people": len(group),
            "reference_groups": [len(r) for r in references],
            "images": len(faces),
            "evaluation_seconds": round(evaluation_seconds, 1),
            "timing_photos": args.timing_photos,
            "threads": threads_note(),
        },
        "rows": rows,
        "max_differential": MAX_DIFFERENTIAL,
        "default": {"model": model, "detector": detector},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("models.json" if not args.limit else "models_quick.json")).write_text(json.dumps(result, indent=2))


def evaluate(embedder: Embedder, vectors: dict, pairs, splits, group, references) -> dict:
    """One model's row: LFW, open-set on each split at the default threshold, differential."""
    spec = embedder.spec
    report = evaluate_pairs(EmbeddingCache(embedder, face="center", vectors=dict(vectors)), pairs)
    row = {
        "model": embedder.model_id,
        "lfw_accuracy": report.accuracy_mean,
        "lfw_accuracy_std": report.accuracy_std,
        "lfw_tar_at_far_1e-3": report.tar_at_far[1e-3][0],
        "lfw_pairs_with_missing_face": report.pairs_with_missing_face,
    }
    policy = ThresholdPolicy(None, {}, spec.threshold, spec.far_table)
    for data, split in splits.items():
        result = evaluate_identification(EmbeddingCache(embedder, vectors=dict(vectors)), split, policy)
        row[f"{data}_named"] = result["model_table_named_correctly"]
        row[f"{data}_rejected"] = result["model_table_unknown_rejected"]
    return row | differential(vectors, group, references)


def choose_default(rows: dict[str, dict]) -> tuple[str | None, str | None]:
    """(model, detector) by the rule of the module docstring; None where no model meets the bound."""
    measured = [r for r in rows.values() if "network" in r]
    fair = [r for r in measured if max(r[f"ratio_at_{rate:g}"] for rate in RATES) <= MAX_DIFFERENTIAL]
    if not fair:
        return None, None
    best = max(fair, key=lambda r: (r["lfw_accuracy"], r["lfw_tar_at_far_1e-3"]))
    through = [r for r in measured if r["network"] == best["network"]]
    top = max(r["lfw_accuracy"] for r in through)
    close = [r for r in through if r["lfw_accuracy"] >= top - r["lfw_accuracy_std"]]
    return best["network"], min(close, key=lambda r: r["end_to_end_ms_per_image"])["detector"]


def threads_note() -> str:
    import os

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"FACESYS_THREADS={os.environ.get('FACESYS_THREADS', 'auto')}, {os.cpu_count()} CPUs, load average {load} at the end"


def print_table(rows: dict[str, dict]) -> None:
    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    def num(value, digits=1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = (
        f"{'model / detector':<34}{'LFW acc %':>11}{'TAR@1e-3':>10}{'AT&T nam/rej':>14}{'Yale nam/rej':>14}"
        f"{'diff 0.1%':>10}{'diff 0.5%':>10}{'ms/face':>9}{'ms/image':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(
            f"{name:<34}{pct(r['lfw_accuracy']) + '±' + pct(r['lfw_accuracy_std']):>11}{pct(r['lfw_tar_at_far_1e-3']):>10}"
            f"{pct(r.get('att_faces_named')) + '/' + pct(r.get('att_faces_rejected')):>14}"
            f"{pct(r.get('yalefaces_named')) + '/' + pct(r.get('yalefaces_rejected')):>14}"
            f"{num(r['ratio_at_0.001']) + 'x':>10}{num(r['ratio_at_0.005']) + 'x':>10}"
            f"{num(r.get('embed_ms_per_face')):>9}{num(r.get('end_to_end_ms_per_image')):>10}"
        )


if __name__ == "__main__":
    main()
