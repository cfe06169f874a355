"""drive_batches: a bounded window, results written as they come, a failing batch submitted again
and then reported, never stopping the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.batches import drive_batches


def flaky(batch: list[int], marks: str) -> list[int]:
    """Doubles the batch; fails the first attempt of a batch holding 3, and always with 7."""
    if 7 in batch:
        raise ValueError("item 7 cannot be read")
    mark = Path(marks) / str(batch[0])
    if 3 in batch and not mark.exists():
        mark.touch()
        raise OSError("worker lost")
    return [2 * item for item in batch]


def test_failed_batches_are_resubmitted_then_reported(local_ray, tmp_path):
    import ray

    task = ray.remote(max_retries=0)(flaky)  # no Ray retries: application errors reach the driver
    written: dict[int, int] = {}
    batches = [[i, i + 1] for i in range(0, 10, 2)]
    summary = drive_batches(
        lambda batch: task.remote(batch, str(tmp_path)),
        batches,
        lambda batch, result: written.update(zip(batch, result, strict=True)),
        window=2,
        attempts=2,
    )
    assert written == {i: 2 * i for i in range(10) if i not in (6, 7)}
    assert summary.written == 4 and summary.resubmitted == 2  # [2, 3] once, [6, 7] once
    assert [batch for batch, _ in summary.failed] == [[6, 7]]
    assert summary.failed[0][1] == "ValueError: item 7 cannot be read"


def test_window_and_attempts_are_checked():
    with pytest.raises(ValueError, match="window"):
        drive_batches(lambda batch: None, [[1]], lambda batch, result: None, window=0)
