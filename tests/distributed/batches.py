"""Drive batches through Ray and write each result as it comes (the shape of ``scan --ray``).

The pattern the real scan uses, kept free of facesys's pipeline so it can move under
facesys/distributed/ as is:

- the driver submits at most ``window`` batches at a time (bounded memory on a million photos);
- Ray retries a task whose worker or node died (``max_retries`` of the remote function); a batch
  that still fails (retries spent, or an error of the task itself) is submitted again by the
  driver up to ``attempts`` times, then reported as failed, its items not written: never fatal for
  the other batches;
- ``write(batch, result)`` runs on the driver, one batch at a time, as results arrive in any
  order; it must be idempotent (a photo written once by its content hash), since a batch may
  be computed twice: a retry after a worker died after finishing, or a re-run after the driver
  itself died.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DriveSummary:
    """What :func:`drive_batches` did: batches written, driver-level resubmissions, and the batches
    that failed every attempt with the last error (one line each)."""

    written: int = 0
    resubmitted: int = 0
    failed: list[tuple[Sequence[Any], str]] = field(default_factory=list)


def drive_batches(
    submit: Callable[[Sequence[Any]], Any],
    batches: Iterable[Sequence[Any]],
    write: Callable[[Sequence[Any], Any], None],
    *,
    window: int = 4,
    attempts: int = 2,
) -> DriveSummary:
    """Run ``submit(batch)`` (returns an ObjectRef) for every batch, at most ``window`` in flight,
    and ``write(batch, result)`` on the driver as each finishes. A batch whose ref raises a
    ``ray.exceptions.RayError`` is submitted again, ``attempts`` times in all."""
    if window < 1 or attempts < 1:
        raise ValueError(f"window ({window}) and attempts ({attempts}) must be at least 1")
    import ray
    from ray.exceptions import RayError

    summary = DriveSummary()
    pending = iter(batches)
    flight: dict[Any, tuple[Sequence[Any], int]] = {}  # ref -> (batch, attempt number)

    def fill() -> None:
        for batch in pending:
            flight[submit(batch)] = (batch, 1)
            if len(flight) >= window:
                return

    fill()
    while flight:
        (ref,), _ = ray.wait(list(flight), num_returns=1)
        batch, attempt = flight.pop(ref)
        try:
            result = ray.get(ref)
        except RayError as exc:
            if attempt < attempts:
                summary.resubmitted += 1
                flight[submit(batch)] = (batch, attempt + 1)
            else:
                summary.failed.append((batch, one_line(exc)))
        else:
            write(batch, result)
            summary.written += 1
        fill()
    return summary


def one_line(exc: BaseException) -> str:
    """A failed task's error in one line: the task's own exception (a RayTaskError's ``cause``,
    not Ray's traceback), or Ray's first line (a worker or node that died)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
