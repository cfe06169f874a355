"""Peak memory and time of one optimizer step with triplet loss on dlib-resnet, by accumulation mode.

    python benchmarks/train_memory.py [--people 45 --per-person 40 --micro-batch 60]

Configurations, each in its own subprocess (so peak memory is its own):
  micro   one micro-batch alone (forward + backward): the memory budget accumulation aims for
  large   the whole effective batch P x K at once (no accumulation)
  naive   classic accumulation: micro-batches with grad, loss / steps, one optimizer step
  exact   cached-gradient accumulation (GradCache): exact large-batch gradient
Inputs are synthetic 150x150 chips (memory and time do not depend on the pixels); every layer is
trainable. Peak memory is the process's peak resident set size minus its size just before the
step (model loaded, inputs made); a configuration that cannot allocate within --limit-gb is
reported as out of memory. Time is wall-clock for one effective batch, after a warm-up.
Writes benchmarks/results/train_memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, people: int, per_person: int, micro: int) -> dict:
    import torch

    from facesys.models import create_model
    from facesys.train.accumulation import exact_backward, naive_backward
    from facesys.train.losses import batch_hard

    torch.manual_seed(0)
    model = create_model("dlib-resnet").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    total = people * per_person
    x = torch.rand(total if mode != "micro" else micro, 3, 150, 150)
    labels = torch.arange(people).repeat_interleave(per_person)[: len(x)]
    chunks = [(x[i : i + micro], labels[i : i + micro]) for i in range(0, len(x), micro)]

    def step() -> None:
        optimizer.zero_grad()
        if mode in ("large", "micro"):
            batch_hard(model(x), labels).backward()
        elif mode == "naive":
            naive_backward(model, batch_hard, chunks)
        else:
            exact_backward(model, batch_hard, chunks)
        optimizer.step()

    warm = x[:8]
    batch_hard(model(warm), labels[:8]).backward()  # warm-up: allocator, kernels
    before = rss_mb()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "batch": len(x), "seconds": round(seconds, 2), "peak_mb": round(peak), "step_mb": round(peak - before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=45)
    parser.add_argument("--per-person", type=int, default=40)
    parser.add_argument("--micro-batch", type=int, default=60)
    parser.add_argument(
        "--limit-gb", type=float, default=18.0, help="memory a configuration may use before it counts as out of memory"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        limit = int(args.limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        try:
            print(json.dumps(child(args.child, args.people, args.per_person, args.micro_batch)))
        except (RuntimeError, MemoryError) as exc:
            print(json.dumps({"mode": args.child, "out_of_memory": str(exc).splitlines()[0][:200]}))
        return

    rows = []
    for mode in ("micro", "large", "naive", "exact"):
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--people",
            str(args.people),
            "--per-person",
            str(args.per_person),
            "--micro-batch",
            str(args.micro_batch),
            "--limit-gb",
            str(args.limit_gb),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        rows.append(
            json.loads(lines[-1]) if lines else {"mode": mode, "out_of_memory": f"process ended with code {result.returncode}"}
        )
        print(rows[-1], file=sys.stderr)
    micro = next(r for r in rows if r["mode"] == "micro")
    total = args.people * args.per_person
    print(f"\neffective batch {args.people} x {args.per_person} = {total}, micro-batch {args.micro_batch}")
    print("dlib-resnet, every layer trained, synthetic 150x150 inputs")
    print(f"{'mode':<7} {'batch':>6} {'step memory MB':>15} {'x micro':>8} {'peak RSS MB':>12} {'seconds/step':>13}")
    for r in rows:
        if "out_of_memory" in r:
            print(f"{r['mode']:<7} out of memory within {args.limit_gb} GB: {r['out_of_memory']}")
            continue
        ratio = r["step_mb"] / micro["step_mb"] if micro.get("step_mb") else float("nan")
        print(f"{r['mode']:<7} {r['batch']:6d} {r['step_mb']:15d} {ratio:8.2f} {r['peak_mb']:12d} {r['seconds']:13.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_memory.json").write_text(json.dumps({"setup": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
