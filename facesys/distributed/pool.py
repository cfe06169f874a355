"""A pool of pipeline actors on the Ray a job joined, and batches driven through it in order.

At most ``IN_FLIGHT`` batches per actor are queued at a time (memory stays bounded on a million
photos) and answers come back in the order the batches went in. An actor that dies (its process
or its whole node) leaves the pool and its batches go to the others, ``ATTEMPTS`` tries per batch
in all: a batch is only computed, never written, by an actor, so computing it twice is harmless
(the driver writes what it receives, by content hash). A batch that raises is the job's error
(one line), as it would be in one process.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from facesys.errors import FacesysError

IN_FLIGHT = 2  # batches queued per actor: one running, one waiting
ATTEMPTS = 3  # tries of a batch whose actor died, each on another actor


class ActorPool:
    """Pipeline actors (facesys/distributed/pipeline.py) for one embedder: one per GPU when the
    cluster has GPUs, else one per CPU."""

    def __init__(self, ray: ModuleType, embedder):
        from facesys.distributed.pipeline import PipelineActor
        from facesys.distributed.shipping import pack

        self.ray = ray
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        options = {"num_cpus": 1, "num_gpus": 1} if gpus else {"num_cpus": 1}
        shipped, weights = pack(embedder)
        self._weights = ray.put(weights)  # once in the object store, held for the pool's life
        remote = ray.remote(PipelineActor).options(**options)
        device = "cuda" if gpus else "cpu"
        self.actors = [remote.remote(shipped, self._weights, device, os.getcwd()) for _ in range(gpus or cpus)]
        self._turn = 0

    def in_order(self, method: str, batches: Iterable[Any], *args: Any) -> Iterator[Any]:
        """``actor.method(batch, *args)`` of every batch, spread over the actors, answered in order."""
        waiting: deque[list] = deque()  # [batch, actor, ref, attempt], oldest first
        for batch in batches:
            waiting.append([batch, *self._submit(method, batch, args), 1])
            if len(waiting) >= IN_FLIGHT * len(self.actors):
                yield self._answer(waiting.popleft(), method, args)
        while waiting:
            yield self._answer(waiting.popleft(), method, args)

    def close(self) -> None:
        """Every actor killed (a normal end, an error or Ctrl-C): queued batches go with them."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def _submit(self, method: str, batch: Any, args: tuple) -> tuple[Any, Any]:
        if not self.actors:
            raise FacesysError("ray: no pipeline actor left (every one died)", parameter="ray")
        actor = self.actors[self._turn % len(self.actors)]
        self._turn += 1
        return actor, getattr(actor, method).remote(batch, *args)

    def _answer(self, entry: list, method: str, args: tuple) -> Any:
        """One batch's answer; its actor's death sends it to another actor (ATTEMPTS in all).
        FacesysError (one line) when the batch itself failed or every try did."""
        batch, actor, ref, attempt = entry
        errors = self.ray.exceptions
        while True:
            try:
                return self.ray.get(ref)
            except errors.RayTaskError as exc:  # the batch raised: facesys's own error as it is
                if isinstance(exc.cause, FacesysError):
                    raise exc.cause from None
                raise FacesysError(f"ray: the pipeline failed ({one_line(exc)})", parameter="ray") from None
            except errors.RayError as exc:  # the actor (its process or its node) died, or never started
                if actor in self.actors:
                    self.actors.remove(actor)
                if attempt >= ATTEMPTS or not self.actors:
                    raise FacesysError(f"ray: the pipeline actors failed ({one_line(exc)})", parameter="ray") from None
                attempt += 1
                actor, ref = self._submit(method, batch, args)


def one_line(exc: BaseException) -> str:
    """A Ray error in one line: the task's own exception, or the last line of Ray's message that
    names an error (an actor that could not start says why there), else its first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line), lines[0] if lines else type(exc).__name__)
