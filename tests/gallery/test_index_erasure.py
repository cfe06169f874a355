"""A removed person's vectors leave every saved index file (issue 23, hole 4), searched for the way
an attacker would: the float32 bytes of each removed embedding, as the store held them before the
removal, in every file under the gallery folder or the per-machine index cache of a database.

Both backends: a folder gallery keeps its index files beside the database, a PostgreSQL gallery in
``$FACESYS_CACHE/index/<url digest>`` (set to a fresh folder per test here)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from facesys.gallery import Gallery
from facesys.gallery.index import sync
from facesys.gallery.store import open_store
from tests import postgres
from tests.conftest import ROOT
from tests.gallery.conftest import MODEL, face
from tests.leftovers import files_holding, person_vectors

VICTIM, OTHERS = "Victim", ("Ann", "Bob")


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path, monkeypatch) -> str:
    """A gallery (a folder, or a database of the test PostgreSQL server) holding 4 faces of VICTIM
    and 2 of each of OTHERS, with a saved index of that state (as any CLI command leaves it)."""
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path / "cache"))
    if request.param == "sqlite":
        where = str(tmp_path / "g")
    else:
        if importlib.util.find_spec("psycopg") is None:
            pytest.skip("psycopg not installed")
        try:
            where = postgres.shared_cluster().create_database()
        except postgres.PostgresUnavailable as exc:
            pytest.skip(str(exc).splitlines()[0])
    with open_store(where, create=True) as store:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        for seed, name in enumerate([VICTIM] * 4 + [n for n in OTHERS for _ in range(2)]):
            store.add_face(name, face(seed), MODEL)
    Gallery(where).index_info()  # builds and saves the index, as a CLI identify would
    return where


def victim_vectors(where: str | Path) -> list[bytes]:
    return person_vectors(where, VICTIM)


def index_files(gallery: Gallery) -> list[Path]:
    return sorted(gallery.index_folder.glob("index-*"))


def searched_folders(gallery: Gallery) -> list[Path]:
    return [gallery.index_folder] if not gallery.is_folder else [Path(str(gallery.location))]


def assert_nothing_left(gallery: Gallery, signatures: list[bytes]) -> None:
    left = [hit for folder in searched_folders(gallery) for hit in files_holding(folder, signatures)]
    assert left == [], f"the removed person's embeddings are still in {left}"


def test_the_saved_index_holds_the_victim_before_removal(location):
    """The search must find the vectors before a removal, or the tests below prove nothing."""
    gallery = Gallery(location)
    assert len(victim_vectors(location)) == 4 and index_files(gallery)
    assert len(files_holding(gallery.index_folder, victim_vectors(location))) >= 1


def test_a_service_removal_erases_the_saved_index_files_before_it_returns(location):
    """A service keeps its index in memory (save_index=False) and used to leave the saved file
    with the removed vectors until it stopped (forever after kill -9)."""
    signatures = victim_vectors(location)
    service = Gallery(location, save_index=False)
    service.search(face(0).embedding[None], k=3)  # the service has loaded its index
    assert service.remove(VICTIM) == 4
    assert_nothing_left(service, signatures)
    assert VICTIM not in service.search(face(0).embedding[None], k=8).names.values()
    service.save_index()  # stopping: what it saves holds only the faces still enrolled
    assert index_files(service) and files_holding(service.index_folder, signatures) == []


def test_an_index_saved_from_a_state_older_than_a_removal_is_erased(location):
    """A process that read the store just before a removal committed and saves its index after
    the remover erased the files: its file is erased before it lets the folder go."""
    signatures = victim_vectors(location)
    gallery = Gallery(location)
    with gallery.open() as store:
        old = sync.synced(store, gallery.index_folder)
        store.remove_person(VICTIM)  # the removal commits (no index work: that is the other process's)
        sync.keep(old, store, gallery.index_folder, save=True)
    assert_nothing_left(gallery, signatures)


KILLED_REMOVAL = """
import os, signal, sys
from facesys.gallery.store import open_store
with open_store(sys.argv[1]) as store:
    store.remove_person(sys.argv[2])  # committed (and the database's freed pages erased)
os.kill(os.getpid(), signal.SIGKILL)  # killed before the index files were dealt with
"""


@pytest.mark.parametrize("command", [("gallery", "list"), ("gallery", "check")])
def test_a_removal_killed_after_its_commit_is_finished_by_the_next_command(location, command):
    signatures = victim_vectors(location)
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_REMOVAL), location, VICTIM], env=env, timeout=120, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    gallery = Gallery(location)
    assert VICTIM not in dict(_people(location))
    assert files_holding(gallery.index_folder, signatures)  # what the killed removal left behind
    done = subprocess.run(
        [sys.executable, "-m", "facesys.cli", "--gallery", location, *command],
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_left(gallery, signatures)


def _people(where: str) -> list[tuple[str, int]]:
    with open_store(where) as store:
        return store.people()


def test_erasing_keeps_files_that_hold_only_enrolled_faces(location):
    """An older index with no removal since holds nothing removed: a service keeps it (it is
    followed through the change log on the next start); temporary files of dead writers go."""
    gallery = Gallery(location, save_index=False)
    (saved,) = index_files(gallery)
    dead = gallery.index_folder / ".index-999999999-abcd.tmp"  # a pid that is not running
    dead.write_bytes(b"vectors")
    with gallery.open() as store:
        store.add_face("Late", face(50), MODEL)
        sync.erase_removed(store, gallery.index_folder)
        assert saved.exists() and not dead.exists()
        store.remove_faces([5])
        assert sync.erase_removed(store, gallery.index_folder) == [saved] and not saved.exists()


def test_check_reports_a_missing_index_as_information(location):
    """No saved index of the current state (a service runs, or an import was killed at its
    commit) is normal: information, not a problem (it used to exit 2)."""
    gallery = Gallery(location)
    for path in index_files(gallery):
        path.unlink()
    assert gallery.check() == []
    notes = gallery.notes()
    assert ("no saved index of generation" in notes[0]) if gallery.is_folder else notes == []


def test_gallery_check_exits_0_with_an_info_line_when_no_index_is_saved(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from facesys.cli import main

    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path / "cache"))
    with open_store(tmp_path / "g", create=True) as store:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        store.add_face("Ann", face(1), MODEL)  # as a service or a killed import leaves it: no saved index
    result = CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "gallery", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "info: index: no saved index of generation 1 yet (derived data: it is built on the next search, or by 'gallery index')",
        "gallery is healthy",
    ]


def test_a_removal_racing_a_process_that_saves_its_index_leaves_nothing(location):
    """A writer enrolls and saves its index over and over while a person is enrolled and removed,
    15 times: the moment each removal returns, no file holds that person's embeddings (a writer
    that read the store just before the removal committed must not save after its erasure)."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        gallery, seed = Gallery(location), 1000
        try:
            while not stop.is_set():
                with gallery.open() as store:
                    store.add_face("Writer", face(seed), MODEL)
                    gallery.refresh(store)  # saves its index, as every CLI command does
                seed += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    left = []
    try:
        for trial in range(15):
            with open_store(location) as store:
                for seed in range(100 + 4 * trial, 104 + 4 * trial):
                    store.add_face(VICTIM, face(seed), MODEL)
            signatures = victim_vectors(location)
            remover = Gallery(location)
            remover.remove(VICTIM)
            left += [(trial, hit) for folder in searched_folders(remover) for hit in files_holding(folder, signatures)]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures and not thread.is_alive()
    assert left == []
