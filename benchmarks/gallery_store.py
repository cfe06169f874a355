"""A large gallery through the real store: how long its FAISS index takes to build, to load, and to
follow a change (faces added and a person removed) — the work ``facesys identify`` or ``enroll``
does on a gallery of that size — and the gallery's self-calibration (facesys/decide/calibration.py), which
identify runs again when the number of people changes by a tenth. Everything runs twice, on a
gallery in clear and on an encrypted one (facesys/gallery/sealing.py), in the same run: the table
shows both and their ratio.

    python benchmarks/gallery_store.py                 # 1M faces, ~12 min on 2 cores, ~1.5 GB of disk
    python benchmarks/gallery_store.py --faces 100000

Faces are random unit vectors (search quality is benchmarks/gallery_search.py's business), four per
person, written with SQLite's synchronous=OFF to fill the database quickly (facesys itself always
writes with FULL). Writes benchmarks/results/gallery_store.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS

from facesys.decide.match import ThresholdPolicy
from facesys.gallery import Gallery
from facesys.gallery.index import sync
from facesys.gallery.sealing import GalleryKey, write_new_key
from facesys.gallery.store import NewFace
from facesys.gallery.store.sqlite import SQLiteStore

MODEL = "random@0"
POLICY = ThresholdPolicy(1.0, {}, 1.0, ())  # a threshold argument: the ranking alone, no calibration


def new_face(number: int, vector: np.ndarray) -> NewFace:
    return NewFace(
        source=f"/photos/{number}.jpg",
        image_sha256=f"{number:064x}",
        box=np.array([0, 0, 100, 100.0]),
        landmarks=np.zeros((5, 2)),
        score=0.99,
        crop_jpeg=b"\xff\xd8",
        crop_origin=(0.0, 0.0, 1.0),
        embedding=vector,
    )


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, round(time.perf_counter() - started, 2)


def measure(faces: int, vectors: np.ndarray, key: GalleryKey | None) -> tuple[dict[str, float], str, float, list[str], int]:
    """Every step on a new gallery of ``faces`` faces, sealed with ``key`` (None: in clear); returns
    (seconds per step, index kind, index file MB, index problems, faces after the change)."""
    steps = {}
    with tempfile.TemporaryDirectory() as folder, SQLiteStore(Path(folder) / "gallery", create=True, key=key) as store:
        store.set_model(MODEL, "random", "0" * 64, 128)
        store.db.execute("PRAGMA synchronous=OFF")
        _, steps["fill the database"] = timed(
            lambda: [store.add_face(f"p{i // 4}", new_face(i, vectors[i]), MODEL) for i in range(faces)]
        )
        index, steps["first search: build the index"] = timed(lambda: sync.synced(store, store.folder))
        kind = index.kind
        _, steps["load the saved index"] = timed(lambda: sync.synced(store, store.folder))
        for i in range(faces, faces + 10):
            store.add_face("newcomer", new_face(i, vectors[i]), MODEL)
        store.remove_person("p0")
        index, steps["follow 10 added + 4 removed faces"] = timed(lambda: sync.synced(store, store.folder))
        problems, steps["gallery check of the index"] = timed(lambda: sync.problems(store, store.folder))
        gallery = Gallery(store.folder, key_file=key.source if key else None)
        _, steps["start-up: a new process's first search (opens the gallery, loads the saved index)"] = timed(
            lambda: gallery.search(vectors[:1], 1)
        )
        _, steps["self-calibration: 1,000 faces identified as strangers (cold person cache)"] = timed(gallery.calibration)
        _, steps["identify one face: rank people by template"] = timed(lambda: gallery.identify(vectors[-1:], 3, POLICY))
        _, steps["identify 100 faces, one at a time (after start-up)"] = timed(
            lambda: [gallery.identify(vectors[i : i + 1], 3, POLICY) for i in range(100)]
        )
        index_mb = sum(p.stat().st_size for p in store.folder.glob("index-*")) / 2**20
    return steps, kind, index_mb, problems, len(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "gallery_store.json")
    args = parser.parse_args()

    vectors = np.random.default_rng(0).normal(size=(args.faces + 10, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    runs = {}
    with tempfile.TemporaryDirectory() as keys:
        for name, key in (("clear", None), ("encrypted", write_new_key(Path(keys) / "gallery.key"))):
            steps, kind, index_mb, problems, after = measure(args.faces, vectors, key)
            if problems:
                raise SystemExit(f"{name}: index disagrees with the store: {problems}")
            runs[name] = steps
    print(f"{args.faces:,} faces, index kind {kind}, index file {index_mb:.0f} MB")
    print("\n| step | seconds, clear | seconds, encrypted | encrypted / clear |\n|---|---|---|---|")
    ratios = {}
    for step, seconds in runs["clear"].items():
        sealed = runs["encrypted"][step]
        ratios[step] = round(sealed / seconds, 2) if seconds else None
        print(f"| {step} | {seconds} | {sealed} | {ratios[step] if ratios[step] is not None else '-'}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"faces": args.faces, "kind": kind, "index_mb": round(index_mb), "seconds": runs["clear"]}
    report |= {"encrypted_seconds": runs["encrypted"], "encrypted_over_clear": ratios, "after_change_faces": after}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
