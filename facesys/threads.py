"""How many CPU threads torch and FAISS use, so that a busy machine does not collapse them.

Two ways to use the cores, chosen by the work at hand:

- **Photo workers** for a batch of several photos (``photo_workers``, ``photo_pool``;
  facesys/vision/embed.py): the batch is split between worker threads, each running torch and FAISS on
  *one* thread, and the next batch starts while the caller handles this one. Photos never wait for
  each other, so a core taken by another program slows one worker, not all. Automatic count: the
  cores this process may use (its CPU affinity and cgroup quota; an equal share under ``serve
  --workers W``), plus ``SPARE_WORKERS`` (1) while other processes keep cores busy. Linux gives
  every runnable thread of a session an equal slice, so W workers beside B busy threads of the same
  session on C cores get C*W/(W+B) cores: the spare moves that from C/3 to 3C/7 beside 4 CPU
  burners on 2 cores. Measured (benchmarks/contention.py, identify on 2 cores): beside 4 burners in
  facesys's session 2.8x slower than alone (a worker per core: 3.1x; threads inside each
  operation, as before: 4.1x); beside burners in another session, where Linux shares the CPU
  between sessions and more threads gain nothing, 1.7-2.2x (before: 1.6x); two facesys
  processes together 1.04x one alone. Two spares measured 2.2x in the same session, but two
  facesys processes then reached only 0.94x: extra threads also mean smaller batches and more
  switching. No spare on an idle machine for the same reason.
- **Threads inside each operation** for a single photo (``adapt``, before each batch; a verify
  of one pair uses the photo workers): torch's threads wait for each other at every step, so a
  thread that is off the CPU holds all of them up (on this 2-core machine beside 4 CPU-burning
  processes, two threads made a warm verify 3x slower than one). The count is chosen before each
  batch, in a few microseconds of reading ``/proc``: the usable cores minus the threads of *other*
  processes running right now (``/proc/loadavg``), at most an equal share under ``serve --workers``,
  and at least 1. Idle machine: all cores; busy: fewer.

``FACESYS_THREADS=N`` or ``--threads N`` (or ``configure(N)``) fixes both: N photo workers, N
threads for a single photo; with neither, ``OMP_NUM_THREADS=N`` counts as a fixed choice too (torch
honours it).

OpenMP's wait policy (``set_wait_policy``, run by ``import facesys`` before torch loads OpenMP): a thread
that waits for work spins for ``SPIN_ROUNDS`` rounds (~0.1 ms) and then sleeps. OpenMP's default spins
10x longer: beside busy processes, spinning threads steal the cores the working ones need (identify
beside 4 CPU burners 9.5x slower than alone, two processes together 0.25x one alone). Never spinning
costs an idle machine 15% of identify's throughput and 60% on a verify's latency. The short spin is
safe because the automatic count drops threads when other processes run; with a fixed count
(``FACESYS_THREADS``, ``OMP_NUM_THREADS``, ``--threads N``) threads never spin. A wait policy or spin
count the user set wins. Numbers: benchmarks/contention.py, README "Performance".
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path

from facesys.errors import FacesysError

THREADS_ENV = "FACESYS_THREADS"
SPARE_WORKERS = 1  # photo workers beyond the cores while other processes run
SPIN_ROUNDS = "30000"  # GOMP_SPINCOUNT while the thread count is automatic (OpenMP's default: 300000)
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_wait_policy_chosen_by_facesys = False

_configured: int | str | None = "unset"  # set by configure(): a count, or None for auto; "unset": read THREADS_ENV
_share = 1  # processes splitting this machine's cores (serve --workers)
_local = threading.local()  # .pinned: this thread's fixed count (the photo workers run one thread each)
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def parse_threads(value: str | int | None, source: str = THREADS_ENV) -> int | None:
    """A thread count from ``value`` (``auto``, empty or None -> None, for automatic); FacesysError if it is
    neither ``auto`` nor a whole number >= 1 (``source`` names where it came from)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise FacesysError(f"{source}={value!r}: not a thread count; use auto or a whole number >= 1", parameter="threads")
    return count


def configure(threads: str | int | None = None, share: int = 1) -> None:
    """For this process: ``threads`` a count (fixed), ``auto`` (chosen per batch) or None (as the
    environment says: ``FACESYS_THREADS``, else ``OMP_NUM_THREADS``, else automatic; checked now);
    ``share``: how many processes split the machine's cores (``serve --workers``)."""
    global _configured, _share
    if threads is None:
        parse_threads(os.environ.get(THREADS_ENV))  # a bad value is reported now, naming the variable
        _configured = "unset"
    else:
        _configured = parse_threads(threads, "threads")
    _share = max(1, share)
    set_wait_policy(fixed_count=None if threads is None else _configured is not None)


def set_wait_policy(fixed_count: bool | None = None) -> None:
    """Choose OpenMP's wait policy in the environment, unless the user did or OpenMP is loaded already (torch
    imported): sleep at once with a fixed thread count, spin ``SPIN_ROUNDS`` first with an automatic one.
    ``fixed_count`` None: whether ``FACESYS_THREADS`` or ``OMP_NUM_THREADS`` fixes it."""
    global _wait_policy_chosen_by_facesys
    if "torch" in sys.modules or (any(v in os.environ for v in _WAIT_VARIABLES) and not _wait_policy_chosen_by_facesys):
        return
    if fixed_count is None:
        fixed_count = os.environ.get(THREADS_ENV, "").strip().lower() not in ("", "auto") or "OMP_NUM_THREADS" in os.environ
    for variable in _WAIT_VARIABLES:
        os.environ.pop(variable, None)
    if fixed_count:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = SPIN_ROUNDS
    _wait_policy_chosen_by_facesys = True


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota if there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def running_elsewhere() -> int:
    """Threads of other processes running or ready to run right now (0 where the system does not say)."""
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            own += stat[stat.rindex(")") + 2] == "R"
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - own)


def fixed_count() -> int | None:
    """The count fixed by ``configure``, ``FACESYS_THREADS`` or ``OMP_NUM_THREADS``; None: automatic."""
    fixed = _configured
    if fixed == "unset":
        fixed = parse_threads(os.environ.get(THREADS_ENV))
        if fixed is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():  # as torch itself does
            fixed = max(1, int(os.environ["OMP_NUM_THREADS"]))
    return fixed


def choose_threads() -> int:
    """The thread count for the next batch (see the module docstring)."""
    pinned = getattr(_local, "pinned", None)
    if pinned is not None:
        return pinned
    fixed = fixed_count()
    if fixed is not None:
        return fixed
    cores = usable_cores()
    return max(1, min(cores // _share, cores - running_elsewhere()))


def photo_workers() -> int:
    """How many photos of a batch are worked on at once, each by a thread of its own running one
    intra-op thread (facesys/vision/embed.py): the fixed count, else the cores this process may use (an
    equal share under ``serve --workers``), plus ``SPARE_WORKERS`` while other processes keep
    cores busy; 1 inside a photo worker."""
    if getattr(_local, "pinned", None) is not None:
        return 1
    fixed = fixed_count()
    if fixed is not None:
        return fixed
    return max(1, usable_cores() // _share) + (SPARE_WORKERS if running_elsewhere() else 0)


def _pin_to_one_thread() -> None:
    _local.pinned = 1


def load_native() -> None:
    """Import torch and FAISS (where installed) in the calling thread. The photo workers' ``adapt``
    reads them from ``sys.modules``: importing them before the workers start means no worker ever
    meets a half-imported module (a scan once crashed on ``faiss.omp_get_max_threads``)."""
    for name in ("torch", "faiss"):
        with contextlib.suppress(ImportError):
            import_module(name)


def photo_pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` photo workers (threads that run torch and FAISS on one thread
    each); torch and FAISS are imported first, in the calling thread (``load_native``)."""
    load_native()
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="facesys-photo", initializer=_pin_to_one_thread)
            _pools[workers] = pool
        return pool


def _imported(name: str):
    """Module ``name`` if it is fully imported; None while absent or while another thread is still
    running its import (``sys.modules`` holds it half-initialised then)."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def adapt() -> int:
    """Set this thread's intra-op thread count for torch and FAISS (those already imported) to
    ``choose_threads()``; returns it. OpenMP keeps the count per calling thread, so the thread that
    runs the work calls this: each entry point of native work does (the MTCNN driver, ``embed_chips``,
    the FAISS index, clustering). One that did not ran on torch's default, a thread per core, spinning
    beside other programs with the automatic count (direct detect calls 3-8x slower, issue 25)."""
    count = choose_threads()
    torch, faiss = _imported("torch"), _imported("faiss")
    if torch is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    if faiss is not None and faiss.omp_get_max_threads() != count:
        faiss.omp_set_num_threads(count)
    return count
