"""Identify on a busy machine: throughput of one process alone, of two facesys processes at once,
and of one beside CPU-burning processes; and a warm in-process verify beside the burners.

    python benchmarks/contention.py                      # ~8 min on 2 cores
    python benchmarks/contention.py --photos 40 --burners 4 --policies facesys one-thread

Each measurement runs worker processes (this script with ``--worker``): each loads the model and a
small gallery (10 LFW people, not timed), warms up, then identifies ``--photos`` LFW photos in
batches as ``facesys identify`` does and reports photos/s, then times ``--verifies`` warm verify
calls. Burners are ``python -c "while True: pass"`` processes (4 on a 2-core machine: a load of
about 6 with the worker), run twice: together in a session of their own, as a program started in
another terminal or by a service is, and each in the worker's session. Where Linux schedules by
session (autogroup: /proc/sys/kernel/sched_autogroup_enabled, on by default in most distributions'
kernels), the first leaves facesys's session half the CPU; the second shares the CPU per thread:
T facesys threads beside B burners on C cores get at most C*T/(T+B) cores, whatever facesys does.
Policies (see POLICIES and facesys/threads.py): ``facesys`` (its default: a batch split between
cores + 2 photo workers of one thread each; a single photo on threads chosen from the free cores,
waiting threads spin ~0.1 ms, then sleep), ``workers=cores`` (a fixed count: as many photo workers
as cores), ``intra-op`` (facesys before the photo workers: each batch on threads chosen from the
free cores), ``openmp-default`` (a thread per core spinning OpenMP's default 300,000 rounds, no
photo workers: torch without facesys) and ``one-thread``. Ratios are against the same policy
alone, same run; the run takes about 10 minutes.
Writes benchmarks/results/contention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, ROOT

# Environments of the workers (a fixed FACESYS_THREADS makes facesys's waiting threads sleep at once;
# NO_PHOTO_WORKERS, read by this script's worker, runs each batch in the calling thread as before).
CORES = str(len(os.sched_getaffinity(0)))
NO_PHOTO_WORKERS = "CONTENTION_NO_PHOTO_WORKERS"
POLICIES = {
    "facesys": {},
    "workers=cores": {"FACESYS_THREADS": CORES},
    "intra-op": {NO_PHOTO_WORKERS: "1"},
    "openmp-default": {"FACESYS_THREADS": CORES, "GOMP_SPINCOUNT": "300000", NO_PHOTO_WORKERS: "1"},
    "one-thread": {"FACESYS_THREADS": "1"},
}
CHOSEN_BY_POLICY = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FACESYS_THREADS", NO_PHOTO_WORKERS)


def worker(photos: int, verifies: int, gallery: Path) -> None:
    """Runs in a worker process: prints one JSON line (photos/s, verify seconds)."""
    from facesys import FaceSystem, threads

    if os.environ.get(NO_PHOTO_WORKERS):
        threads.photo_workers = lambda: 1

    folders = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    probes = [sorted(f.glob("*.jpg"))[1] for f in folders[:photos]]
    system = FaceSystem(gallery)
    system.identify_many(probes[:4])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(probes), 16):
        system.identify_many(probes[start : start + 16])
    rate = len(probes) / (time.perf_counter() - started)
    pair = sorted(folders[0].glob("*.jpg"))[:2]
    system.verify(*pair)
    times = []
    for _ in range(verifies):
        started = time.perf_counter()
        system.verify(*pair)
        times.append(time.perf_counter() - started)
    print(json.dumps({"photos_per_s": rate, "verify_s": sorted(times)[len(times) // 2]}), flush=True)


def run_workers(count: int, env: dict, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, __file__, "--worker", "--photos", str(args.photos), "--verifies", str(args.verifies)]
    command += ["--gallery", str(args.gallery)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]
    return [json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1]) for p in processes]


def beside_burners(own_session: bool, env: dict, args: argparse.Namespace) -> dict:
    """One worker's result while ``args.burners`` CPU-burning processes run: together in a session of
    their own (like ``make -j4`` started in another terminal: Linux's autogroup scheduling shares the
    CPU between sessions) or each in the worker's session (like ``make -j4 &`` in the same shell)."""
    burn = [sys.executable, "-c", "while True: pass"]
    if own_session:
        group = [subprocess.Popen([sys.executable, "-c", BURNER_SESSION, str(args.burners)], start_new_session=True)]
    else:
        group = [subprocess.Popen(burn) for _ in range(args.burners)]
    try:
        return run_workers(1, env, args)[0]
    finally:
        for process in group:
            if own_session:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()


# Runs as the leader of a new session: starts N burners in it and waits (they die with its process group).
BURNER_SESSION = (
    "import subprocess, sys; "
    "burners = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(int(sys.argv[1]))]; "
    "[b.wait() for b in burners]"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gallery", type=Path, default=RESULTS / "cache" / "contention-gallery")
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--verifies", type=int, default=15)
    parser.add_argument("--burners", type=int, default=4)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()
    if args.worker:
        worker(args.photos, args.verifies, args.gallery)
        return
    if not (args.gallery / "gallery.sqlite3").exists():
        folders = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:10]
        for folder in folders:
            photo = sorted(folder.glob("*.jpg"))[0]
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "facesys.cli",
                    "-q",
                    "--gallery",
                    str(args.gallery),
                    "enroll",
                    "--name",
                    folder.name,
                    str(photo),
                ],
                check=False,
                cwd=ROOT,
            )
    rows = {}
    for policy in args.policies:
        env = {k: v for k, v in os.environ.items() if k not in CHOSEN_BY_POLICY}
        env |= POLICIES[policy]
        alone = run_workers(1, env, args)[0]
        pair = run_workers(2, env, args)
        busy = {session: beside_burners(session == "own", env, args) for session in ("own", "same")}
        rows[policy] = {
            "alone_photos_per_s": round(alone["photos_per_s"], 2),
            "two_processes_photos_per_s": round(sum(r["photos_per_s"] for r in pair), 2),
            "two_vs_alone": round(sum(r["photos_per_s"] for r in pair) / alone["photos_per_s"], 2),
            "verify_alone_s": round(alone["verify_s"], 3),
        }
        for session, result in busy.items():
            rows[policy] |= {
                f"busy_{session}_session_photos_per_s": round(result["photos_per_s"], 2),
                f"busy_{session}_session_slowdown": round(alone["photos_per_s"] / result["photos_per_s"], 2),
                f"verify_busy_{session}_session_s": round(result["verify_s"], 3),
            }
        print(policy, rows[policy], flush=True)
    header = ["policy", "alone photos/s", "two processes (total)", "vs alone"]
    header += ["beside burners, own session", "slower by", "same session", "slower by"]
    header += ["verify alone", "verify beside burners (own / same session)"]
    print("\n| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for policy, r in rows.items():
        print(
            f"| {policy} | {r['alone_photos_per_s']} | {r['two_processes_photos_per_s']} | {r['two_vs_alone']}x | "
            f"{r['busy_own_session_photos_per_s']} | {r['busy_own_session_slowdown']}x | "
            f"{r['busy_same_session_photos_per_s']} | {r['busy_same_session_slowdown']}x | {r['verify_alone_s']} s | "
            f"{r['verify_busy_own_session_s']} s / {r['verify_busy_same_session_s']} s |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "contention.json").write_text(
        json.dumps({"photos": args.photos, "burners": args.burners, **rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
