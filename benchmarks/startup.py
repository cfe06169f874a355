"""Start-up: a cold ``facesys verify a b`` against a bare ``python -c "import torch"``, same run.

    python benchmarks/startup.py             # ~1 min on 2 cores
    python benchmarks/startup.py --repeats 9

Each command runs ``--repeats`` times as a fresh process (interleaved, so a passing disturbance hits
all of them alike); the table shows the median wall time and its ratio to ``import torch``. Also
timed: ``facesys --help`` and ``python -c "import torchvision"`` (what verify no longer imports).
The model's converted weights are cached before timing (the first run ever converts them).
Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, ROOT


def commands(pair: list[Path]) -> dict[str, list[str]]:
    facesys = [sys.executable, "-m", "facesys.cli"]
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "facesys verify a b": [*facesys, "verify", *map(str, pair)],
        "facesys --help": [*facesys, "--help"],
        "import torchvision": [sys.executable, "-c", "import torchvision"],
    }


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    folder = DATA / "face_recognition" / "barack_obama"
    pair = [folder / "obama.jpg", folder / "obama2.jpg"]
    runs = commands(pair)
    check = subprocess.run(runs["facesys verify a b"], cwd=ROOT, capture_output=True, text=True, check=False)
    if check.returncode not in (0, 1):
        sys.exit(f"facesys verify failed: {check.stderr.strip()}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, command in runs.items():
            times[name].append(wall_time(command))
    base = statistics.median(times["import torch"])
    rows = {
        name: {"median_s": round(statistics.median(t), 3), "vs_import_torch": round(statistics.median(t) / base, 2)}
        for name, t in times.items()
    }
    print(f"\n| command ({args.repeats} cold runs each) | median | vs import torch |")
    print("|---|---:|---:|")
    for name, row in rows.items():
        print(f"| `{name}` | {row['median_s']} s | {row['vs_import_torch']}x |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps({"repeats": args.repeats, **rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
