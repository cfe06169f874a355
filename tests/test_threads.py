"""The thread policy (facesys/threads.py): fixed counts, the automatic choice, and the CLI's --threads."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from facesys import threads
from facesys.errors import FacesysError


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch):
    """Each test starts unconfigured, with no thread variables, and leaves torch's count as it was."""
    import torch

    before = torch.get_num_threads()
    for name in (threads.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_configured", "unset")
    monkeypatch.setattr(threads, "_share", 1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("auto", None), (" AUTO ", None), ("3", 3), (2, 2)])
def test_thread_counts_parse(value, expected):
    assert threads.parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_names_its_source(value):
    with pytest.raises(FacesysError, match=rf"FACESYS_THREADS={value!r}: not a thread count") as caught:
        threads.parse_threads(value)
    assert caught.value.parameter == "threads"


def test_a_fixed_count_wins_over_the_machine(monkeypatch):
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 50)
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.choose_threads() == 3
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # honoured as torch honours it
    assert threads.choose_threads() == 2
    threads.configure(4)  # the CLI's --threads / the API beat the environment
    assert threads.choose_threads() == 4


def test_configure_none_leaves_the_choice_to_the_environment(monkeypatch):
    threads.configure(4)
    threads.configure(None)  # what the CLI does without --threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads() == 1
    monkeypatch.setenv(threads.THREADS_ENV, "bad")
    with pytest.raises(FacesysError, match="FACESYS_THREADS='bad'"):
        threads.configure(None)


def test_auto_takes_the_free_cores_and_at_least_one(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    for busy, expected in [(0, 8), (3, 5), (7, 1), (40, 1)]:
        monkeypatch.setattr(threads, "running_elsewhere", lambda busy=busy: busy)
        assert threads.choose_threads() == expected
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 0)
    threads.configure("auto", share=3)  # serve --workers 3: at most an equal share each
    assert threads.choose_threads() == 2


def test_adapt_sets_torch_and_faiss_in_the_calling_thread(monkeypatch):
    import faiss
    import torch

    for count in (1, 2, 1):
        monkeypatch.setattr(threads, "choose_threads", lambda count=count: count)
        assert threads.adapt() == count
        assert torch.get_num_threads() == count
        assert faiss.omp_get_max_threads() == count


def test_a_busy_process_elsewhere_is_seen():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        seen = [threads.running_elsewhere() for _ in range(50)]
    finally:
        burner.kill()
        burner.wait()
    assert max(seen) >= 1


def test_usable_cores_respects_the_affinity():
    import os

    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("how", [["--threads", "0"], ["--threads", "many"]])
def test_cli_refuses_a_bad_thread_count_in_one_line(how, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "facesys.cli", *how, "identify", str(tmp_path / "none.jpg")], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "is not a thread count" in run.stderr and "Traceback" not in run.stderr


def test_cli_reads_the_thread_count_from_the_environment(tmp_path):
    env = {**__import__("os").environ, threads.THREADS_ENV: "nope"}
    run = subprocess.run(
        [sys.executable, "-m", "facesys.cli", "gallery", "stats"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert run.returncode == 2 and "'nope'" in run.stderr and "$FACESYS_THREADS" in run.stderr


@pytest.mark.parametrize(
    "given, expected",
    [
        ({}, {"GOMP_SPINCOUNT": "30000"}),  # automatic count: a short spin
        ({threads.THREADS_ENV: "2"}, {"OMP_WAIT_POLICY": "PASSIVE"}),  # fixed count: sleep at once
        ({"OMP_NUM_THREADS": "1"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),  # the user's choice wins
        ({"GOMP_SPINCOUNT": "5"}, {"GOMP_SPINCOUNT": "5"}),
    ],
)
def test_import_facesys_chooses_the_openmp_wait_policy(given, expected):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.pop(threads.THREADS_ENV, None)
    code = (
        "import os, json, facesys; "
        "print(json.dumps({k: os.environ[k] for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT') if k in os.environ}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **given})
    assert run.returncode == 0, run.stderr
    assert __import__("json").loads(run.stdout) == expected


def test_photo_workers_take_every_core_plus_spares_when_busy_and_run_one_thread_each(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 0)
    assert threads.photo_workers() == 8
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 50)  # a busy machine: spares, not fewer
    assert threads.photo_workers() == 8 + threads.SPARE_WORKERS
    threads.configure("auto", share=4)  # serve --workers 4
    assert threads.photo_workers() == 2 + threads.SPARE_WORKERS
    threads.configure(3)  # a fixed count is the number of threads at work, whatever runs them
    assert threads.photo_workers() == 3
    inside = threads.photo_pool(2).submit(lambda: (threads.photo_workers(), threads.choose_threads())).result()
    assert inside == (1, 1)  # a worker neither splits its photos again nor runs a team of threads
