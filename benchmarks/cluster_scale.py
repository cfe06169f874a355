"""Clustering at scale: 100,000 synthetic faces clustered from scratch (time, peak memory), then
1,000 new faces placed incrementally (time; do new faces of known people join their cluster?).

    python benchmarks/cluster_scale.py                   # 100,000 + 1,000 faces, about 30 s on 2 cores
    python benchmarks/cluster_scale.py --faces 20000 --new 500

Data: the synthetic identities of benchmarks/gallery_search.py (IdentityModel: Gaussian identities
fitted to real dlib-resnet embeddings of LFW, distances matched to the real ones), ``--per-identity``
faces each. The fit uses the LFW embeddings cached by benchmarks/cluster_vs_dlib.py when present
(else it embeds the photos, as gallery_search.py does). New faces: half are fresh faces of people
already clustered, half belong to new people (2 faces each).

Each clustering runs in a child process that reports its own wall time and peak resident memory
(``ru_maxrss``, which includes the interpreter, numpy, FAISS and the input vectors: the memory
before clustering is reported too). Baseline in the same run: re-clustering all faces from
scratch, against which the incremental placement is timed. Writes benchmarks/results/cluster_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS
from gallery_search import IdentityModel, real_embeddings

from facesys.decide.clustering import DEFAULT_CLUSTER_THRESHOLD, cluster_faces
from facesys.evaluate.clustering import cluster_metrics

WORK = RESULTS / "cache" / "cluster-scale"


def fit_vectors(per_person: int = 4, people: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Real embeddings to fit the synthetic identities to: the first ``people`` LFW people with
    ``per_person``+ photos, their first ``per_person`` photos (gallery_search.py's selection)."""
    cache = RESULTS / "cache" / "cluster-facesys-lfw.npz"
    if not cache.is_file():
        return real_embeddings(per_person, people)
    data = np.load(cache, allow_pickle=False)
    files = [Path(f) for f in data["files"]]
    by_person: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_person.setdefault(f.parent.name, []).append(i)
    chosen = [rows[:per_person] for name, rows in sorted(by_person.items()) if len(rows) >= per_person][:people]
    rows = [i for group in chosen for i in group if not np.isnan(data["vectors"][i, 0])]
    return data["vectors"][rows], np.array([files[i].parent.name for i in rows])


def run_child(vectors: np.ndarray, previous: np.ndarray | None, threshold: float) -> dict:
    """``cluster_faces`` in a fresh process: its labels, seconds and peak memory (MB)."""
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(WORK / "vectors.npy", vectors)
    np.save(WORK / "previous.npy", np.full(len(vectors), -1, np.int64) if previous is None else previous)
    command = [sys.executable, __file__, "--child", str(WORK), "--threshold", str(threshold)]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    result = json.loads((WORK / "result.json").read_text())
    result["labels"] = np.load(WORK / "labels.npy")
    return result


def child(work: Path, threshold: float) -> None:
    """The child's side: load, cluster, write labels and measurements."""
    vectors, previous = np.load(work / "vectors.npy"), np.load(work / "previous.npy")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    labels = cluster_faces(vectors, None if (previous < 0).all() else previous, threshold)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(work / "labels.npy", labels)
    (work / "result.json").write_text(json.dumps({"seconds": seconds, "peak_mb": peak, "before_mb": before}))


def joined_own_cluster(labels: np.ndarray, people: np.ndarray, old: np.ndarray, new: np.ndarray) -> float:
    """Share of the ``new`` faces whose cluster is the one most of their person's ``old`` faces are in."""
    home = {}
    for person in np.unique(people[new]):
        ids, counts = np.unique(labels[old][people[old] == person], return_counts=True)
        home[person] = ids[np.argmax(counts)] if len(ids) else -1
    return float(np.mean([labels[i] == home[people[i]] for i in new]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=DEFAULT_CLUSTER_THRESHOLD)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threshold)
        return

    fit, fit_people = fit_vectors()
    model = IdentityModel(fit, fit_people)
    rng = np.random.default_rng(5)
    identities = args.faces // args.per_identity
    centres, scales = model.identities(identities + args.new // 4, rng)
    faces = model.faces(centres[:identities], scales[:identities], args.per_identity, rng).reshape(-1, fit.shape[1])
    people = np.repeat(np.arange(identities), args.per_identity)
    known = np.sort(rng.choice(identities, args.new // 2, replace=False))  # people who get one more face
    strangers = np.arange(identities, identities + args.new // 4)  # new people, 2 faces each
    more = model.faces(centres[known], scales[known], 1, rng)[:, 0]
    newcomers = model.faces(centres[strangers], scales[strangers], 2, rng).reshape(-1, fit.shape[1])
    every = np.concatenate([faces, more, newcomers])
    every_people = np.concatenate([people, known, np.repeat(strangers, 2)])
    old = np.arange(len(faces))
    known_new = np.arange(len(faces), len(faces) + len(more))
    stranger_new = np.arange(len(faces) + len(more), len(every))
    print(f"{len(faces):,} faces of {identities:,} people, threshold {args.threshold}, {os.cpu_count()} CPUs")

    full = run_child(faces, None, args.threshold)
    full_metrics = cluster_metrics(people, full["labels"])
    print(f"full: {full['seconds']:.1f} s, peak {full['peak_mb']:.0f} MB (before clustering {full['before_mb']:.0f} MB)")

    previous = np.concatenate([full["labels"], np.full(len(every) - len(faces), -1, np.int64)])
    placed = run_child(every, previous, args.threshold)
    labels = placed["labels"]
    unchanged = bool(np.array_equal(labels[old], full["labels"]))
    top = int(full["labels"].max())
    stranger_ids = labels[stranger_new]
    pairs_together = float(np.mean(stranger_ids[0::2] == stranger_ids[1::2]))
    incremental = {
        "seconds": placed["seconds"],
        "peak_mb": placed["peak_mb"],
        "existing_ids_unchanged": unchanged,
        "known_people_joined_own_cluster": joined_own_cluster(labels, every_people, old, known_new),
        "new_people_fresh_ids": float(np.mean(stranger_ids > top)),
        "new_people_two_faces_together": pairs_together,
        "metrics": cluster_metrics(every_people, labels),
    }
    print(
        f"incremental: {len(every) - len(faces):,} new faces in {placed['seconds']:.2f} s; existing ids unchanged: {unchanged}; "
        f"known people's new faces in their cluster: {incremental['known_people_joined_own_cluster']:.1%}; "
        f"new people's faces with fresh ids: {incremental['new_people_fresh_ids']:.1%}"
    )

    again = run_child(every, None, args.threshold)
    again_metrics = cluster_metrics(every_people, again["labels"])
    incremental["speedup_vs_full"] = again["seconds"] / max(placed["seconds"], 1e-9)
    rows = [
        (f"full, {len(faces):,} faces", full, full_metrics),
        (f"incremental, +{len(every) - len(faces):,} faces", placed, incremental["metrics"]),
        (f"full re-cluster, {len(every):,} faces (baseline)", again, again_metrics),
    ]
    print("\n| run | seconds | peak MB | BCubed P | R | F1 | pairwise P | R | F1 | clusters (people) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, run, m in rows:
        print(
            f"| {name} | {run['seconds']:.2f} | {run['peak_mb']:.0f} | {m['bcubed_precision']:.4f} | {m['bcubed_recall']:.4f} | "
            f"{m['bcubed_f1']:.4f} | {m['pairwise_precision']:.4f} | {m['pairwise_recall']:.4f} | {m['pairwise_f1']:.4f} | "
            f"{m['clusters']:,} ({m['people']:,}) |"
        )
    print(f"incremental placement is {incremental['speedup_vs_full']:.0f}x faster than re-clustering everything")
    report = {
        "faces": len(faces),
        "new_faces": len(every) - len(faces),
        "per_identity": args.per_identity,
        "threshold": args.threshold,
        "cpus": os.cpu_count(),
        "full": {"seconds": full["seconds"], "peak_mb": full["peak_mb"], "before_mb": full["before_mb"], "metrics": full_metrics},
        "incremental": incremental,
        "full_recluster": {"seconds": again["seconds"], "peak_mb": again["peak_mb"], "metrics": again_metrics},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cluster_scale.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
