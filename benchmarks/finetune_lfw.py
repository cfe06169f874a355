"""Fine-tuning experiment on LFW under a hard condition: pretrained vs naive vs exact accumulation.

    python benchmarks/finetune_lfw.py [--model sface] [--condition lowres:32] [--steps 300] [--seeds 0 1 2]

Split (by LFW's official pairs.txt; no person is in two parts):
- train: people whose pairs all lie in folds 1-5, plus people in no pair (at most --max-photos
  photos each; people with one photo cannot form a positive pair and are not used);
- select: fold 6 pairs (checkpoint and threshold selection);
- report: folds 7-10 pairs (never seen before the final numbers).
Photos are aligned for --model (its chip size and template). Every photo is degraded by
--condition (e.g. lowres:32: the chip down-scaled to 32 px and back) for training, selection and
report alike. The two accumulation modes get the same memory budget (micro-batch), the same
effective batch P x K and the same number of optimizer steps. Each fine-tuned arm runs once per
--seeds value (batch order, dropout masks); the pretrained arm has no randomness.

Prints per arm the mean, standard deviation (over seeds, ddof=1) and range of the report-set
metrics, and writes benchmarks/results/finetune_lfw_<model>_<condition>.json; each run's log and
checkpoints go to benchmarks/results/finetune/<model>_<condition>/<arm>-seed<N>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.config import DEFAULT_MODEL
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
    with torch.inference_mode():
        for i in range(0, len(chips), 64):
            x = torch.from_numpy(chips[i : i + 64]).permute(0, 3, 1, 2).float() / 255.0
            out.append(model(x.contiguous(memory_format=torch.channels_last)).numpy())
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
        "report_tar_at_far_1e-3": roc.tar_at_far(1e-3)[0],
        "report_pairs": len(d),
    }


SUMMARISED = (
    "report_accuracy_at_select_threshold",
    "report_kfold_mean",
    "report_auc",
    "report_tar_at_far_1e-2",
    "report_tar_at_far_1e-3",
)


def spread(values: list[float]) -> dict:
    """Mean, standard deviation over seeds (ddof=1; 0 for one value), min and max."""
    x = np.asarray(values, float)
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return {"mean": float(x.mean()), "std": std, "min": float(x.min()), "max": float(x.max()), "n": len(x)}


def first_pairs(pairs: list, half: int) -> list:
    """The first ``half`` positive and ``half`` negative pairs of each fold, in file order."""
    seen: dict[tuple[int, bool], int] = {}
    kept = []
    for pair in pairs:
        key = (pair.fold, pair.same)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= half:
            kept.append(pair)
    return kept


def subset(chips, paths: set[str]):
    """The chips of ``paths`` only (validation embeds just the selection fold's photos)."""
    from facesys.train.data import ChipSet

    keep = [i for i, p in enumerate(chips.paths) if p in paths]
    return ChipSet(chips.chips[keep], chips.labels[keep], chips.names, [chips.paths[i] for i in keep])


def train_arm(args, mode: str, seed: int, train, select, select_pairs, out: Path) -> tuple[dict, object]:
    """Fine-tune one arm with one seed: its log summary and its best (selection-fold) checkpoint's model."""
    from facesys.models import create_model

    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        out=str(out),
        model=args.model,
        people=args.people,
        per_person=args.per_person,
        micro_batch=args.micro_batch,
        accum_steps=args.people * args.per_person // args.micro_batch,
        accum_mode=mode,
        lr=args.lr,
        steps=args.steps,
        freeze=args.freeze,
        checkpoint_every=0,
        validate_every=max(1, args.steps // args.validations),
        seed=seed,
    )
    started = time.perf_counter()
    Trainer(config, train, select, select_pairs).run()
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_accuracy" in r]
    return {
        "train_seconds": round(seconds),
        "best_step": max(val, key=lambda r: r["val_accuracy"])["step"],
        "select_curve": [(r["step"], round(r["val_accuracy"], 4)) for r in val],
    }, create_model(str(out / "best.pt"))


def changed_from_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """{option: [value, default]} for every option the run changed (a smaller run says so)."""
    return {k: [v, parser.get_default(k)] for k, v in vars(args).items() if v != parser.get_default(k)}


def fmt(summary: dict) -> str:
    return f"{100 * summary['mean']:6.2f} ± {100 * summary['std']:.2f} [{100 * summary['min']:.2f}-{100 * summary['max']:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registered model to fine-tune")
    parser.add_argument("--condition", default="lowres:32")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--people", type=int, default=32)
    parser.add_argument("--per-person", type=int, default=4)
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--freeze", default="stage2")
    parser.add_argument("--max-photos", type=int, default=20)
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="one fine-tuning run per seed")
    parser.add_argument("--validations", type=int, default=10, help="checkpoint selections on fold 6 per run")
    parser.add_argument(
        "--pairs-per-fold", type=int, help="use only the first N/2 positive and N/2 negative pairs of each fold (faster)"
    )
    args = parser.parse_args()

    lfw = DATA / "lfw"
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    late = people_in_pairs([p for p in pairs if p.fold >= 5])
    train_files = {n: f for n, f in people_in(lfw, max_photos=args.max_photos).items() if n not in late and len(f) >= 2}
    embedder = Embedder(args.model)
    cache = RESULTS / "cache"
    started = time.perf_counter()
    train = build_chips(embedder, train_files, "center", cache)
    eval_files: dict[str, list[Path]] = {}
    for path in sorted({p.a for p in pairs if p.fold >= 5} | {p.b for p in pairs if p.fold >= 5}):
        eval_files.setdefault(path.parent.name, []).append(path)
    evaluation = build_chips(embedder, eval_files, "center", cache)  # aligned once for every --pairs-per-fold
    if args.pairs_per_fold:
        pairs = first_pairs(pairs, args.pairs_per_fold // 2)
        evaluation = subset(evaluation, {str(p.a) for p in pairs if p.fold >= 5} | {str(p.b) for p in pairs if p.fold >= 5})
    print(
        f"train: {len(train)} photos of {len(train.names)} people; select/report images: {len(evaluation)} "
        f"({time.perf_counter() - started:.0f} s to align)"
    )
    train.chips = degrade(train.chips, args.condition)
    evaluation.chips = degrade(evaluation.chips, args.condition)
    select_pairs = [p for p in pairs if p.fold == 5]
    select = subset(evaluation, {str(p.a) for p in select_pairs} | {str(p.b) for p in select_pairs})

    tag = f"{args.model}_{args.condition.replace(':', '')}"
    results = {"pretrained": {"seeds": {"all": score(embedder.model, evaluation, pairs)}}}
    for mode in ("naive", "exact"):
        results[mode] = {"seeds": {}}
        for seed in args.seeds:
            out = RESULTS / "finetune" / tag / f"{mode}-seed{seed}"
            log, best = train_arm(args, mode, seed, train, select, select_pairs, out)
            results[mode]["seeds"][str(seed)] = score(best, evaluation, pairs) | log
            print(f"{mode} seed {seed}: {log['train_seconds']} s, best step {log['best_step']}", flush=True)
    for arm in results.values():
        arm["summary"] = {key: spread([run[key] for run in arm["seeds"].values()]) for key in SUMMARISED}

    accum_steps = args.people * args.per_person // args.micro_batch
    setup = vars(args) | {
        "accum_steps": accum_steps,
        "train_photos": len(train),
        "train_people": len(train.names),
        "select_photos": len(select),
        "report_pairs": results["pretrained"]["seeds"]["all"]["report_pairs"],
        "threads": os.environ.get("FACESYS_THREADS", "automatic"),
        "spread": "mean, std (ddof=1) and min-max over seeds; the pretrained arm is one run (no randomness)",
        "changed_from_defaults": changed_from_defaults(parser, args),
    }
    print(
        f"\nmodel {args.model}; condition {args.condition}; P x K = {args.people} x {args.per_person}, "
        f"micro-batch {args.micro_batch} x {accum_steps}; {args.steps} optimizer steps; frozen up to {args.freeze}; "
        f"seeds {' '.join(map(str, args.seeds))}"
    )
    print("mean ± std [min-max] over seeds, on folds 7-10 (report)")
    print(f"{'arm':<11} {'acc @ fold-6 thr':>28} {'4-fold acc':>28} {'TAR@FAR 1e-2':>28} {'TAR@FAR 1e-3':>28}")
    for name, arm in results.items():
        summary = arm["summary"]
        print(
            f"{name:<11} {fmt(summary['report_accuracy_at_select_threshold']):>28} {fmt(summary['report_kfold_mean']):>28} "
            f"{fmt(summary['report_tar_at_far_1e-2']):>28} {fmt(summary['report_tar_at_far_1e-3']):>28}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"finetune_lfw_{tag}.json").write_text(json.dumps({"setup": setup, "results": results}, indent=2))


if __name__ == "__main__":
    main()
