"""Pipeline actors: each holds one Embedder (its model built once from the weights the driver put in
the object store) and reads batches of files with the scan's own reader (facesys/library/scan.py:
read_files), returning plain values (numbers, arrays, bytes), never facesys objects.

One actor per GPU when the cluster has GPUs (``num_gpus=1`` each), else one per CPU. Ray restarts
an actor that dies and retries its batch (``max_restarts``, ``max_task_retries``); a retried batch
only recomputes faces, since the driver writes them (by content hash) once it has them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from types import ModuleType

import numpy as np

from facesys.config import PHOTO_BATCH
from facesys.errors import FacesysError
from facesys.library.scan import Reader, Seen
from facesys.vision.embed import Face, ImageFaces

RETRIES = 3  # restarts of a dead actor, and retries of the batch it held
IN_FLIGHT = 2  # batches queued per actor: one running, one waiting


class PipelineActor:
    """A Ray actor reading files through the pipeline (see the module docstring)."""

    def __init__(self, shipped, weights: bytes, device: str, every: int | None):
        from facesys import threads
        from facesys.distributed.shipping import unpack
        from facesys.library.scan import read_files

        threads.configure(1)  # one CPU per actor: Ray gave it one
        self.read = read_files(unpack(shipped, weights, device), every)

    def read_batch(self, files: list[tuple[int, str]]) -> list[dict]:
        """The files' photos and frames through the pipeline, as :func:`to_wire` dicts: a photo
        that cannot be read is its own error (as in one process); anything else raised stops the
        scan (as in one process) rather than be recorded as the files' error."""
        return [to_wire(seen) for batch in self.read((index, Path(path)) for index, path in files) for seen in batch]


def to_wire(seen: Seen) -> dict:
    """A Seen as plain values (what crosses Ray); :func:`from_wire` reads it back."""
    faces = seen.result.faces
    return {
        "index": seen.index,
        "frame": seen.frame,
        "source": seen.result.source,
        "error": seen.result.error,
        "boxes": np.array([f.box for f in faces], np.float64).reshape(-1, 4),
        "landmarks": np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2),
        "scores": [float(f.score) for f in faces],
        "embeddings": np.stack([f.embedding for f in faces]).astype(np.float32) if faces else np.zeros((0, 0), np.float32),
        "sharpness": [None if f.sharpness is None else float(f.sharpness) for f in faces],
        "crops": [(bytes(jpeg), tuple(float(v) for v in origin)) for jpeg, origin in seen.crops],
    }


def from_wire(item: dict) -> Seen:
    """The Seen that :func:`to_wire` sent (without detections or pixels: a scan uses neither)."""
    faces = [
        Face(box, landmarks, score, embedding, sharpness=sharpness)
        for box, landmarks, score, embedding, sharpness in zip(
            item["boxes"], item["landmarks"], item["scores"], item["embeddings"], item["sharpness"], strict=True
        )
    ]
    result = ImageFaces(item["source"], faces, [], None, item["error"])
    return Seen(item["index"], item["frame"], result, [(jpeg, tuple(origin)) for jpeg, origin in item["crops"]])


def actor_options(ray: ModuleType, actors: int | None) -> tuple[int, str, dict]:
    """(how many actors, their device, their Ray options): one per GPU when there are GPUs, else one per CPU."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    options = {"max_restarts": RETRIES, "max_task_retries": RETRIES}
    if gpus:
        return actors or gpus, "cuda", {**options, "num_gpus": 1, "num_cpus": 1}
    return actors or max(1, int(resources.get("CPU", 1))), "cpu", {**options, "num_cpus": 1}


def ray_reading(ray: ModuleType, actors: int | None = None, batch: int = PHOTO_BATCH):
    """A scan's Reading (facesys/library/scan.py) on the Ray that ``ray`` joined: ``actors`` pipeline
    actors (default: see :func:`actor_options`), ``batch`` files per call."""

    @contextlib.contextmanager
    def reading(embedder, every: int | None) -> Iterator[Reader]:
        from facesys.distributed.shipping import pack

        count, device, options = actor_options(ray, actors)
        shipped, weights = pack(embedder)
        stored = ray.put(weights)  # once in the object store; each actor reads it there
        remote = ray.remote(PipelineActor).options(**options)
        pool = [remote.remote(shipped, stored, device, every) for _ in range(count)]
        try:
            yield lambda files: _read(ray, pool, files, batch)
        finally:  # normal end, an error or Ctrl-C: the actors go, queued batches with them
            for actor in pool:
                ray.kill(actor)

    return reading


def _read(ray: ModuleType, pool: list, files: Iterable[tuple[int, Path]], batch: int) -> Iterator[list[Seen]]:
    """Batches of ``batch`` files spread over ``pool`` (IN_FLIGHT each at most), answered in order."""
    from collections import deque

    waiting: deque = deque()
    items = iter(files)
    turn = 0
    while chunk := [(index, str(path)) for index, path in islice(items, batch)]:
        waiting.append(pool[turn % len(pool)].read_batch.remote(chunk))
        turn += 1
        if len(waiting) >= IN_FLIGHT * len(pool):
            yield _answer(ray, waiting.popleft())
    while waiting:
        yield _answer(ray, waiting.popleft())


def _answer(ray: ModuleType, ref) -> list[Seen]:
    """One batch's answer; FacesysError (one line) when Ray could not give it: an actor that cannot
    start (facesys or its model missing on a node), that raised, or died more often than RETRIES."""
    try:
        return [from_wire(item) for item in ray.get(ref)]
    except ray.exceptions.RayError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else type(exc).__name__)
        raise FacesysError(f"ray: the pipeline actors failed ({cause})", parameter="ray") from None


@contextlib.contextmanager
def reading_at(address: str | None) -> Iterator:
    """A scan's Reading on the Ray at ``address`` (see facesys/distributed/cluster.py: None or
    ``local`` starts one here), joined for the ``with`` block."""
    from facesys.distributed.cluster import connected

    with connected(address) as ray:
        yield ray_reading(ray)
