"""Face clustering: facesys (MTCNN + dlib-resnet port + ``facesys.decide.clustering.cluster_faces``) against
face_recognition encodings + dlib's ``chinese_whispers_clustering`` at 0.5, same photos, same run.

    pip install --no-deps face_recognition      # the peer (dlib-bin comes with .[dev])
    python benchmarks/cluster_vs_dlib.py        # AT&T (400 photos) and all 13,233 LFW photos
    python benchmarks/cluster_vs_dlib.py --datasets att
    python benchmarks/cluster_vs_dlib.py --embed-only dlib   # fill one side's cache (run both sides at once)
    python benchmarks/cluster_vs_dlib.py --cannot-link 0.5 --datasets lfw --max-photos 2000   # facesys only

Labels: the person folder. The labelled face of a photo is the detected face nearest its centre
(LFW's convention), for both. When no face is found, face_recognition encodes the whole image (as
benchmarks/lfw_vs_face_recognition.py does); facesys leaves the photo out of clustering and it
counts as a cluster of its own (a miss for recall). Embeddings are cached in
benchmarks/results/cache/ (.npz; ``--no-cache`` recomputes); the times in the table are
clustering only, embedding time is reported beside them.

Method selection (``--sweep``, on by default): every candidate method of facesys/decide/clustering.py
over a threshold grid on the development data only: AT&T and the LFW people whose names start
with A-M; the full LFW set is then reported with the chosen method and threshold. dlib's
clustering is swept the same way, and the table also shows it at its own best threshold there.

Cannot-link (``--cannot-link SHARE``, facesys only, no peer needed): these sets hold one labelled
face per photo, so two-person photos are simulated: SHARE of the faces, drawn at random (seeded),
are paired with a face of another person (``--look-alikes``: the nearest one) as one "photo" (a
shared group key); each set is clustered without and with the rule (``cluster_faces(...,
groups=)``) and the table shows both, with the photos whose two faces ended in one cluster.
``--max-photos N``: only the first N photos of each set (sorted by person), for a short run.
Writes benchmarks/results/cluster_cannot_link.json.

Writes benchmarks/results/cluster_vs_dlib.json.
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
from _common import DATA, RESULTS
from lfw_vs_face_recognition import cached, face_recognition_embeddings

from facesys.datasets import people_in
from facesys.decide.clustering import DEFAULT_CLUSTER_THRESHOLD, METHODS, cluster_faces, cluster_graph, knn_graph
from facesys.evaluate.clustering import cluster_metrics

DATASETS = {"att": "att_faces", "lfw": "lfw"}
DLIB_THRESHOLD = 0.5  # dlib's documented value for chinese_whispers_clustering of face descriptors
SWEEP_THRESHOLDS = {
    "facesys": [round(0.26 + 0.01 * i, 2) for i in range(15)] + [0.42, 0.44, 0.46, 0.48, 0.50],
    "dlib": [0.40, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52, 0.55, 0.60],
}
CANDIDATES = [(m, "uniform") for m in METHODS] + [("chinese-whispers", "linear")]


def photos_of(name: str) -> tuple[list[Path], np.ndarray]:
    """Every photo of a folder-per-person set (sorted) and its (N,) person labels."""
    people = people_in(DATA / DATASETS[name])
    files = [p for photos in people.values() for p in photos]
    return files, np.array([p.parent.name for p in files])


def facesys_embeddings(files: list[Path]) -> tuple[np.ndarray, dict]:
    """(N, 128) unit vectors, NaN rows where no face was found; the face nearest the centre."""
    from facesys.evaluate.experiments import EmbeddingCache
    from facesys.vision.embed import Embedder

    cache = EmbeddingCache(Embedder("dlib-resnet", detector="mtcnn"), face="center")  # measured as published
    vectors = np.full((len(files), 128), np.nan, np.float32)
    for start in range(0, len(files), 256):
        found = cache.embed(files[start : start + 256])
        for i, f in enumerate(files[start : start + 256], start):
            if found[f] is not None:
                vectors[i] = found[f]
        print(f"\rfacesys {min(start + 256, len(files))}/{len(files)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return vectors, {"no_face": int(np.isnan(vectors[:, 0]).sum())}


def singletons_for_missing(labels: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(N,) ids: ``labels`` of the found faces, a fresh cluster of one for each photo without a face."""
    out = np.empty(len(found), np.int64)
    out[found] = labels
    top = labels.max() + 1 if len(labels) else 0
    out[~found] = top + np.arange((~found).sum())
    return out


def dlib_cluster(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    import dlib

    descriptors = [dlib.vector(v.astype(np.float64).tolist()) for v in vectors]
    started = time.perf_counter()
    labels = dlib.chinese_whispers_clustering(descriptors, threshold)
    return np.array(labels, np.int64), time.perf_counter() - started


def facesys_cluster(vectors: np.ndarray, found: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    labels = cluster_faces(vectors[found], threshold=threshold)
    return singletons_for_missing(labels, found), time.perf_counter() - started


def row(
    dataset: str, method: str, threshold: float, truth: np.ndarray, labels: np.ndarray, seconds: float, embed_s: float
) -> dict:
    metrics = cluster_metrics(truth, labels)
    return {"dataset": dataset, "method": method, "threshold": threshold, **metrics, "cluster_s": seconds, "embed_s": embed_s}


def sweep(dev: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> list[dict]:
    """BCubed F1 of every candidate and threshold on each development set, and their mean."""
    rows = []
    for name, (truth, ours, found, theirs) in dev.items():
        started = time.perf_counter()
        graph = knn_graph(ours[found], 2.0)  # every one of the k neighbours; each method cuts it
        graph_s = time.perf_counter() - started
        for method, weighting in CANDIDATES:
            for t in SWEEP_THRESHOLDS["facesys"]:
                started = time.perf_counter()
                labels = singletons_for_missing(cluster_graph(graph, t, method, weighting), found)
                seconds = graph_s + time.perf_counter() - started
                label = method if weighting == "uniform" else f"{method}/{weighting}"
                rows.append(row(name, label, t, truth, labels, seconds, 0.0))
        for t in SWEEP_THRESHOLDS["dlib"]:
            labels, seconds = dlib_cluster(theirs, t)
            rows.append(row(name, "dlib", t, truth, labels, seconds, 0.0))
    return rows


def summarise_sweep(rows: list[dict]) -> dict[str, dict]:
    """Per method: the threshold with the best mean BCubed F1 over the development sets."""
    best = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        by_t: dict[float, list[dict]] = {}
        for r in rows:
            if r["method"] == method:
                by_t.setdefault(r["threshold"], []).append(r)
        scored = [(float(np.mean([r["bcubed_f1"] for r in rs])), t, rs) for t, rs in by_t.items()]
        f1, t, rs = max(scored, key=lambda s: (s[0], -s[1]))
        best[method] = {
            "threshold": t,
            "mean_bcubed_f1": f1,
            "per_set": {r["dataset"]: r["bcubed_f1"] for r in rs},
            "seconds": sum(r["cluster_s"] for r in rs),
        }
    return best


def two_person_photos(truth: np.ndarray, share: float, vectors: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """(N,) group keys: ``share`` of the faces, drawn at random, in pairs of two different people (one
    simulated photo each; -1 for the other faces). Each drawn face, in random order, is paired with a
    random other drawn face of another person, or (``vectors`` given) with the nearest one: look-alikes
    side by side, the hard case."""
    rng = np.random.default_rng(seed)
    groups = np.full(len(truth), -1, np.int64)
    pool = rng.permutation(len(truth))[: int(share * len(truth))]
    free = np.ones(len(pool), bool)
    for i in range(len(pool)):
        if not free[i]:
            continue
        free[i] = False
        allowed = free & (truth[pool] != truth[pool[i]])
        if not allowed.any():
            continue
        if vectors is None:
            j = int(np.flatnonzero(allowed)[0])  # the pool is in random order already
        else:
            distance = np.linalg.norm(vectors[pool] - vectors[pool[i]], axis=1)
            j = int(np.argmin(np.where(allowed, distance, np.inf)))
        free[j] = False
        groups[[pool[i], pool[j]]] = i
    return groups


def cannot_link_effect(
    name: str, truth: np.ndarray, vectors: np.ndarray, share: float, threshold: float, look_alikes: bool = False
) -> list[dict]:
    """Clustering of one set without and with the cannot-link rule on simulated two-person photos."""
    found = ~np.isnan(vectors[:, 0])
    groups = two_person_photos(truth[found], share, vectors[found] if look_alikes else None)
    rows = []
    for label, rule in (("facesys cluster_faces", None), ("facesys cluster_faces + cannot-link", groups)):
        started = time.perf_counter()
        labels = cluster_faces(vectors[found], threshold=threshold, groups=rule)
        seconds = time.perf_counter() - started
        r = row(name, label, threshold, truth, singletons_for_missing(labels, found), seconds, 0.0)
        keyed = groups >= 0
        _, together = np.unique(np.stack([labels[keyed], groups[keyed]]), axis=1, return_counts=True)
        r.update(no_face=int((~found).sum()), photos=int(keyed.sum() // 2), photos_in_one_cluster=int((together > 1).sum()))
        rows.append(r)
    return rows


def cannot_link_main(args) -> None:
    """``--cannot-link``: facesys without and with the rule on each set; prints the table, writes the json."""
    rows = []
    for name in args.datasets:
        files, truth = photos_of(name)
        files, truth = files[: args.max_photos], truth[: args.max_photos]
        tag = f"cluster-facesys-{name}" + (f"-first{args.max_photos}" if args.max_photos else "")
        vectors, _, _ = cached(tag, files, facesys_embeddings, not args.no_cache)
        rows += cannot_link_effect(name, truth, vectors, args.cannot_link, args.threshold, args.look_alikes)
    pairs = "look-alikes (nearest face of another person)" if args.look_alikes else "random people"
    print(f"\n{args.cannot_link:.0%} of faces in simulated two-person photos of {pairs}, threshold {args.threshold}")
    print("| data | method | BCubed P | R | F1 | pairwise P | R | F1 | clusters (people) | photos in one cluster | cluster s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} ({r['faces']:,}) | {r['method']} | {r['bcubed_precision']:.4f} | {r['bcubed_recall']:.4f} | "
            f"**{r['bcubed_f1']:.4f}** | {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} | "
            f"{r['pairwise_f1']:.4f} | "
            f"{r['clusters']:,} ({r['people']:,}) | {r['photos_in_one_cluster']} of {r['photos']} | {r['cluster_s']:.2f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cluster_cannot_link.json"
    report = {"share": args.cannot_link, "look_alikes": args.look_alikes, "threshold": args.threshold, "rows": rows}
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["att", "lfw"])
    parser.add_argument("--embed-only", choices=["facesys", "dlib"], help="only fill this side's embedding cache")
    parser.add_argument("--threshold", type=float, default=DEFAULT_CLUSTER_THRESHOLD, help="facesys's clustering threshold")
    parser.add_argument("--no-sweep", action="store_true", help="skip the method selection on the development data")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--cannot-link",
        type=float,
        metavar="SHARE",
        help="facesys only: without and with the rule, SHARE of faces in two-person photos",
    )
    parser.add_argument(
        "--look-alikes", action="store_true", help="with --cannot-link: pair each face with its nearest other person"
    )
    parser.add_argument("--max-photos", type=int, help="only the first N photos of each set (sorted by person)")
    args = parser.parse_args()
    if args.cannot_link is not None:
        return cannot_link_main(args)

    sides = {"facesys": facesys_embeddings, "dlib": face_recognition_embeddings}
    data = {}
    for name in args.datasets:
        files, truth = photos_of(name)
        embedded = {}
        for side, compute in sides.items():
            if args.embed_only in (None, side):
                embedded[side] = cached(f"cluster-{side}-{name}", files, compute, not args.no_cache)
        if args.embed_only:
            print(f"{name}: {len(files)} photos embedded by {args.embed_only} ({embedded[args.embed_only][2]:.0f} s)")
            continue
        data[name] = (files, truth, embedded)
    if args.embed_only:
        return

    report: dict = {"cpus": os.cpu_count(), "dlib_threshold": DLIB_THRESHOLD, "facesys_threshold": args.threshold}
    if not args.no_sweep:
        dev = {}
        for name, (files, truth, embedded) in data.items():
            keep = np.ones(len(files), bool) if name == "att" else np.array([p.parent.name[0].upper() <= "M" for p in files])
            ours = embedded["facesys"][0][keep]
            dev[name] = (truth[keep], ours, ~np.isnan(ours[:, 0]), embedded["dlib"][0][keep])
        rows = sweep(dev)
        report["sweep"] = rows
        report["sweep_best"] = summarise_sweep(rows)
        print(f"\nMethod selection on development data ({', '.join(f'{k}: {len(v[0])} photos' for k, v in dev.items())})")
        print(
            "| method | best threshold | mean BCubed F1 | "
            + " | ".join(f"{k} BCubed F1" for k in dev)
            + " | seconds (graph + clustering, all sets) |"
        )
        print("|---|---|---|" + "---|" * len(dev) + "---|")
        for method, b in report["sweep_best"].items():
            per = " | ".join(f"{b['per_set'][k]:.4f}" for k in dev)
            print(f"| {method} | {b['threshold']:.2f} | {b['mean_bcubed_f1']:.4f} | {per} | {b['seconds']:.2f} |")

    rows = []
    for name, (_, truth, embedded) in data.items():
        ours, _, ours_embed_s = embedded["facesys"]
        theirs, their_stats, theirs_embed_s = embedded["dlib"]
        found = ~np.isnan(ours[:, 0])
        labels, seconds = dlib_cluster(theirs, DLIB_THRESHOLD)
        baseline = row(name, f"dlib chinese_whispers {DLIB_THRESHOLD}", DLIB_THRESHOLD, truth, labels, seconds, theirs_embed_s)
        baseline["no_face"] = their_stats.get("no_face_whole_image_used", 0)
        rows.append(baseline)
        if tuned := report.get("sweep_best", {}).get("dlib", {}).get("threshold"):
            labels, seconds = dlib_cluster(theirs, tuned)
            rows.append(row(name, f"dlib chinese_whispers {tuned} (best on dev)", tuned, truth, labels, seconds, theirs_embed_s))
            rows[-1]["no_face"] = baseline["no_face"]
        labels, seconds = facesys_cluster(ours, found, args.threshold)
        mine = row(name, "facesys cluster_faces", args.threshold, truth, labels, seconds, ours_embed_s)
        mine["no_face"] = int((~found).sum())
        mine["time_vs_dlib"] = mine["cluster_s"] / max(baseline["cluster_s"], 1e-9)
        rows.append(mine)
    report["rows"] = rows

    print("\n| data | method | BCubed P | R | F1 | pairwise P | R | F1 | clusters (people) | cluster s | embed s | no face |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} ({r['faces']:,}) | {r['method']} | {r['bcubed_precision']:.4f} | {r['bcubed_recall']:.4f} | "
            f"**{r['bcubed_f1']:.4f}** | {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} | {r['pairwise_f1']:.4f} | "
            f"{r['clusters']:,} ({r['people']:,}) | {r['cluster_s']:.2f} | {r['embed_s']:.0f} | {r['no_face']} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cluster_vs_dlib.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
