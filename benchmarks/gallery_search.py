"""Gallery search at 10k / 100k / 1M faces: latency, recall, build time, memory, add/remove, per
FAISS index kind (facesys/gallery/index.py builds and tunes them; this script times exactly that).

    python benchmarks/gallery_search.py                       # 10k, 100k, 1M; ~15 min on 2 cores
    python benchmarks/gallery_search.py --sizes 10000 --kinds flat ivf

Data: synthetic unit vectors of the model's dimension whose distances match the model's on real
faces. The model embeds LFW photos (people with 4+ photos); identity centres are drawn from a
Gaussian with the covariance of those people's mean embeddings, faces around a centre from the
pooled within-person covariance (scaled per identity, log-normal, for the spread of how much
people vary), then normalised; two scales are fitted so that the median within- and
between-identity distances match the real ones (the table of quantiles shows how well).
A gallery holds ``--per-identity`` faces (4) of size / 4 identities; queries are fresh faces of
enrolled identities, not in the index. Recall@1 is identity-level: the share of queries whose
nearest face belongs to the same person as the exact (flat) search's nearest face.

Latency: one query per search call, wall time, after a warm-up; add: one face per call; remove:
one face per call (hnsw cannot remove: facesys rebuilds it, the build time is that cost).
Memory: the serialised index size. Writes benchmarks/results/gallery_search.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.gallery.index.faiss_index import EXACT_UP_TO, FaissIndex, build_index, choose_kind, remove_ids


class IdentityModel:
    """Gaussian identities fitted to real embeddings: ``faces(identities, per)`` -> (n, per, D)."""

    def __init__(self, vectors: np.ndarray, people: np.ndarray, spread: float = 0.15):
        groups = [np.flatnonzero(people == p) for p in np.unique(people)]
        groups = [g for g in groups if len(g) >= 2]
        means = np.stack([vectors[g].mean(0) for g in groups])
        deviations = np.concatenate([(vectors[g] - vectors[g].mean(0)) * np.sqrt(len(g) / (len(g) - 1)) for g in groups])
        self.mean = means.mean(0)
        self.between_root = _root(np.cov(means.T))
        self.within_root = _root(deviations.T @ deviations / len(deviations))
        self.spread = spread
        self.between_scale = self.within_scale = 1.0
        self.real = _distance_samples(vectors, people, np.random.default_rng(0))
        for _ in range(4):  # match the medians of the real distances
            rng = np.random.default_rng(1)
            within, between = _pair_distances(self.faces(*self.identities(4000, rng), 2, rng))
            self.within_scale *= np.median(self.real[0]) / np.median(within)
            self.between_scale *= np.median(self.real[1]) / np.median(between)

    def identities(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(count, D) float32 identity centres and (count,) within-person scales."""
        dim = len(self.mean)
        centres = np.empty((count, dim), np.float32)
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            centres[start : start + n] = self.mean + self.between_scale * rng.standard_normal((n, dim)) @ self.between_root.T
        scales = self.within_scale * np.exp(self.spread * rng.standard_normal(count) - self.spread**2 / 2)
        return centres, scales

    def faces(self, centres: np.ndarray, scales: np.ndarray, per: int, rng: np.random.Generator) -> np.ndarray:
        """(n, per, D) float32 unit vectors: ``per`` fresh faces around each of the n centres."""
        out = np.empty((len(centres), per, centres.shape[1]), np.float32)
        for start in range(0, len(centres), 10_000):
            c, s = centres[start : start + 10_000], scales[start : start + 10_000]
            x = c[:, None, :] + s[:, None, None] * (rng.standard_normal((len(c), per, c.shape[1])) @ self.within_root.T)
            out[start : start + len(c)] = x / np.linalg.norm(x, axis=2, keepdims=True)
        return out


def _root(covariance: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    return vectors * np.sqrt(np.maximum(values, 0))


def _pair_distances(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within (face 0 vs 1 of each identity) and between (face 0 vs the next identity's face 1)."""
    return np.linalg.norm(faces[:, 0] - faces[:, 1], axis=1), np.linalg.norm(faces[:-1, 0] - faces[1:, 1], axis=1)


def _distance_samples(vectors: np.ndarray, people: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    within = []
    for p in np.unique(people):
        g = np.flatnonzero(people == p)
        if len(g) >= 2:
            a, b = rng.choice(g, 2, replace=False)
            within.append(np.linalg.norm(vectors[a] - vectors[b]))
    i, j = rng.integers(0, len(vectors), (2, 20_000))
    keep = people[i] != people[j]
    return np.array(within), np.linalg.norm(vectors[i[keep]] - vectors[j[keep]], axis=1)


def real_embeddings(photos_per_person: int, people_limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of LFW photos of people with ``photos_per_person``+ photos, and each one's person."""
    from facesys.datasets import people_in
    from facesys.evaluate.experiments import EmbeddingCache
    from facesys.vision.embed import Embedder

    people = {n: p[:photos_per_person] for n, p in people_in(DATA / "lfw").items() if len(p) >= photos_per_person}
    people = dict(list(people.items())[:people_limit])
    cache = EmbeddingCache(Embedder("dlib-resnet", detector="mtcnn"), face="center")  # measured as published
    vectors = cache.embed([p for ps in people.values() for p in ps])
    rows = [(vectors[p], name) for name, ps in people.items() for p in ps if vectors[p] is not None]
    return np.stack([v for v, _ in rows]), np.array([n for _, n in rows])


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q) * 1e3)


def measure_kind(kind: str, ids, vectors, queries, exact_people, person_of, knobs: list[int]) -> dict:
    """Build, search (default and swept knob), add and remove for one index kind."""
    import faiss

    started = time.perf_counter()
    index = FaissIndex(build_index(ids, vectors, kind))
    build_s = time.perf_counter() - started
    result = {"kind": kind, "build_s": round(build_s, 2), "index_mb": round(len(faiss.serialize_index(index.index)) / 2**20, 1)}

    def run_queries() -> tuple[float, float, float]:
        index.search(queries[:10], 1)  # warm-up
        times, found = [], []
        for q in queries:
            started = time.perf_counter()
            _, got = index.search(q[None], 1)
            times.append(time.perf_counter() - started)
            found.append(got[0, 0])
        recall = float(np.mean(person_of(np.array(found)) == exact_people))
        return percentile_ms(times, 50), percentile_ms(times, 99), recall

    sweep = []
    raw = index.index
    knob_name = {"ivf": "nprobe", "hnsw": "efSearch"}.get(kind)
    default_knob = raw.nprobe if kind == "ivf" else faiss.downcast_index(raw.index).hnsw.efSearch if kind == "hnsw" else None
    for value in knobs if knob_name else []:
        _set_knob(raw, kind, value)
        p50, p99, recall = run_queries()
        sweep.append({knob_name: value, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "recall_at_1": round(recall, 4)})
    if knob_name:
        _set_knob(raw, kind, default_knob)
        result[knob_name] = default_knob
    p50, p99, recall = run_queries()
    result |= {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "recall_at_1": round(recall, 4), "sweep": sweep}

    new = queries[:100]
    new_ids = np.arange(10**9, 10**9 + len(new), dtype=np.int64)
    started = time.perf_counter()
    for i in range(len(new)):
        raw.add_with_ids(new[i : i + 1], new_ids[i : i + 1])
    result["add_ms"] = round((time.perf_counter() - started) / len(new) * 1e3, 3)
    if kind == "hnsw":
        result["remove_ms"] = round(build_s * 1e3, 1)
        result["remove_note"] = "rebuild"
    else:
        started = time.perf_counter()
        for face_id in new_ids[:20]:
            remove_ids(raw, np.array([face_id]))
        result["remove_ms"] = round((time.perf_counter() - started) / 20 * 1e3, 3)
    return result


def _set_knob(index, kind: str, value: int) -> None:
    import faiss

    if kind == "ivf":
        index.nprobe = value
    else:
        faiss.downcast_index(index.index).hnsw.efSearch = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--fit-people", type=int, default=400, help="LFW people (4 photos each) the data is fitted to")
    parser.add_argument("--out", type=Path, default=RESULTS / "gallery_search.json")
    args = parser.parse_args()

    vectors, people = real_embeddings(4, args.fit_people)
    model = IdentityModel(vectors, people)
    rng = np.random.default_rng(2)
    fake_within, fake_between = _pair_distances(model.faces(*model.identities(5000, rng), 2, rng))
    quantiles = [1, 10, 50, 90, 99]

    def summary(real: np.ndarray, fake: np.ndarray) -> dict:
        return {
            kind: np.percentile(values, quantiles).round(3).tolist() for kind, values in {"real": real, "synthetic": fake}.items()
        }

    fit = {
        "real_faces": len(vectors),
        "real_people": len(np.unique(people)),
        "within": summary(model.real[0], fake_within),
        "between": summary(model.real[1], fake_between),
    }
    print(f"distance quantiles {quantiles} (real: {fit['real_faces']} LFW faces of {fit['real_people']} people)")
    for name in ("within", "between"):
        print(f"  {name:8s} real {fit[name]['real']}  synthetic {fit[name]['synthetic']}")

    rows = []
    rng = np.random.default_rng(3)
    for size in args.sizes:
        identities = size // args.per_identity
        centres, scales = model.identities(identities, rng)
        gallery = model.faces(centres, scales, args.per_identity, rng).reshape(-1, vectors.shape[1])
        ids = np.arange(len(gallery), dtype=np.int64)
        asked = np.sort(rng.choice(identities, args.queries, replace=False))
        queries = model.faces(centres[asked], scales[asked], 1, rng)[:, 0]  # fresh faces of enrolled people
        exact = build_index(ids, gallery, "flat")
        _, nearest = exact.search(queries, 1)

        def person_of(face_ids: np.ndarray) -> np.ndarray:
            return face_ids // args.per_identity

        exact_people = person_of(nearest[:, 0])
        own = np.mean(exact_people == asked)
        print(f"\n{size:,} faces ({identities:,} people): exact search names the query's own person for {own:.1%}")
        for kind in args.kinds:
            knobs = {"ivf": [16, 32, 64, 128, 256, 512], "hnsw": [64, 128, 256, 512]}.get(kind, [])
            measured = measure_kind(kind, ids, gallery, queries, exact_people, person_of, knobs)
            row = {"faces": size, "auto_kind": choose_kind(size)} | measured
            rows.append(row)
            print(
                f"  {kind:5s} build {row['build_s']:7.1f} s  {row['index_mb']:7.1f} MB  p50 {row['p50_ms']:7.3f} ms  "
                f"p99 {row['p99_ms']:7.3f} ms  recall@1 {row['recall_at_1']:.4f}  add {row['add_ms']:.3f} ms  "
                f"remove {row['remove_ms']} ms"
            )
            for point in row["sweep"]:
                print("        " + "  ".join(f"{k} {v}" for k, v in point.items()))
        del gallery, exact

    print("\n| faces | kind | auto picks | build s | MB | p50 ms | p99 ms | recall@1 | add ms | remove ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['faces']:,} | {r['kind']} | {r['auto_kind']} | {r['build_s']} | {r['index_mb']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | "
            f"{r['recall_at_1']} | {r['add_ms']} | {r['remove_ms']}{' (rebuild)' if r.get('remove_note') else ''} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"exact_up_to": EXACT_UP_TO, "fit": fit, "per_identity": args.per_identity, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
