"""A worker node killed mid-scan on a two-node cluster: Ray retries its batches on the surviving
node, the driver writes each photo once by its content hash, and afterwards every photo is in the
gallery exactly once with its faces; a re-run writes nothing (the pattern ``scan --ray`` uses)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.distributed.batches import drive_batches
from tests.distributed.toy_scan import GalleryWriter, ToyEmbedActor, attempts_by_batch, embed_batch, faces_of, write_photos
from tests.gallery.conftest import MODEL, STORE_FACTORIES

PHOTOS, BATCH, DELAY = 40, 4, 0.15  # 10 batches of 0.6 s on two 1-CPU nodes


def kill_when_running(nodes, attempts: Path, deadline: float = 30.0) -> threading.Thread:
    """A thread that kills the worker node as soon as a batch attempt is running there (started,
    not finished)."""
    worker = nodes.worker_node_id

    def watch() -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            running = [log for log in attempts.glob(f"*.{worker}.*") if "done" not in log.read_text()]
            if running:
                nodes.kill_worker()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def submitter(shape: str, attempts: Path, delay: float):
    """``submit(batch)`` for a pool of the given shape: plain tasks (Ray retries them on another
    node) or two actors spread over the nodes (restarted on the head, their calls retried)."""
    import itertools

    import ray

    if shape == "tasks":
        task = ray.remote(num_cpus=1, max_retries=3)(embed_batch)
        return lambda batch: task.remote(batch, str(attempts), delay)
    # half a CPU each: the actor of the dead node restarts beside the other one on the 1-CPU head
    actor = ray.remote(num_cpus=0.5, max_restarts=-1, max_task_retries=-1)(ToyEmbedActor)
    pool = [actor.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
    turn = itertools.cycle(pool)
    return lambda batch: next(turn).embed.remote(batch, str(attempts), delay)


@pytest.mark.parametrize(("backend", "shape"), [("sqlite", "tasks"), ("postgresql", "tasks"), ("sqlite", "actors")])
def test_a_node_killed_mid_scan_leaves_every_photo_once(two_nodes, tmp_path, backend, shape):
    paths = [str(p) for p in write_photos(tmp_path / "photos", PHOTOS)]
    batches = [paths[i : i + BATCH] for i in range(0, PHOTOS, BATCH)]
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    with STORE_FACTORIES[backend](tmp_path) as store:
        store.set_model(MODEL, "test-model", "0123456789abcdef" * 4, 8)
        writer = GalleryWriter(store)
        killer = kill_when_running(two_nodes, attempts)
        summary = drive_batches(submitter(shape, attempts, DELAY), batches, writer, window=4)
        killer.join()

        # The kill cut a batch short on the worker node, and Ray ran it again on the head.
        tried = attempts_by_batch(attempts)
        cut = [first for first, runs in tried.items() if (two_nodes.worker_node_id, False) in runs]
        assert cut, f"the worker node was not killed during a batch: {tried}"
        assert all(any(done for _, done in tried[first]) for first in cut)
        assert summary.failed == [] and summary.written == len(batches)

        # Every photo once, with its faces once.
        photos = store.library_photos()
        assert sorted(p.path for p in photos) == sorted(paths)
        assert all(p.faces == len(faces_of(p.sha256)) and p.error is None for p in photos)
        faces = store.carried_library().faces
        assert len(faces) == sum(p.faces for p in photos)
        assert len({f.face.embedding.tobytes() for f in faces}) == len(faces)

        # A re-run (a driver killed after the last write) recomputes and re-writes nothing.
        again = GalleryWriter(store)
        drive_batches(submitter(shape, attempts, 0.0), batches, again, window=4)
        assert (again.written, again.skipped) == (0, PHOTOS)
        assert store.library_photos() == photos
