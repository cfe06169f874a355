"""Load on ``facesys serve``: identify throughput and latency at 1, 4, 16 and 32 concurrent
clients while another client enrolls new photos; bounded, loopback only, stops by itself.

    python benchmarks/serve_load.py                       # ~3 min on 2 cores
    python benchmarks/serve_load.py --requests 64 --levels 1 16

Setup (not timed): a server on 127.0.0.1:<free port> over a fresh gallery, with ``--base``
LFW people enrolled one photo each through the API. Each level sends ``--requests`` identify
requests, one LFW photo each (other photos of enrolled people and photos of people not enrolled),
from N clients at once (asyncio + httpx), while one more client enrolls its share of ``--enroll``
new photos, one per request: a photo each of people not in the base (a photo the quality gate
rejects, e.g. with several faces, is replaced by the person's next one and counted apart). Throughput = identify requests /
wall time of the level; latency per identify request. Afterwards every enrolled photo must be
in the gallery (by face id) and no request may have failed. The speed-up of each level is its
throughput over the 1-client level's, same server, same run. Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
from _common import DATA, RESULTS, ROOT

sys.path.insert(0, str(ROOT))
from tests.service.conftest import Server


def lfw_people(minimum: int) -> list[tuple[str, list[Path]]]:
    """(name, photos) of LFW people with at least ``minimum`` photos, by name."""
    folders = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir())
    found = [(f.name.replace("_", " "), sorted(f.glob("*.jpg"))) for f in folders]
    return [(name, photos) for name, photos in found if len(photos) >= minimum]


def plan(base: int, enroll: int, seed: int) -> tuple[list[tuple[str, Path]], list[Path], list[tuple[str, list[Path]]]]:
    """(base enrollments, probe photos, people to enroll during the run with their photos): probes
    are other photos of base people and photos of people never enrolled."""
    rng = random.Random(seed)
    people = lfw_people(2)
    rng.shuffle(people)
    base_people, rest = people[:base], people[base:]
    newcomers = [person for person in rest if len(person[1]) >= 4][:enroll]  # spare photos if one is rejected
    chosen = {name for name, _ in newcomers}
    strangers = [photos[0] for name, photos in rest if name not in chosen][: base // 2]
    base_items = [(name, photos[0]) for name, photos in base_people]
    probes = [p for _, photos in base_people for p in photos[1:3]] + strangers
    rng.shuffle(probes)
    return base_items, probes, newcomers


async def identify_level(client: httpx.AsyncClient, probes: list[bytes], requests: int, clients: int) -> tuple[list[float], int]:
    """``requests`` identify calls from ``clients`` concurrent tasks: (latencies in s, failures)."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(requests))

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            start = time.perf_counter()
            answer = await client.post("/v1/identify", files=[("images", (f"{i}.jpg", probes[i % len(probes)], "image/jpeg"))])
            latencies.append(time.perf_counter() - start)
            failures += answer.status_code != 200

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, failures


async def enroll_share(
    client: httpx.AsyncClient, people: list[tuple[str, list[Path]]], enrolled: dict[str, int]
) -> tuple[int, int]:
    """Enroll one photo of each person, one photo per request; a photo the quality gate rejects
    (several faces, too small) is replaced by the person's next one. Records name -> face id;
    returns (rejected photos, failed requests)."""
    rejected = failures = 0
    for name, photos in people:
        for photo in photos:
            answer = await client.post("/v1/people/" + quote(name, safe=""), files=[("images", (photo.name, photo.read_bytes()))])
            if answer.status_code == 201:
                enrolled[name] = answer.json()["results"][0]["face_id"]
                break
            if answer.status_code == 422 and answer.json()["error"]["code"] == "rejected":
                rejected += 1
                continue
            failures += 1
            print(f"enroll {photo.name}: {answer.status_code} {answer.text}", file=sys.stderr)
            break
    return rejected, failures


async def run(args: argparse.Namespace, server: Server) -> dict:
    base, probes, newcomers = plan(args.base, args.enroll, args.seed)
    probe_bytes = [p.read_bytes() for p in probes]
    limits = httpx.Limits(max_connections=max(args.levels) + 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
        for name, photo in base:
            await client.post("/v1/people/" + quote(name, safe=""), files=[("images", (photo.name, photo.read_bytes()))])
        await identify_level(client, probe_bytes, 8, 1)  # warm-up
        shares = [newcomers[i :: len(args.levels)] for i in range(len(args.levels))]
        enrolled: dict[str, int] = {}
        rows = []
        for clients, share in zip(args.levels, shares, strict=True):
            before = (await client.get("/healthz")).json()
            start = time.perf_counter()
            enrolling = asyncio.create_task(enroll_share(client, share, enrolled))
            latencies, failures = await identify_level(client, probe_bytes, args.requests, clients)
            seconds = time.perf_counter() - start
            rejected, enroll_failures = await enrolling
            after = (await client.get("/healthz")).json()
            batches = after["batches"] - before["batches"]
            rows.append(
                {
                    "clients": clients,
                    "requests": args.requests,
                    "seconds": round(seconds, 2),
                    "throughput_rps": round(args.requests / seconds, 2),
                    "p50_ms": round(1000 * statistics.median(latencies), 1),
                    "p99_ms": round(1000 * statistics.quantiles(latencies, n=100)[98], 1),
                    "errors": failures + enroll_failures,
                    "enrolled_during": len(share),
                    "enroll_rejected": rejected,
                    "images_per_batch": round((after["batched_images"] - before["batched_images"]) / max(1, batches), 2),
                }
            )
        missing = 0
        for name, face_id in enrolled.items():
            shown = await client.get("/v1/people/" + quote(name, safe=""))
            missing += shown.status_code != 200 or face_id not in [f["face_id"] for f in shown.json()["faces"]]
    one = next(r["throughput_rps"] for r in rows if r["clients"] == args.levels[0])
    for row in rows:
        row["speedup"] = round(row["throughput_rps"] / one, 2)
    counts = {"base_people": len(base), "people_to_enroll": len(newcomers), "new_photos": len(enrolled)}
    return counts | {"missing_after": missing, "levels": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32], help="Concurrent identify clients.")
    parser.add_argument("--requests", type=int, default=128, help="Identify requests per level.")
    parser.add_argument("--base", type=int, default=100, help="LFW people enrolled before the run.")
    parser.add_argument("--enroll", type=int, default=50, help="New photos enrolled during the run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    args = parser.parse_args()
    if not (DATA / "lfw").is_dir():
        sys.exit(f"LFW not found under {DATA}")
    with tempfile.TemporaryDirectory() as folder:
        options = ("--batch-size", str(args.batch_size), "--batch-wait-ms", str(args.batch_wait_ms), "-q")
        server = Server(Path(folder) / "gallery", *options, log=Path(folder) / "serve.log").wait_ready()
        try:
            result = asyncio.run(run(args, server))
        finally:
            server.stop()
    result |= {"cpu_count": os.cpu_count(), "batch_size": args.batch_size, "batch_wait_ms": args.batch_wait_ms}
    print(
        f"{'clients':>7} {'req/s':>7} {'speed-up':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'img/batch':>9} {'enrolled':>8}"
    )
    for r in result["levels"]:
        print(
            f"{r['clients']:>7} {r['throughput_rps']:>7.2f} {r['speedup']:>7.2f}x {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['errors']:>6} {r['images_per_batch']:>9.2f} {r['enrolled_during']:>8}"
        )
    print(f"enrolled photos missing afterwards: {result['missing_after']} of {result['new_photos']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["missing_after"] or result["new_photos"] < result["people_to_enroll"] or any(r["errors"] for r in result["levels"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
