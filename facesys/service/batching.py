"""Micro-batching: concurrent recognition requests share one detection and one network pass.

Each request hands its images and a ``finish`` function (what to make of its images' faces) to a
:class:`MicroBatcher`. A batch opens with the first waiting request and closes after
``max_images`` images or ``max_wait_s`` seconds; it then runs in one worker thread (so the event
loop keeps serving), and each request's ``finish`` runs there too, on its own images. While a
batch runs, new requests queue and form the next one: under load batches fill up by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from facesys.service.errors import ApiError
from facesys.vision.images import ImageBytes

# Runs the pipeline over a batch: images -> one ImageFaces per image, in order.
Pipeline = Callable[[list[ImageBytes]], list[Any]]


@dataclass
class _Job:
    images: list[ImageBytes]
    finish: Callable[[list[Any]], Any]
    future: asyncio.Future


class MicroBatcher:
    """Gather jobs into batches of up to ``max_images`` images, waiting at most ``max_wait_s``
    after a batch's first job; at most ``max_queue`` jobs wait (then ApiError 503 "busy")."""

    def __init__(self, pipeline: Pipeline, max_images: int, max_wait_s: float, max_queue: int):
        self.pipeline, self.max_images, self.max_wait_s, self.max_queue = pipeline, max_images, max_wait_s, max_queue
        self.batches = 0  # batches run so far
        self.images = 0  # images they held
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="facesys-batch")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, images: list[ImageBytes], finish: Callable[[list[Any]], Any]) -> Any:
        """``finish(faces of images)``, computed in a batch with other requests' images. A job
        cancelled while it waits (its request timed out) is dropped before it runs."""
        if self._queue.qsize() >= self.max_queue:
            raise ApiError(503, f"server busy: {self.max_queue} requests are waiting; retry shortly", "busy")
        job = _Job(images, finish, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            jobs = [job for job in jobs if not job.future.done()]
            if not jobs:
                continue
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, jobs)
            except Exception as exc:  # the pipeline itself failed: every request of the batch hears of it
                outcomes = [(False, exc)] * len(jobs)
            for job, (ok, value) in zip(jobs, outcomes, strict=True):
                if not job.future.done():
                    job.future.set_result(value) if ok else job.future.set_exception(value)

    async def _gather(self) -> list[_Job]:
        """The next batch: the first waiting job, then more until the batch is full or its time is up."""
        jobs = [await self._queue.get()]
        count = len(jobs[0].images)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_images:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(job)
            count += len(job.images)
        return jobs

    def _run_batch(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """In the worker thread: one pipeline pass over every job's images, then each job's finish."""
        results = self.pipeline([image for job in jobs for image in job.images])
        self.batches += 1
        self.images += len(results)
        outcomes, start = [], 0
        for job in jobs:
            mine = results[start : start + len(job.images)]
            start += len(job.images)
            try:
                outcomes.append((True, job.finish(mine)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
