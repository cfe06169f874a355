"""Two changes of the same library faces, or of the same person, at once (issue 23, hole 2): exactly
one wins, the other fails with a ConflictError naming the winner, and the faces, the people and the
audit log agree (nothing the winner did is undone). Both backends (SQLite folder, PostgreSQL).

Each round forces the overlap that made ``facesys name 20 Alice & facesys name 20 Bob`` lose an
update: both calls have read what they change (the cluster's faces, the person's faces) before
either writes (a barrier at the store's write method), each through its own Gallery and store
connection, as two processes would."""

from __future__ import annotations

import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import partial

import pytest

from facesys.errors import ConflictError, UnknownClusterError
from facesys.gallery.gallery import Gallery
from facesys.library import names
from tests.gallery.conftest import MODEL, face
from tests.library.conftest import library_face, photo

ROUNDS = 6
TIMEOUT_S = 30


def address(store, backend: str, tmp_path) -> str:
    """Where ``store`` lies, for another connection to it."""
    return str(tmp_path / "g") if backend == "sqlite" else store._url


def library_round(store, number: int, name: str | None = None) -> list[int]:
    """Two new library photos with a face each (seeds from ``number``), in a new cluster, or named ``name``."""
    ids = []
    for k in (0, 1):
        ids += store.record_photo(photo(1000 * number + k), [library_face(1000 * number + k)], MODEL)
    if name is None:
        store.set_clusters(ids, [number] * len(ids))
    else:
        store.name_library_faces(ids, name)
    return ids


@contextmanager
def overlapping(monkeypatch, store, *methods: str):
    """Inside: the first call of each of two threads to one of ``methods`` of the store's class
    waits for the other's, so both have read before either writes."""
    barrier = threading.Barrier(2, timeout=TIMEOUT_S)
    with monkeypatch.context() as patch:
        for method in methods:
            original = getattr(type(store), method)

            def waiting(self, *args, _original=original, **kwargs):
                barrier.wait()
                return _original(self, *args, **kwargs)

            patch.setattr(type(store), method, waiting)
        yield


def race(*calls) -> list[tuple[str, object]]:
    """Run ``calls`` in threads at once; each one's ("ok", result) or ("error", exception)."""
    results: list[tuple[str, object]] = [("error", TimeoutError("did not finish"))] * len(calls)

    def run(i: int, call) -> None:
        try:
            results[i] = ("ok", call())
        except Exception as exc:
            results[i] = ("error", exc)

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S * 2)
    return results


def one_winner(results, names_: list[str | None]) -> tuple[int, ConflictError]:
    """The index of the one call that succeeded and the loser's ConflictError, which names the winner."""
    won = [i for i, (status, _) in enumerate(results) if status == "ok"]
    assert len(won) == 1, results
    winner = won[0]
    loser = results[1 - winner][1]
    assert isinstance(loser, ConflictError), repr(loser)
    assert loser.owner == names_[winner], (str(loser), names_)
    if names_[winner] is not None:
        assert repr(names_[winner]) in str(loser)
    return winner, loser


def name_events(store, ids: list[int]) -> list:
    return [e for e in store.audit_log(None) if e.action == "name_faces" and set(e.detail["library_faces"]) & set(ids)]


def test_two_namings_of_one_cluster_one_wins(store, backend, tmp_path, monkeypatch):
    where = address(store, backend, tmp_path)
    for number in range(1, ROUNDS + 1):
        ids = library_round(store, number)
        people = [f"Alice {number}", f"Bob {number}"]
        with overlapping(monkeypatch, store, "name_library_faces"):
            results = race(*(partial(names.name_cluster, Gallery(where, save_index=False), number, p) for p in people))
        winner, _ = one_winner(results, people)
        assert {f.person for f in store.library_faces(ids)} == {people[winner]}
        assert store.person_named(people[1 - winner]) is None
        assert len(store.faces(people[winner])) == 2  # nothing the winner enrolled was undone
        assert [e.person for e in name_events(store, ids)] == [people[winner]]
    assert not [e for e in store.audit_log(None) if e.action == "remove_faces"]


def test_a_cluster_named_already_names_its_owner(store, backend, tmp_path):
    where = address(store, backend, tmp_path)
    library_round(store, 7)
    names.name_cluster(Gallery(where, save_index=False), 7, "Alice")
    with pytest.raises(ConflictError, match="cluster 7 was named 'Alice'") as caught:
        names.name_cluster(Gallery(where, save_index=False), 7, "Bob")
    assert caught.value.owner == "Alice" and store.person_named("Bob") is None
    with pytest.raises(UnknownClusterError, match="no cluster 7 among the unnamed faces .*named 'Alice' by .* already"):
        names.name_cluster(Gallery(where, save_index=False), 7, "alice")  # the same person: nothing lost, nothing to do


def test_two_namings_of_the_same_faces_one_wins(store, backend, tmp_path, monkeypatch):
    where = address(store, backend, tmp_path)
    for number in range(1, ROUNDS + 1):
        ids = library_round(store, number, name=f"Carol {number}")
        people = [f"Alice {number}", f"Bob {number}"]
        with overlapping(monkeypatch, store, "name_library_faces"):
            results = race(*(partial(names.name_faces, Gallery(where, save_index=False), ids, p) for p in people))
        winner, _ = one_winner(results, people)
        assert {f.person for f in store.library_faces(ids)} == {people[winner]}
        assert store.person_named(people[1 - winner]) is None and len(store.faces(people[winner])) == 2
        assert [e.person for e in name_events(store, ids)][:2] == [people[winner], None]  # newest first; Carol went


def test_unname_against_name_one_wins(store, backend, tmp_path, monkeypatch):
    where = address(store, backend, tmp_path)
    for number in range(1, ROUNDS + 1):
        ids = library_round(store, number, name=f"Carol {number}")
        bob = f"Bob {number}"
        with overlapping(monkeypatch, store, "name_library_faces", "unname_library_faces"):
            results = race(
                partial(names.unname_faces, Gallery(where, save_index=False), ids),
                partial(names.name_faces, Gallery(where, save_index=False), ids, bob),
            )
        winner, _ = one_winner(results, [None, bob])
        now = {f.person for f in store.library_faces(ids)}
        if winner == 0:
            assert now == {None} and store.person_named(bob) is None
        else:
            assert now == {bob} and len(store.faces(bob)) == 2
        assert store.person_named(f"Carol {number}") is None


def test_remove_against_name_one_wins(store, backend, tmp_path, monkeypatch):
    where = address(store, backend, tmp_path)
    for number in range(1, ROUNDS + 1):
        ids = library_round(store, number, name=f"Carol {number}")
        bob = f"Bob {number}"
        with overlapping(monkeypatch, store, "name_library_faces", "remove_library_faces"):
            results = race(
                partial(names.remove_faces, Gallery(where, save_index=False), ids),
                partial(names.name_faces, Gallery(where, save_index=False), ids, bob),
            )
        winner, _ = one_winner(results, [None, bob])
        if winner == 0:
            assert store.library_faces(ids) == [] and store.person_named(bob) is None
        else:
            assert {f.person for f in store.library_faces(ids)} == {bob} and len(store.faces(bob)) == 2


def test_two_renames_of_one_person_one_wins(store, backend, tmp_path, monkeypatch):
    where = address(store, backend, tmp_path)
    for number in range(1, ROUNDS + 1):
        old = f"Dana {number}"
        store.add_face(old, face(100 + number), MODEL)
        people = [f"Alice {number}", f"Bob {number}"]
        with overlapping(monkeypatch, store, "rename_person"):
            results = race(*(partial(Gallery(where, save_index=False).rename, old, p) for p in people))
        winner, loser = one_winner(results, people)
        assert f"was renamed {people[winner]!r}" in str(loser)
        assert store.person_named(old) is None and store.person_named(people[1 - winner]) is None
        assert len(store.faces(people[winner])) == 1
        renames = [e for e in store.audit_log(None) if e.action == "rename" and e.person == people[winner]]
        assert len(renames) == 1


def test_a_rename_after_the_person_was_renamed_and_named_again_is_refused(store):
    store.add_face("Dana", face(1), MODEL)
    seen = [r.id for r in store.faces("Dana")]
    store.rename_person("Dana", "Alice")
    store.add_face("Dana", face(2), MODEL)  # another Dana now
    with pytest.raises(ConflictError, match="'Dana' was renamed 'Alice' meanwhile") as caught:
        store.rename_person("Dana", "Bob", seen=seen)
    assert caught.value.owner == "Alice" and sorted(n for n, _ in store.people()) == ["Alice", "Dana"]


def cli(where: str, *args: str) -> subprocess.Popen:
    """``facesys --gallery WHERE ARGS`` started in a new process (stdout and stderr captured)."""
    command = [sys.executable, "-m", "facesys.cli", "--gallery", where, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_facesys_name_processes_on_one_cluster_one_wins(store, backend, tmp_path):
    """The issue's ``facesys name 20 Alice & facesys name 20 Bob & wait``, a few times: one exits 0,
    the other exits 2 with one line naming the winner, whichever order they reach the store in."""
    where = address(store, backend, tmp_path)
    for number in (20, 21, 22):
        ids = library_round(store, number)
        people = [f"Alice {number}", f"Bob {number}"]
        runs = [cli(where, "name", str(number), person) for person in people]
        outputs = [run.communicate(timeout=120) for run in runs]
        codes = [run.returncode for run in runs]
        assert sorted(codes) == [0, 2], outputs
        winner = codes.index(0)
        lines = outputs[1 - winner][1].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("facesys: error: ") and repr(people[winner]) in lines[0], lines
        assert f"named cluster {number} {people[winner]}: 2 faces" in outputs[winner][0]
        assert {f.person for f in store.library_faces(ids)} == {people[winner]}
        assert store.person_named(people[1 - winner]) is None and len(store.faces(people[winner])) == 2


def test_face_commands_change_faces_only_while_they_are_as_the_caller_says(store, backend, tmp_path):
    """``face name|unname|remove --was NAME|--unnamed``: the state the user saw, checked in the
    store's transaction; so ``face name 5 Alice --unnamed & face name 5 Bob --unnamed`` has one
    winner however the two processes are timed, and the other names it."""
    from click.testing import CliRunner

    from facesys.cli import main

    where = address(store, backend, tmp_path)
    (first, second) = library_round(store, 30)

    def run(*args: str):
        return CliRunner().invoke(main, ["--gallery", where, "face", *args])

    assert run("name", str(first), "Alice", "--unnamed").exit_code == 0
    for args in (
        ("name", str(first), "Bob", "--unnamed"),
        ("unname", str(first), "--was", "Bob"),
        ("remove", str(first), "--unnamed"),
    ):
        result = run(*args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and f"library face #{first} was named 'Alice'" in lines[0], result.output
    assert "exclude each other" in run("name", str(first), "Bob", "--unnamed", "--was", "Alice").stderr
    assert [f.person for f in store.library_faces([first])] == ["Alice"] and store.person_named("Bob") is None
    assert run("unname", str(first), "--was", "alice").exit_code == 0  # names compare ignoring case
    runs = [cli(where, "face", "name", str(second), person, "--unnamed") for person in ("Alice", "Bob")]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert sorted(run.returncode for run in runs) == [0, 2], outputs
    winner = ["Alice", "Bob"][[run.returncode for run in runs].index(0)]
    assert f"was named {winner!r}" in "".join(err for _, err in outputs)
    assert [f.person for f in store.library_faces([second])] == [winner]
