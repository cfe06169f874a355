"""Races between changes (issue 23, hole 2 and the remove/identify check of hole 4): lost updates and
stale names, on a SQLite folder gallery and, where tests/postgres.py can start a throwaway server,
on PostgreSQL. Bounded, loopback only, stops by itself.

    python benchmarks/races.py                      # 20 trials of each kind, both backends
    python benchmarks/races.py --trials 3 --backends sqlite

Kinds:

- ``name``: two ``facesys name CLUSTER NAME`` processes started at the same moment on one cluster
  of 3 unnamed library faces (synthetic faces of an 8-D test model, so no face model is loaded;
  naming does not look at pixels). Exactly one must exit 0 and the other exit 2 with one line
  naming the winner. A *lost update*: both exit 0, or afterwards the faces, the people or the audit
  log disagree with the winner's report (a face not the winner's, the winner without its 3
  enrolled copies, the loser's name a person, not exactly one "name_faces" event for the faces, or
  a "remove_faces" event undoing them). The loser's line says whether it lost inside the store's
  compare-and-set ("meanwhile": both had read the cluster before either wrote) or found the
  cluster named already.
- ``remove``: two ``facesys serve`` processes on 127.0.0.1 over one gallery (LFW people, the real
  model). Each trial enrolls a person (2 photos) through server A, waits until server B names them
  in an identify of a third photo, then one client per server identifies that photo again and
  again while server A answers ``DELETE /v1/people/NAME``; the clients go on for ``--after`` seconds
  after the DELETE returned. A *stale name*: an identify answer naming the person to a request
  sent after the DELETE returned (either server).

Prints a table, writes benchmarks/results/races.json. ``--facesys DIR`` runs the CLI and the servers
from another checkout (e.g. the code before the fix) while this one checks the results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
from _common import DATA, RESULTS, ROOT

sys.path.insert(0, str(ROOT))
from facesys.gallery.store import open_store
from tests.gallery.conftest import MODEL
from tests.library.conftest import library_face, photo

FACES_PER_CLUSTER = 3
STARTUP_S = 180.0
CODE = ROOT  # the checkout the CLI and the servers run from (--facesys)


def environment() -> dict[str, str]:
    """The environment of the CLI and servers: facesys from CODE (they also run in CODE: `-m` puts the
    working folder first on the path)."""
    return {**os.environ, "PYTHONPATH": str(CODE), "FACESYS_THREADS": os.environ.get("FACESYS_THREADS", "1")}


def cli(gallery: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "facesys.cli", "--gallery", gallery, *args]


# -- name: two facesys name processes on one cluster -------------------------------------------------


def new_cluster(gallery: str, trial: int) -> list[int]:
    """A new cluster (id ``trial``) of FACES_PER_CLUSTER unnamed library faces, each in a photo of its own."""
    with open_store(gallery) as store:
        ids: list[int] = []
        for k in range(FACES_PER_CLUSTER):
            seed = 1000 * trial + k
            ids += store.record_photo(photo(seed), [library_face(seed)], MODEL)
        store.set_clusters(ids, [trial] * len(ids))
    return ids


def name_trial(gallery: str, trial: int, rng: random.Random) -> dict:
    ids = new_cluster(gallery, trial)
    people = [f"Alice {trial}", f"Bob {trial}"]
    if rng.random() < 0.5:
        people.reverse()  # which one starts first
    runs = [subprocess.Popen(cli(gallery, "name", str(trial), p), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment(), cwd=CODE) for p in people]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = [run.returncode for run in runs]
    problems = []
    won = [i for i, code in enumerate(codes) if code == 0]
    if len(won) != 1:
        problems.append(f"exit codes {codes}: {[o[1].strip()[-200:] for o in outputs]}")
    winner = won[0] if len(won) == 1 else None
    loser_line, how, told = "", None, False
    if winner is not None:
        loser = 1 - winner
        lines = outputs[loser][1].strip().splitlines()
        loser_line = lines[-1] if lines else ""
        told = codes[loser] == 2 and len(lines) == 1 and repr(people[winner]) in loser_line
        if not told:
            said = outputs[loser][1].strip()[-300:]
            problems.append(f"loser exit {codes[loser]} said {said!r}, not the winner {people[winner]!r}")
        how = "meanwhile" if "meanwhile" in loser_line else "already" if "already" in loser_line else "other"
    with open_store(gallery) as store, store.reading():
        owners = {f.person for f in store.library_faces(ids)}
        named = [e for e in store.audit_log(None) if e.action == "name_faces" and set(e.detail["library_faces"]) & set(ids)]
        present = {p: store.person_named(p) is not None for p in people}
        copies = {p: len(store.faces(p)) if present[p] else 0 for p in people}
    # lost: both reported success (one was undone), or the store disagrees with the one success reported
    lost = winner is None
    if winner is not None:
        w, other = people[winner], people[1 - winner]
        one_event = len(named) == 1 and named[0].person == w
        lost = owners != {w} or copies[w] != FACES_PER_CLUSTER or present[other] or not one_event
    if lost:
        problems.append(f"store: owners {owners}, enrolled {copies}, name events {[e.person for e in named]} (None: removed)")
    return {"trial": trial, "exit_codes": codes, "winner": people[winner] if winner is not None else None, "lost_update": lost,
            "loser_named_winner": told, "loser_lost": how, "loser_line": loser_line, "problems": problems}  # fmt: skip


def run_name(backend: str, gallery: str, trials: int, seed: int) -> dict:
    with open_store(gallery, create=True) as store:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
    rng = random.Random(seed)
    rows = []
    started = time.perf_counter()
    for trial in range(1, trials + 1):
        rows.append(name_trial(gallery, trial, rng))
        print(f"  name {backend} {trial}/{trials}: {'LOST' if rows[-1]['lost_update'] else 'ok'}", file=sys.stderr, flush=True)
    return {
        "trials": trials,
        "lost_updates": sum(r["lost_update"] for r in rows),
        "exactly_one_won": sum(sorted(r["exit_codes"]) == [0, 2] for r in rows),
        "loser_named_winner": sum(r["loser_named_winner"] for r in rows),
        "loser_lost_meanwhile": sum(r["loser_lost"] == "meanwhile" for r in rows),
        "loser_found_named_already": sum(r["loser_lost"] == "already" for r in rows),
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


# -- remove: DELETE on one server while both identify ------------------------------------------------


class Server:
    """``facesys serve`` on 127.0.0.1:<free port> over ``gallery``, output to ``log``."""

    def __init__(self, gallery: str, log: Path):
        from tests.service.conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.log_path = log
        command = cli(gallery, "serve", "--host", "127.0.0.1", "--port", str(self.port))
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=environment(), cwd=CODE)

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"facesys serve exited ({self.process.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"facesys serve not ready after {STARTUP_S} s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def lfw_people(count: int, seed: int) -> list[tuple[str, list[Path]]]:
    """``count`` LFW people with at least 3 photos (name, first 3 photos), drawn with ``seed``."""
    folders = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3)
    chosen = random.Random(seed).sample(folders, count)
    return [(f.name.replace("_", " "), sorted(f.glob("*.jpg"))[:3]) for f in chosen]


def upload(*paths: Path) -> list:
    return [("images", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def named(client: httpx.Client, probe: Path) -> str | None:
    """The name identify gives the face of ``probe`` (None: unknown or no face)."""
    answer = client.post("/v1/identify", files=upload(probe))
    answer.raise_for_status()
    faces = [face for result in answer.json()["results"] for face in result.get("faces", [])]
    return faces[0]["name"] if faces else None


def remove_trial(clients: list[httpx.Client], person: str, photos: list[Path], after_s: float, rng: random.Random) -> dict:
    a, _ = clients
    enrolled = a.post(f"/v1/people/{quote(person)}", files=upload(*photos[:2]))
    if enrolled.status_code != 201:
        return {"person": person, "skipped": f"enroll answered {enrolled.status_code}: {enrolled.text[:200]}"}
    probe = photos[2]
    deadline = time.monotonic() + 20
    seen_before = all(named(c, probe) == person for c in clients)
    while not seen_before and time.monotonic() < deadline:
        time.sleep(0.2)
        seen_before = all(named(c, probe) == person for c in clients)
    answers: list[tuple[int, float, float, str | None]] = []  # (server, sent, received, name)
    removed_at: list[float] = []
    stop = threading.Event()

    def identify(server: int) -> None:
        with httpx.Client(base_url=clients[server].base_url, headers=clients[server].headers, timeout=120) as client:
            while not stop.is_set():
                sent = time.monotonic()
                name = named(client, probe)
                answers.append((server, sent, time.monotonic(), name))

    threads = [threading.Thread(target=identify, args=(i,), daemon=True) for i in (0, 1)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.0, 0.5))
    deleted = a.delete(f"/v1/people/{quote(person)}")
    removed_at.append(time.monotonic())
    time.sleep(after_s)
    stop.set()
    for thread in threads:
        thread.join(180)
    done = removed_at[0]
    later = [row for row in answers if row[1] > done]
    stale = [row for row in later if row[3] == person]
    return {
        "person": person,
        "named_before_delete": seen_before,
        "delete_status": deleted.status_code,
        "identifies": len(answers),
        "identifies_after_delete": len(later),
        "stale_names": len(stale),
        "stale": [{"server": "AB"[s], "sent_after_s": round(sent - done, 3), "name": n} for s, sent, _, n in stale],
    }


def run_remove(backend: str, gallery: str, trials: int, seed: int, after_s: float, workdir: Path) -> dict:
    key = subprocess.run(cli(gallery, "keys", "create", "races-bench", "--scope", "admin"), capture_output=True, text=True,
                         env=environment(), cwd=CODE, check=True, timeout=300).stdout.strip()  # fmt: skip
    rng = random.Random(seed)
    base = lfw_people(trials + 4, seed)
    servers = [Server(gallery, workdir / f"serve-{backend}-{i}.log") for i in (0, 1)]
    try:
        for server in servers:
            server.wait_ready()
        clients = [httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) for s in servers]
        for name, photos in base[trials:]:  # others enrolled, so a removed person is not simply the only one
            clients[1].post(f"/v1/people/{quote(name)}", files=upload(photos[0])).raise_for_status()
        rows = []
        started = time.perf_counter()
        for trial, (person, photos) in enumerate(base[:trials], 1):
            rows.append(remove_trial(clients, person, photos, after_s, rng))
            print(
                f"  remove {backend} {trial}/{trials}: {rows[-1].get('stale_names', 'skipped')} stale",
                file=sys.stderr,
                flush=True,
            )
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
    done = [r for r in rows if "skipped" not in r]
    return {
        "trials": trials,
        "trials_run": len(done),
        "named_before_delete": sum(r["named_before_delete"] for r in done),
        "deletes_200": sum(r["delete_status"] == 200 for r in done),
        "identifies": sum(r["identifies"] for r in done),
        "identifies_after_delete": sum(r["identifies_after_delete"] for r in done),
        "stale_names": sum(r["stale_names"] for r in done),
        "after_s": after_s,
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


# -- backends ----------------------------------------------------------------------------------------


def galleries(backend: str, workdir: Path) -> tuple[str, str] | None:
    """Two new galleries of ``backend`` (one per kind), or None when it cannot be had here (the
    PostgreSQL server is this process's throwaway one, removed at exit)."""
    if backend == "sqlite":
        return str(workdir / "name-gallery"), str(workdir / "remove-gallery")
    from tests import postgres

    try:
        cluster = postgres.shared_cluster()
    except postgres.PostgresUnavailable as exc:
        print(f"postgresql skipped: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None
    return cluster.create_database(), cluster.create_database()


def print_table(results: dict) -> None:
    print(f"{'kind':<7} {'backend':<10} {'trials':>6} {'one won':>7} {'named winner':>12} {'meanwhile':>9} {'already':>7} "
          f"{'lost updates':>12}")  # fmt: skip
    for backend, kinds in results.items():
        if "name" in kinds:
            r = kinds["name"]
            print(f"{'name':<7} {backend:<10} {r['trials']:6d} {r['exactly_one_won']:7d} {r['loser_named_winner']:12d} "
                  f"{r['loser_lost_meanwhile']:9d} {r['loser_found_named_already']:7d} {r['lost_updates']:12d}")  # fmt: skip
    print("one won: one process exited 0, the other 2; named winner: the loser's one line named the winner; meanwhile: the")
    print("loser lost in the store's compare-and-set (both had read the cluster); already: it found the cluster named;")
    print("lost updates: both exited 0, or the faces, people or audit log disagree with the one success.")
    print()
    print(f"{'kind':<7} {'backend':<10} {'trials':>6} {'named before':>12} {'DELETE 200':>10} {'identifies':>10} "
          f"{'after DELETE':>12} {'stale names':>11}")  # fmt: skip
    for backend, kinds in results.items():
        if "remove" in kinds:
            r = kinds["remove"]
            print(f"{'remove':<7} {backend:<10} {r['trials_run']:6d} {r['named_before_delete']:12d} {r['deletes_200']:10d} "
                  f"{r['identifies']:10d} {r['identifies_after_delete']:12d} {r['stale_names']:11d}")  # fmt: skip
    print("named before: trials where both servers named the person before the DELETE; after DELETE: identify requests")
    print("sent after the DELETE returned; stale names: those answered with the removed person's name.")
    for backend, kinds in results.items():
        for kind, r in kinds.items():
            for row in r["rows"]:
                for problem in row.get("problems", []):
                    print(f"  {kind} {backend} trial {row['trial']}: {problem}")
                if row.get("skipped"):
                    print(f"  {kind} {backend} {row['person']}: skipped ({row['skipped']})")
                for hit in row.get("stale", []):
                    print(f"  {kind} {backend} {row['person']}: server {hit['server']} named them {hit['sent_after_s']} s after")


def main() -> None:
    global CODE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of each kind on each backend")
    parser.add_argument("--kinds", nargs="+", choices=("name", "remove"), default=["name", "remove"])
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--after", type=float, default=1.0, help="seconds the identify clients go on after the DELETE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--facesys", type=Path, default=ROOT, help="checkout the CLI and the servers run from")
    parser.add_argument("--out", type=Path, default=RESULTS / "races.json")
    args = parser.parse_args()
    CODE = args.facesys.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="races-"))
    started = time.perf_counter()
    results: dict[str, dict] = {}
    try:
        for backend in args.backends:
            made = galleries(backend, workdir)
            if made is None:
                continue
            results[backend] = {}
            if "name" in args.kinds:
                results[backend]["name"] = run_name(backend, made[0], args.trials, args.seed)
            if "remove" in args.kinds:
                results[backend]["remove"] = run_remove(backend, made[1], args.trials, args.seed, args.after, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "command": "python benchmarks/races.py " + " ".join(sys.argv[1:]),
        "code": "this checkout" if CODE == ROOT else str(CODE),
        "wall_s": round(time.perf_counter() - started, 1),
        "results": results,
    }
    args.out.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
