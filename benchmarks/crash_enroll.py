"""Crash safety: kill ``facesys enroll`` with SIGKILL at random moments and check the gallery.

    python benchmarks/crash_enroll.py --trials 50

Each trial starts ``facesys enroll --json --name <person> <photos>`` on a gallery that already
holds earlier people, reads the lines it prints (one per photo, printed and flushed only after
the photo is committed), kills it with SIGKILL after a random delay (model loading, detection,
commits and index writes all get hit), then reopens the gallery and checks:
it opens; SQLite's integrity check and facesys's own checks pass (no half-written face: every
embedding finite, unit length, right size; every crop a JPEG; nobody without faces); every
enrollment reported as done is present; every earlier person is intact; and the FAISS index
agrees with SQLite once loaded (rebuilt if it was stale). Prints a table, writes
benchmarks/results/crash_enroll.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, ROOT


def enroll_command(gallery: Path, name: str, photos: list[Path]) -> list[str]:
    return [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), "enroll", "--json", "--name", name, *map(str, photos)]


def run_trial(gallery: Path, name: str, photos: list[Path], delay: float) -> dict:
    """One killed enrollment; returns what it reported and what the checks found."""
    from facesys.gallery.index import sync
    from facesys.gallery.store.sqlite import SQLiteStore

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        enroll_command(gallery, name, photos), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    time.sleep(delay)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    reported = [json.loads(line) for line in lines if line.startswith("{")]
    done = {r["face_id"] for r in reported if r.get("status") == "enrolled"}
    problems: list[str] = []
    present: set[int] = set()
    people: dict[str, int] = {}
    try:
        with SQLiteStore(gallery) as store:
            problems += store.check()
            present = {f.id for f in store.faces()}
            if done - present:
                problems.append(f"reported but missing: faces {sorted(done - present)}")
            sync.synced(store, store.folder)  # loads the saved index or rebuilds a stale one
            problems += sync.problems(store, store.folder)
            people = dict(store.people())
    except Exception as exc:  # any failure to open is exactly what this benchmark looks for
        problems.append(f"gallery does not open: {type(exc).__name__}: {exc}")
    return {
        "delay_s": round(delay, 2),
        "killed": killed,
        "reported_done": len(done),
        "lost": len(done - present),
        "people": people,
        "problems": problems,
    }


def prepare(gallery: Path, earlier: list[Path], timing: list[Path]) -> tuple[dict[str, int], float]:
    """An existing gallery with earlier people, enrolled normally; returns them and how long an
    uninterrupted enrollment of ``timing`` photos takes (the kills are spread over that time)."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run(enroll_command(gallery, "Earlier One", earlier[:2]), check=False, capture_output=True, env=env)
    started = time.perf_counter()
    subprocess.run(enroll_command(gallery, "Earlier Two", timing), check=False, capture_output=True, env=env)
    duration = time.perf_counter() - started
    from facesys.gallery.store.sqlite import SQLiteStore

    with SQLiteStore(gallery) as store:
        return dict(store.people()), duration


def run(trials: int, workdir: Path, seed: int = 0, photos_per_trial: int = 24) -> dict:
    """``trials`` killed enrollments of ``photos_per_trial`` LFW photos each, the kill time drawn
    uniformly over the duration of an uninterrupted run (so every phase gets hit)."""
    lfw = DATA / "lfw"
    pool = sorted(lfw.glob("*/*_0001.jpg"))[:600]
    rng = random.Random(seed)
    gallery = workdir / "gallery"
    earlier, duration = prepare(gallery, pool[:2], pool[2 : 2 + photos_per_trial])
    rows = []
    for trial in range(trials):
        photos = rng.sample(pool[2 + photos_per_trial :], photos_per_trial)
        rows.append(run_trial(gallery, f"Trial {trial}", photos, rng.uniform(0.2, duration)))
        kept = {name: rows[-1]["people"].get(name) for name in earlier}
        if kept != earlier:
            rows[-1]["problems"].append(f"earlier people changed: {kept} != {earlier}")
        print(f"\rtrial {trial + 1}/{trials}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {
        "trials": trials,
        "uninterrupted_run_s": round(duration, 1),
        "killed": sum(r["killed"] for r in rows),
        "reported_enrollments": sum(r["reported_done"] for r in rows),
        "lost_enrollments": sum(r["lost"] for r in rows),
        "corrupt_galleries": sum(bool(r["problems"]) for r in rows),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=RESULTS / "crash-work")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    result = run(args.trials, args.workdir, args.seed)
    print(f"kill times uniform in [0.2, {result['uninterrupted_run_s']}] s (an uninterrupted run of 24 photos)")
    print(f"{'trials':>7} {'killed mid-run':>15} {'enrollments reported':>21} {'lost':>5} {'corrupt galleries':>18}")
    r = result
    counts = f"{r['trials']:7d} {r['killed']:15d} {r['reported_enrollments']:21d}"
    print(f"{counts} {r['lost_enrollments']:5d} {r['corrupt_galleries']:18d}")
    for row in result["rows"]:
        for problem in row["problems"]:
            print(f"  delay {row['delay_s']} s: {problem}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crash_enroll.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
