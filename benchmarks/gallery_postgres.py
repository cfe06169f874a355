"""A large gallery in PostgreSQL vs SQLite, same run: bulk load, a server's index build at start,
sync after 1,000 new faces, and identify's search latency — the costs of moving to a shared database.

    python benchmarks/gallery_postgres.py                      # 1M faces, ~15 min on 2 cores, ~3 GB of disk
    python benchmarks/gallery_postgres.py --faces 100000

Faces are synthetic as in benchmarks/gallery_search.py: identities fitted to dlib-resnet embeddings
of LFW photos (``--fit-people`` people, 4 photos each), ``--per-identity`` faces each, a small real
JPEG crop each. PostgreSQL runs as a throwaway local cluster (tests/postgres.py: Debian's
``postgresql`` package, loopback only); SQLite is a gallery folder in a temporary directory.

Steps, per backend, through facesys's own classes:
- bulk load: ``TruthStore.add_faces`` in transactions of ``--chunk`` faces (what ``gallery import`` does);
- index build at start: a new ``Gallery`` (no saved index) loads every embedding and builds the index;
- sync after 1,000 new faces: another writer adds them; the server's index follows the change log;
- identify p50: one query of a fresh face of an enrolled identity per ``Gallery.search`` call
  (a store opened, the generation checked, the index searched, the names read), median of ``--queries``.
Writes benchmarks/results/gallery_postgres.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT
from gallery_search import IdentityModel, real_embeddings

from facesys.gallery import Gallery
from facesys.gallery.store import NewFace

sys.path.insert(0, str(ROOT))
from tests.postgres import PostgresCluster

MODEL = ("synthetic@0000000000000000", "synthetic", "0" * 64, 128)
CROP = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 48, 3), np.uint8))[1].tobytes()


def new_face(number: int, vector: np.ndarray) -> NewFace:
    return NewFace(
        source=f"/photos/{number}.jpg",
        image_sha256=f"{number:064x}",
        box=np.array([10, 20, 110, 140.0]),
        landmarks=np.full((5, 2), 60.0),
        score=0.99,
        crop_jpeg=CROP,
        crop_origin=(0.0, 0.0, 1.0),
        embedding=vector,
    )


def timed(function) -> tuple[object, float]:
    started = time.perf_counter()
    result = function()
    return result, round(time.perf_counter() - started, 2)


def measure(location: str, vectors: np.ndarray, extra: np.ndarray, queries: np.ndarray, per: int, chunk: int) -> dict:
    """The four steps on the gallery at ``location`` (a new folder or database)."""
    steps = {}
    writer = Gallery(location)

    def bulk_load() -> None:
        with writer.open(create=True) as store:
            store.set_model(*MODEL)
            for start in range(0, len(vectors), chunk):
                faces = [(f"p{i // per}", new_face(i, vectors[i])) for i in range(start, min(start + chunk, len(vectors)))]
                store.add_faces(faces, MODEL[0], action="import")

    _, steps["bulk_load_s"] = timed(bulk_load)
    server = Gallery(location, save_index=False)  # a server starting: nothing saved on this machine yet
    for saved in server.index_folder.glob("index-*"):
        saved.unlink()

    def build() -> None:
        with server.open() as store:
            server.refresh(store)

    _, steps["index_build_at_start_s"] = timed(build)
    with writer.open() as store:
        first = len(vectors)
        store.add_faces([(f"new{i // per}", new_face(first + i, v)) for i, v in enumerate(extra)], MODEL[0])
    _, steps["sync_after_1000_new_faces_s"] = timed(build)
    latencies = []
    for query in queries:
        started = time.perf_counter()
        server.search(query[None], k=64)
        latencies.append(time.perf_counter() - started)
    steps["identify_p50_ms"] = round(1000 * statistics.median(latencies), 2)
    with server.open() as store:
        steps["faces"] = store.face_count()
        steps["database_mb"] = round(store.stats()["database_bytes"] / 2**20)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--fit-people", type=int, default=100, help="LFW people (4 photos each) the data is fitted to")
    parser.add_argument("--chunk", type=int, default=10_000, help="Faces per transaction in the bulk load")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS / "gallery_postgres.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    model = IdentityModel(*real_embeddings(4, args.fit_people))
    identities = model.identities(args.faces // args.per_identity + 1000 // args.per_identity + 1, rng)
    faces = model.faces(*identities, args.per_identity + 1, rng)  # (identities, per + 1, D): the last face is the query
    known = faces[: args.faces // args.per_identity, : args.per_identity].reshape(-1, faces.shape[-1])
    extra = faces[args.faces // args.per_identity :, : args.per_identity].reshape(-1, faces.shape[-1])[:1000]
    queries = faces[rng.choice(args.faces // args.per_identity, args.queries), -1]

    results = {}
    cluster = PostgresCluster()
    try:
        cluster.start()
        with tempfile.TemporaryDirectory() as folder:
            for backend, location in (("sqlite", str(Path(folder) / "gallery")), ("postgresql", cluster.create_database())):
                print(f"{backend}: {len(known):,} faces ...", flush=True)
                results[backend] = measure(location, known, extra, queries, args.per_identity, args.chunk)
    finally:
        cluster.destroy()

    rows = ["bulk_load_s", "index_build_at_start_s", "sync_after_1000_new_faces_s", "identify_p50_ms", "database_mb"]
    print(f"\n| {len(known):,} faces | SQLite | PostgreSQL | PostgreSQL / SQLite |\n|---|---:|---:|---:|")
    for row in rows:
        sqlite, postgres = results["sqlite"][row], results["postgresql"][row]
        print(f"| {row} | {sqlite} | {postgres} | {postgres / sqlite:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"faces": len(known), "per_identity": args.per_identity, **results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
