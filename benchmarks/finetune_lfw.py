"""Fine-tuning experiment on LFW under a hard condition: pretrained vs naive vs exact accumulation.

    python benchmarks/finetune_lfw.py [--condition lowres:32] [--steps 300]

Split (by LFW's official pairs.txt; no person is in two parts):
- train: people whose pairs all lie in folds 1-5, plus people in no pair (at most --max-photos
  photos each; people with one photo cannot form a positive pair and are not used);
- select: fold 6 pairs (checkpoint and threshold selection);
- report: folds 7-10 pairs (never seen before the final numbers).
Every photo is degraded by --condition (e.g. lowres:32: the 150x150 chip down-scaled to 32 px and
back) for training, selection and report alike. The two accumulation modes get the same memory
budget (micro-batch), the same effective batch P x K and the same number of optimizer steps.

Prints a table and writes benchmarks/results/finetune_lfw_<condition>.json; each run's log and
checkpoints go to benchmarks/results/finetune/<condition>/<arm>/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.datasets import people_in
from facesys.evaluate.pairs import people_in_pairs, read_lfw_pairs
from facesys.evaluate.protocol import accuracy_at, best_threshold, kfold_accuracy
from facesys.evaluate.roc import roc_curve
from facesys.train.data import build_chips, degrade
from facesys.train.trainer import TrainConfig, Trainer
from facesys.vision.embed import Embedder


def embed(model, chips: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(chips), 128):
            out.append(model(torch.from_numpy(chips[i : i + 128]).permute(0, 3, 1, 2).float() / 255.0).numpy())
    return np.concatenate(out)


def score(model, chips, pairs) -> dict:
    """Fold-6 threshold applied to folds 7-10, and the 4-fold protocol on folds 7-10."""
    vectors = embed(model, chips.chips)
    index = chips.index_of()

    def distances(subset):
        usable = [p for p in subset if str(p.a) in index and str(p.b) in index]
        d = np.linalg.norm(vectors[[index[str(p.a)] for p in usable]] - vectors[[index[str(p.b)] for p in usable]], axis=1)
        return d, np.array([p.same for p in usable]), np.array([p.fold for p in usable])

    d6, s6, _ = distances([p for p in pairs if p.fold == 5])
    threshold = best_threshold(d6, s6)
    d, s, f = distances([p for p in pairs if p.fold >= 6])
    kfold = kfold_accuracy(d, s, f)
    roc = roc_curve(d, s)
    return {
        "select_accuracy": accuracy_at(d6, s6, threshold),
        "threshold": threshold,
        "report_accuracy_at_select_threshold": accuracy_at(d, s, threshold),
        "report_kfold_mean": kfold.mean,
        "report_kfold_std": kfold.std,
        "report_fold_accuracies": kfold.accuracies.tolist(),
        "report_auc": roc.auc,
        "report_tar_at_far_1e-2": roc.tar_at_far(1e-2)[0],
        "report_pairs": len(d),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--condition", default="lowres:32")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--people", type=int, default=32)
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--freeze", default="stage2")
    parser.add_argument("--max-photos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lfw = DATA / "lfw"
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    late = people_in_pairs([p for p in pairs if p.fold >= 5])
    train_files = {n: f for n, f in people_in(lfw, max_photos=args.max_photos).items() if n not in late and len(f) >= 2}
    embedder = Embedder()
    cache = RESULTS / "cache"
    started = time.perf_counter()
    train = build_chips(embedder, train_files, "center", cache)
    eval_files: dict[str, list[Path]] = {}
    for path in sorted({p.a for p in pairs if p.fold >= 5} | {p.b for p in pairs if p.fold >= 5}):
        eval_files.setdefault(path.parent.name, []).append(path)
    evaluation = build_chips(embedder, eval_files, "center", cache)
    print(
        f"train: {len(train)} photos of {len(train.names)} people; select/report images: {len(evaluation)} "
        f"({time.perf_counter() - started:.0f} s to align)"
    )
    train.chips = degrade(train.chips, args.condition)
    evaluation.chips = degrade(evaluation.chips, args.condition)
    select_pairs = [p for p in pairs if p.fold == 5]

    results = {"pretrained": score(embedder.model, evaluation, pairs)}
    accum_steps = args.people * args.per_person // args.micro_batch
    for mode in ("naive", "exact"):
        out = RESULTS / "finetune" / args.condition.replace(":", "") / mode
        shutil.rmtree(out, ignore_errors=True)
        config = TrainConfig(
            out=str(out),
            people=args.people,
            per_person=args.per_person,
            micro_batch=args.micro_batch,
            accum_steps=accum_steps,
            accum_mode=mode,
            lr=args.lr,
            steps=args.steps,
            freeze=args.freeze,
            checkpoint_every=0,
            validate_every=max(1, args.steps // 10),
            seed=args.seed,
        )
        started = time.perf_counter()
        trainer = Trainer(config, train, evaluation, select_pairs)
        trainer.run()
        seconds = time.perf_counter() - started
        from facesys.models import create_model

        best = create_model(str(out / "best.pt"))
        results[mode] = score(best, evaluation, pairs) | {"train_seconds": round(seconds), "best_step": None}
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        val = [r for r in rows if "val_accuracy" in r]
        results[mode]["best_step"] = max(val, key=lambda r: r["val_accuracy"])["step"]
        results[mode]["select_curve"] = [(r["step"], round(r["val_accuracy"], 4)) for r in val]

    setup = vars(args) | {"accum_steps": accum_steps, "train_photos": len(train), "train_people": len(train.names)}
    print(
        f"\ncondition {args.condition}; P x K = {args.people} x {args.per_person}, micro-batch {args.micro_batch} x {accum_steps}"
    )
    print(f"{args.steps} optimizer steps; frozen up to {args.freeze}")
    header = f"{'model':<11} {'fold 6 (select)':>16} {'folds 7-10 @ fold-6 thr':>24} {'folds 7-10 4-fold':>20}"
    print(f"{header} {'AUC':>7} {'TAR@1e-2':>9}")
    for name, r in results.items():
        print(
            f"{name:<11} {100 * r['select_accuracy']:15.2f}% {100 * r['report_accuracy_at_select_threshold']:23.2f}% "
            f"{100 * r['report_kfold_mean']:12.2f}% ± {100 * r['report_kfold_std']:.2f} {r['report_auc']:7.4f} "
            f"{100 * r['report_tar_at_far_1e-2']:8.2f}%"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"finetune_lfw_{args.condition.replace(':', '')}.json"
    (RESULTS / name).write_text(json.dumps({"setup": setup, "results": results}, indent=2))


if __name__ == "__main__":
    main()
