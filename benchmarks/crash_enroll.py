"""Crash safety: kill facesys with SIGKILL at random moments and check the gallery.

    python benchmarks/crash_enroll.py --trials 50                  # all four kinds, 50 trials each
    python benchmarks/crash_enroll.py --trials 10 --kinds remove import

Every trial starts a real ``facesys`` process and kills it with SIGKILL after a delay drawn
uniformly over the duration of an uninterrupted run of the same operation (so interpreter start,
opening, transactions, index writes and clean-up all get hit), then checks the gallery. Kinds:

- ``enroll``: ``facesys enroll --json`` of 24 LFW photos into a gallery holding earlier people.
  Every enrollment reported (a printed line, flushed only after the commit) must be present, the
  earlier people intact.
- ``index``: one process forcing index rebuilds again and again (the CLI's ``gallery index --kind
  hnsw``, ``--kind flat`` and ``gallery repair``, run in turn in one process). No face may be lost,
  and after the next open (``sync.synced``) no ``.index-*.tmp`` or stale ``index-*`` file may
  remain: only the current index.
- ``remove``: ``facesys gallery remove "Joe Biden"``. A removal reported (exit 0 or "removed"
  printed) must have happened; the other people must be intact. Once the person is gone, already
  after ``gallery list`` (any command that opens the gallery finishes an interrupted erasure), and
  after one more normal command (``gallery remove`` again while the person is still there, else
  ``identify`` of another person's photo), NO file in the gallery folder (every file, -wal, -shm and
  temporary files included, searched byte-wise) may hold the victim's embeddings (the full 512
  bytes, or either half in case a page boundary splits it), a 256-byte piece of the first 4 KiB of
  one of their crops found in no other face's crop, their name or their photos' paths; the template
  also scanned the same photos into its photo library, so their library faces' embeddings and
  paths are searched for too.
- ``import``: ``facesys gallery import backup.zip`` into a new gallery folder: afterwards the
  gallery is absent or empty, or holds ALL the exported faces (one transaction: never a partial
  import); a reported import must be complete.

After every kind: SQLite's integrity check and facesys's own checks (``store.check()``) pass and
the saved index agrees with SQLite once loaded (``sync.synced`` + ``sync.problems``). The index,
remove and import galleries are copies of one template: Joe Biden (2 photos) and Barack Obama
(3 photos) enrolled from face_recognition's photos, plus synthetic filler faces (random unit
embeddings, noise JPEG crops) so index writes, the VACUUM of a removal and an import take long
enough to be hit. Prints a table, writes benchmarks/results/crash_enroll.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, ROOT

KINDS = ("enroll", "index", "remove", "import")
VICTIM = "Joe Biden"
TIMEOUT_S = 300.0  # no subprocess of a trial may run longer
FILLER_PER_PERSON = 10


def environment() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(gallery: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facesys.cli", "--gallery", str(gallery), *map(str, args)]


def enroll_command(gallery: Path, name: str, photos: list[Path]) -> list[str]:
    return cli(gallery, "enroll", "--json", "--name", name, *photos)


def finish(command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` to the end (bounded by TIMEOUT_S)."""
    return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=TIMEOUT_S, check=False)


def killed_run(command: list[str], delay: float) -> tuple[bool, int, str]:
    """Start ``command``, SIGKILL it after ``delay`` seconds unless it ended first; returns
    (killed, exit status, what it printed on stdout)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment())
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        killed = True
    process.wait(timeout=TIMEOUT_S)
    reader.join(timeout=10)
    return killed, process.returncode, "".join(lines)


def timed(command: list[str], repeats: int = 2) -> float:
    """The shortest wall time of ``repeats`` uninterrupted runs of ``command`` (which must succeed)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        done = finish(command)
        best = min(best, time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return best


def health(folder: Path) -> tuple[list[str], dict[str, int], set[str]]:
    """Open the gallery as the next command would: (problems, people and face counts, image sha256s).
    The saved index is loaded, followed or rebuilt and saved (``sync.synced``), then compared with
    SQLite id by id and vector by vector."""
    from facesys.gallery.index import sync
    from facesys.gallery.store.sqlite import SQLiteStore

    try:
        with SQLiteStore(folder) as store:
            problems = list(store.check())
            sync.synced(store, store.folder)
            problems += sync.problems(store, store.folder)
            return problems, dict(store.people()), {f.image_sha256 for f in store.faces()}
    except Exception as exc:  # any failure to open is exactly what this benchmark looks for
        return [f"gallery does not open: {type(exc).__name__}: {exc}"], {}, set()


# -- enroll -------------------------------------------------------------------------------------


def run_trial(gallery: Path, name: str, photos: list[Path], delay: float) -> dict:
    """One killed enrollment; returns what it reported and what the checks found."""
    from facesys.gallery.index import sync
    from facesys.gallery.store.sqlite import SQLiteStore

    killed, _, out = killed_run(enroll_command(gallery, name, photos), delay)
    reported = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
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
        "delay_s": round(delay, 3),
        "killed": killed,
        "reported_done": len(done),
        "lost": len(done - present),
        "leftover": [],
        "people": people,
        "problems": problems,
    }


def prepare(gallery: Path, earlier: list[Path], timing: list[Path]) -> tuple[dict[str, int], float]:
    """An existing gallery with earlier people, enrolled normally; returns them and how long an
    uninterrupted enrollment of ``timing`` photos takes (the kills are spread over that time)."""
    finish(enroll_command(gallery, "Earlier One", earlier[:2]))
    started = time.perf_counter()
    finish(enroll_command(gallery, "Earlier Two", timing))
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
        progress("enroll", trial, trials)
    return summary(rows, duration) | {
        "reported_enrollments": sum(r["reported_done"] for r in rows),
        "lost_enrollments": sum(r["lost"] for r in rows),
    }


def progress(kind: str, trial: int, trials: int) -> None:
    print(f"\r{kind}: trial {trial + 1}/{trials}", end="\n" if trial + 1 == trials else "", file=sys.stderr, flush=True)


def summary(rows: list[dict], duration: float) -> dict:
    return {
        "trials": len(rows),
        "uninterrupted_run_s": round(duration, 3),
        "killed": sum(r["killed"] for r in rows),
        "reported_done": sum(r["reported_done"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "corrupt_galleries": sum(bool(r["problems"]) for r in rows),
        "leftover": sum(bool(r["leftover"]) for r in rows),
        "rows": rows,
    }


# -- the template gallery of the index, remove and import kinds ---------------------------------


def victim_photos() -> list[Path]:
    return sorted((DATA / "face_recognition" / "joe_biden").glob("*.jpg"))


def other_photos() -> list[Path]:
    folder = DATA / "face_recognition" / "barack_obama"
    return [folder / "obama.jpg", folder / "obama1.jpg", folder / "obama2.jpg"]


PROBE = DATA / "face_recognition" / "barack_obama" / "obama3.jpg"  # identified after a removal


def make_template(folder: Path, filler: int, seed: int) -> None:
    """Joe Biden and Barack Obama enrolled through the CLI, then ``filler`` synthetic faces
    (``FILLER_PER_PERSON`` a person) added through the store, and the index saved."""
    import cv2
    import numpy as np

    from facesys.gallery.store import NewFace
    from facesys.gallery.store.sqlite import SQLiteStore

    for name, photos in ((VICTIM, victim_photos()), ("Barack Obama", other_photos())):
        done = finish(enroll_command(folder, name, photos))
        if done.returncode != 0:
            raise RuntimeError(f"enrolling {name} failed: {done.stderr[-2000:]}")
    rng = np.random.default_rng(seed)
    with SQLiteStore(folder) as store:
        faces = []
        for i in range(filler):
            vector = rng.normal(size=store.dim).astype(np.float32)
            pixels = rng.integers(0, 255, (24, 24, 3), np.uint8)
            face = NewFace(
                source=f"/synthetic/{i}.jpg",
                image_sha256=f"{seed:08x}{i:056x}",
                box=np.array([10, 20, 110, 140.0]),
                landmarks=rng.uniform(20, 100, (5, 2)),
                score=0.99,
                crop_jpeg=cv2.imencode(".jpg", pixels)[1].tobytes(),
                crop_origin=(0.0, 0.0, 1.0),
                embedding=vector / np.linalg.norm(vector),
            )
            faces.append((f"Filler {i // FILLER_PER_PERSON:04d}", face))
        if faces:
            store.add_faces(faces, store.model_id)
    done = finish(cli(folder, "gallery", "repair"))
    if done.returncode != 0:
        raise RuntimeError(f"gallery repair failed: {done.stderr[-2000:]}")
    library = folder.with_name(folder.name + "-library")  # the same photos in a scanned photo library too
    library.mkdir(exist_ok=True)
    for photo in [*victim_photos(), *other_photos()[:1]]:
        shutil.copy(photo, library / photo.name)
    done = finish(cli(folder, "scan", str(library)))  # their faces are attached to them automatically
    if done.returncode != 0:
        raise RuntimeError(f"scanning the library failed: {done.stderr[-2000:]}")


def copy_of(template: Path, workdir: Path) -> Path:
    """A fresh copy of the template gallery in a temporary folder under ``workdir``."""
    folder = Path(tempfile.mkdtemp(prefix="trial-", dir=workdir)) / "gallery"
    shutil.copytree(template, folder)
    return folder


def drop(folder: Path) -> None:
    shutil.rmtree(folder.parent, ignore_errors=True)


# -- index --------------------------------------------------------------------------------------

# One process running the CLI's index commands again and again: each forces a rebuild and a save.
INDEX_DRIVER = """
import sys
from facesys.cli import main
gallery, count = sys.argv[1], int(sys.argv[2])
steps = [["gallery", "index", "--kind", "hnsw"], ["gallery", "index", "--kind", "flat"], ["gallery", "repair"]]
for i in range(count):
    try:
        main.main(["--gallery", gallery, *steps[i % len(steps)]], standalone_mode=False)
    except SystemExit as exit:  # the CLI exits after each command; a failure ends the run
        if exit.code not in (0, None):
            raise
    print("done", i, flush=True)
"""


def index_command(gallery: Path, rebuilds: int) -> list[str]:
    return [sys.executable, "-c", INDEX_DRIVER, str(gallery), str(rebuilds)]


def stale_index_files(folder: Path) -> list[str]:
    """Index files other than the current state's, and temporary index files."""
    from facesys.gallery.index import sync
    from facesys.gallery.index.base import TEMPORARY_PREFIX
    from facesys.gallery.store.sqlite import SQLiteStore

    with SQLiteStore(folder) as store, store.reading():
        current = sync.index_file(folder, sync.current_header(store))
    return sorted(p.name for p in [*folder.glob("index-*"), *folder.glob(f"{TEMPORARY_PREFIX}*")] if p != current)


def index_trial(template: Path, workdir: Path, rebuilds: int, delay: float, expected: set[str]) -> dict:
    folder = copy_of(template, workdir)
    try:
        killed, _, out = killed_run(index_command(folder, rebuilds), delay)
        done = sum(line.startswith("done") for line in out.splitlines())
        problems, _, present = health(folder)  # the next open
        leftover = []
        if not any(p.startswith("gallery does not open") for p in problems):
            leftover = [{"file": name, "found": "stale index file after the next open"} for name in stale_index_files(folder)]
            checked = finish(cli(folder, "gallery", "check"))
            if checked.returncode != 0:
                said = f"{checked.stdout.strip()} {checked.stderr.strip()}"
                problems.append(f"'facesys gallery check' exit {checked.returncode}: {said[-500:]}")
        lost = len(expected - present)
        if lost:
            problems.append(f"{lost} faces lost")
        return {
            "delay_s": round(delay, 3),
            "killed": killed,
            "reported_done": done,
            "lost": lost,
            "leftover": leftover,
            "problems": problems,
        }
    finally:
        drop(folder)


def run_index(trials: int, workdir: Path, template: Path, seed: int, rebuilds: int = 40) -> dict:
    rng = random.Random(seed)
    _, _, expected = health(template)
    folder = copy_of(template, workdir)
    duration = timed(index_command(folder, rebuilds), repeats=1)
    drop(folder)
    rows = []
    for trial in range(trials):
        rows.append(index_trial(template, workdir, rebuilds, rng.uniform(0, duration), expected))
        progress("index", trial, trials)
    return summary(rows, duration) | {"rebuilds_per_run": rebuilds}


# -- remove -------------------------------------------------------------------------------------


def victim_signatures(template: Path) -> list[tuple[str, bytes]]:
    """(what, bytes) that only the victim's data holds: each embedding (float32 little-endian,
    whole and halves), 256-byte pieces of the first 4 KiB of each crop that no other face's crop
    holds, the name (UTF-8) and each photo's path as stored."""
    from facesys.gallery.store.sqlite import SQLiteStore

    with SQLiteStore(template) as store:
        victim = {f.id: f for f in store.faces(VICTIM)}
        ids, vectors, _ = store.embeddings()
        crops = {face_id: jpeg for face_id, jpeg, _, _ in store.crops()}
        library = store.library_faces(person=VICTIM)  # their faces in the scanned library
        library_vectors = store.library_vectors([f.id for f in library])
    others = b"\0".join(jpeg for face_id, jpeg in crops.items() if face_id not in victim)
    signatures = [("name", VICTIM.encode())]
    for face, vector in zip(library, library_vectors, strict=True):
        signatures.append((f"embedding of library face {face.id}", vector.astype("<f4").tobytes()))
        signatures.append((f"photo path of library face {face.id}", face.path.encode()))
    for face_id, vector in zip(ids.tolist(), vectors, strict=True):
        if face_id in victim:
            raw = vector.astype("<f4").tobytes()
            half = len(raw) // 2
            signatures += [(f"embedding of face {face_id}", raw), (f"embedding of face {face_id} (first half)", raw[:half])]
            signatures.append((f"embedding of face {face_id} (second half)", raw[half:]))
            signatures.append((f"photo path of face {face_id}", victim[face_id].source.encode()))
    for face_id in victim:
        head = crops[face_id][:4096]
        for start in range(0, len(head) - 255, 256):
            piece = head[start : start + 256]
            if piece not in others:  # JPEG headers are the same in every crop: not personal
                signatures.append((f"crop of face {face_id} (bytes {start}-{start + 255})", piece))
    return signatures


def leftovers(folder: Path, signatures: list[tuple[str, bytes]]) -> list[dict]:
    """Every file under ``folder`` that holds one of ``signatures``, with what it holds."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        held = [what for what, raw in signatures if raw in data]
        if held:
            found.append({"file": path.name, "found": held})
    return found


def remove_trial(template: Path, workdir: Path, delay: float, signatures: list, others: dict[str, int]) -> dict:
    folder = copy_of(template, workdir)
    try:
        killed, code, out = killed_run(cli(folder, "gallery", "remove", VICTIM), delay)
        reported = code == 0 or "removed" in out
        problems: list[str] = []
        listed = finish(cli(folder, "gallery", "list", "--json"))
        after_list = leftovers(folder, signatures)  # any command opening the gallery finishes an interrupted erasure
        if listed.returncode != 0:
            problems.append(f"'facesys gallery list' exit {listed.returncode}: {listed.stderr.strip()[-500:]}")
            still_there = True
        else:
            still_there = VICTIM in {p["name"] for p in json.loads(listed.stdout)["people"]}
        if reported and still_there:
            problems.append("removal reported, but the person is still enrolled")
        if still_there:  # the user removes them again
            next_command = finish(cli(folder, "gallery", "remove", VICTIM))
            accepted = (0,)
        else:  # the next search re-syncs the index
            next_command = finish(cli(folder, "identify", "--json", PROBE))
            accepted = (0, 3)
        if next_command.returncode not in accepted:
            problems.append(f"next command exit {next_command.returncode}: {next_command.stderr.strip()[-500:]}")
        leftover = leftovers(folder, signatures) or ([] if still_there else after_list)
        after_repair = None
        if leftover:  # does the documented remedy ('gallery repair') finish erasing?
            finish(cli(folder, "gallery", "repair"))
            after_repair = leftovers(folder, signatures)
        health_problems, people, _ = health(folder)
        problems += health_problems
        if VICTIM in people:
            problems.append("the person is still enrolled after the second removal")
        kept = {name: people.get(name) for name in others}
        if kept != others:
            changed = {name: (count, kept[name]) for name, count in others.items() if kept[name] != count}
            problems.append(f"other people changed (before, after): {changed}")
        return {
            "delay_s": round(delay, 3),
            "killed": killed,
            "exit": code,
            "reported_done": int(reported),
            "lost": int(reported and still_there),
            "victim_present_after_kill": still_there,
            "leftover": leftover,
            "leftover_after_repair": after_repair,
            "problems": problems,
        }
    finally:
        drop(folder)


def run_remove(trials: int, workdir: Path, template: Path, seed: int) -> dict:
    rng = random.Random(seed)
    signatures = victim_signatures(template)
    groups = sorted({what.split(" (")[0] for what, _ in signatures})
    seen = {what.split(" (")[0] for hit in leftovers(template, signatures) for what in hit["found"]}
    if set(groups) - seen:  # the search must find the victim before the removal, or it proves nothing
        raise RuntimeError(f"victim data not found in the template gallery: {sorted(set(groups) - seen)}")
    _, people, _ = health(template)
    others = {name: count for name, count in people.items() if name != VICTIM}
    folder = copy_of(template, workdir)
    duration = timed(cli(folder, "gallery", "remove", VICTIM), repeats=1)
    clean_after = leftovers(folder, signatures)
    drop(folder)
    if clean_after:
        print(f"warning: an uninterrupted removal leaves the victim's data: {clean_after}", file=sys.stderr)
    rows = []
    for trial in range(trials):
        rows.append(remove_trial(template, workdir, rng.uniform(0, duration), signatures, others))
        progress("remove", trial, trials)
    return summary(rows, duration) | {
        "signatures": len(signatures),
        "uninterrupted_removal_leftover": clean_after,
    }


# -- import -------------------------------------------------------------------------------------


def import_trial(backup: Path, workdir: Path, delay: float, exported: set[str], people: dict[str, int]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="trial-", dir=workdir)) / "gallery"
    try:
        killed, code, out = killed_run(cli(folder, "gallery", "import", backup), delay)
        reported = code == 0 or "imported" in out
        problems: list[str] = []
        if not (folder / "gallery.sqlite3").exists():
            state, present = "absent", set()
        else:
            problems, found, present = health(folder)
            if not present:
                state = "empty"
            elif present == exported and found == people:
                state = "complete"
            else:
                state = "partial"
                problems.append(f"partial import: {len(present & exported)} of {len(exported)} faces, {len(found)} people")
        lost = len(exported - present) if reported else 0
        if lost:
            problems.append(f"import reported, but {lost} faces are missing ({state})")
        return {
            "delay_s": round(delay, 3),
            "killed": killed,
            "exit": code,
            "reported_done": int(reported),
            "lost": lost,
            "state": state,
            "leftover": [],
            "problems": problems,
        }
    finally:
        drop(folder)


def run_import(trials: int, workdir: Path, template: Path, seed: int) -> dict:
    rng = random.Random(seed)
    backup = workdir / "backup.zip"
    done = finish(cli(template, "gallery", "export", backup))
    if done.returncode != 0:
        raise RuntimeError(f"export failed: {done.stderr[-2000:]}")
    _, people, exported = health(template)
    durations = []
    for _ in range(2):
        folder = Path(tempfile.mkdtemp(prefix="trial-", dir=workdir)) / "gallery"
        durations.append(timed(cli(folder, "gallery", "import", backup), repeats=1))
        drop(folder)
    duration = min(durations)
    rows = []
    for trial in range(trials):
        rows.append(import_trial(backup, workdir, rng.uniform(0, duration), exported, people))
        progress("import", trial, trials)
    states = {state: sum(r["state"] == state for r in rows) for state in ("absent", "empty", "complete", "partial")}
    return summary(rows, duration) | {"exported_faces": len(exported), "states": states}


# -- all ----------------------------------------------------------------------------------------


def run_kinds(kinds: list[str], trials: int, workdir: Path, seed: int = 0, filler: int = 3000) -> dict:
    """``trials`` killed runs of each of ``kinds``; per kind the summary and its rows."""
    results = {}
    template = workdir / "template"
    for kind in kinds:
        started = time.perf_counter()
        kind_dir = workdir / kind
        kind_dir.mkdir(parents=True, exist_ok=True)
        if kind == "enroll":
            result = run(trials, kind_dir, seed)
        else:
            if not template.exists():
                make_template(template, filler, seed)
            runner = {"index": run_index, "remove": run_remove, "import": run_import}[kind]
            result = runner(trials, kind_dir, template, seed) | {"filler_faces": filler}
        shutil.rmtree(kind_dir, ignore_errors=True)
        results[kind] = result | {"wall_s": round(time.perf_counter() - started, 1)}
    shutil.rmtree(template, ignore_errors=True)
    return results


LEFTOVER_MEANING = {
    "enroll": "-",
    "index": "stale index or temporary files after the next open",
    "remove": "gallery files holding the removed person's embedding, crop, name or photo path",
    "import": "-",
}


def print_table(results: dict) -> None:
    heads = f"{'trials':>6} {'killed':>6} {'reported done':>13} {'lost':>5}"
    print(f"{'kind':<7} {heads} {'corrupt':>7} {'leftover':>8} {'run s':>6}")
    for kind, r in results.items():
        counts = f"{r['trials']:6d} {r['killed']:6d} {r['reported_done']:13d} {r['lost']:5d}"
        print(f"{kind:<7} {counts} {r['corrupt_galleries']:7d} {r['leftover']:8d} {r['uninterrupted_run_s']:6.2f}")
    print("run s: an uninterrupted run; kill times are uniform over it. reported done: enrollments (enroll), index commands")
    print("finished (index), removals and imports reported (remove, import). leftover: trials with leftover files, i.e.")
    for kind, meaning in LEFTOVER_MEANING.items():
        if kind in results and meaning != "-":
            print(f"  {kind}: {meaning}")
    for kind, r in results.items():
        for row in r["rows"]:
            for problem in row["problems"]:
                print(f"  {kind}, delay {row['delay_s']} s: {problem}")
            for hit in row["leftover"]:
                print(f"  {kind}, delay {row['delay_s']} s: leftover in {hit['file']}: {hit['found']}")
            if row.get("leftover_after_repair"):
                print(f"  {kind}, delay {row['delay_s']} s: still there after 'gallery repair': {row['leftover_after_repair']}")


def sqlite_build() -> dict:
    """The SQLite library's version and whether deleted content is overwritten by default
    (SQLITE_SECURE_DELETE): without it, a removal killed between its COMMIT and its VACUUM leaves
    the deleted rows' bytes in free pages of the database file."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        secure = bool(db.execute("PRAGMA secure_delete").fetchone()[0])
        return {"version": sqlite3.sqlite_version, "secure_delete_default": secure}
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="trials of each kind")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filler", type=int, default=3000, help="synthetic faces in the index/remove/import gallery")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "crash-work")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    started = time.perf_counter()
    try:
        results = run_kinds(args.kinds, args.trials, args.workdir, args.seed, args.filler)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "command": "python benchmarks/crash_enroll.py " + " ".join(sys.argv[1:]),
        "wall_s": round(time.perf_counter() - started, 1),
        "victim": VICTIM,
        "sqlite": sqlite_build(),
        "leftover_means": {kind: LEFTOVER_MEANING[kind] for kind in results},
        "kinds": results,
    }
    (RESULTS / "crash_enroll.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
