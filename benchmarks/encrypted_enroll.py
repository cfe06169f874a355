"""What encryption at rest costs on real photos, end to end: enroll LFW photos and identify others
through the default pipeline into a gallery in clear and into an encrypted one, in the same run
(each step alternates between the two, so a busy machine slows both alike; best of --repeats).

    python benchmarks/encrypted_enroll.py            # 60 people x 3 photos, 60 probes: ~2 min on 2 cores

The store-level costs on a 1M-face gallery (start-up, index, identify) are benchmarks/gallery_store.py's.
Writes benchmarks/results/encrypted_enroll.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS

from facesys.gallery.sealing import write_new_key
from facesys.system import FaceSystem
from facesys.vision.embed import Embedder


def lfw_people(count: int, photos: int) -> list[tuple[str, list[Path], Path]]:
    """(name, ``photos`` enrollment photos, one probe photo) of the first ``count`` LFW people
    (by name) with at least photos + 1 photos."""
    chosen = []
    for folder in sorted((DATA / "lfw").iterdir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) > photos:
            chosen.append((folder.name, files[:photos], files[photos]))
        if len(chosen) == count:
            break
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "encrypted_enroll.json")
    args = parser.parse_args()
    people = lfw_people(args.people, args.photos)
    embedder = Embedder()
    embedder.faces([people[0][2]])  # warm up
    seconds: dict[str, dict[str, float]] = {"clear": {}, "encrypted": {}}
    answers: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as work:
        key = write_new_key(Path(work) / "gallery.key")
        for repeat in range(args.repeats):
            for variant, key_file in (("clear", None), ("encrypted", key.source))[:: 1 if repeat % 2 == 0 else -1]:
                system = FaceSystem(Path(work) / f"{variant}-{repeat}", embedder=embedder, key_file=key_file)
                started = time.perf_counter()
                system.enroll_many((name, photo) for name, photos, _ in people for photo in photos)
                enrolled = time.perf_counter() - started
                started = time.perf_counter()
                found = [system.identify(probe)[0] for _, _, probe in people]
                identified = time.perf_counter() - started
                best = seconds[variant]
                best["enroll"] = min(best.get("enroll", enrolled), enrolled)
                best["identify"] = min(best.get("identify", identified), identified)
                answers[variant] = [(result.name, round(result.distance, 5)) for result in found]
    if answers["clear"] != answers["encrypted"]:
        raise SystemExit("the encrypted gallery answered differently from the clear one")
    photos = args.people * args.photos
    rows = {
        f"enroll {photos} photos": ("enroll", photos),
        f"identify {args.people} photos, one at a time": ("identify", args.people),
    }
    print(f"{args.people} LFW people, {args.photos} photos each; default model and detector; best of {args.repeats}")
    print("\n| step | ms/photo, clear | ms/photo, encrypted | encrypted / clear |\n|---|---|---|---|")
    report: dict[str, object] = {"people": args.people, "photos_per_person": args.photos, "repeats": args.repeats}
    for label, (step, count) in rows.items():
        clear, sealed = (1000 * seconds[v][step] / count for v in ("clear", "encrypted"))
        ratio = sealed / clear
        print(f"| {label} | {clear:.1f} | {sealed:.1f} | {ratio:.2f}x |")
        report[step] = {"ms_per_photo_clear": round(clear, 2), "ms_per_photo_encrypted": round(sealed, 2)}
        report[step] |= {"ratio": round(ratio, 3)}
    report["same_answers"] = True
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
