"""The Embedder of a job on Ray: the same calls as facesys/vision/embed.py's Embedder, run by a
pool of pipeline actors (facesys/distributed/pool.py), so every job that takes an embedder (scan,
enroll, identify, reindex, evaluation) runs on Ray unchanged: the driver lists, decides and
writes; the actors read, detect and embed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType

import numpy as np

from facesys.config import PHOTO_BATCH
from facesys.vision.embed import Embedder, ImageFaces, ImageSource, Tag, check_options, source_name

CROPS_PER_BATCH = 64  # stored faces per actor call when re-embedding (gallery reindex)


class RayEmbedder:
    """``local``'s pipeline run by Ray actors (created at the first call, on the Ray ``ray``);
    everything else (model id, spec, detector...) is ``local``'s. :meth:`close` kills the actors."""

    def __init__(self, local: Embedder, ray: ModuleType):
        self.local, self.ray = local, ray
        self._pool = None

    def __getattr__(self, name: str):
        if name == "local":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.local, name)

    @property
    def pool(self):
        from facesys.distributed.pool import ActorPool

        if self._pool is None:
            self._pool = ActorPool(self.ray, self.local)
        return self._pool

    faces = Embedder.faces  # through this class's face_batches

    def face_batches(
        self,
        items: Iterable[tuple[Tag, ImageSource]],
        select: str = "all",
        errors: str = "raise",
        keep_chips: bool = False,
        embed: bool = True,
        batch_size: int = PHOTO_BATCH,
        crops: bool = False,
    ) -> Iterator[list[tuple[Tag, ImageFaces]]]:
        """``Embedder.face_batches`` on the actors: batches of ``batch_size`` images, in order;
        the images' tags stay here, and results come back without pixels (``ImageFaces.image`` None)."""
        from facesys.distributed.pipeline import faces_from_wire, source_to_wire

        check_options(select, errors)
        options = (select, errors, keep_chips, embed, batch_size, crops)
        held: dict[int, tuple[Tag, str]] = {}  # position -> (tag, name) of the images sent

        def batches() -> Iterator[list]:
            batch = []
            for position, (tag, source) in enumerate(items):
                held[position] = (tag, source_name(source))
                batch.append((position, source_to_wire(source)))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

        for answers in self.pool.in_order("face_batches", batches(), options):
            out = []
            for position, item in answers:
                tag, name = held.pop(position)
                out.append((tag, faces_from_wire(item, name)))
            yield out

    def embed_crops(self, crops: list[tuple[bytes, list[float], list[list[float]]]]) -> np.ndarray:
        """``Embedder.embed_crops`` on the actors, CROPS_PER_BATCH crops per call."""
        parts = [crops[i : i + CROPS_PER_BATCH] for i in range(0, len(crops), CROPS_PER_BATCH)]
        vectors = list(self.pool.in_order("embed_crops", parts))
        return np.concatenate(vectors) if vectors else np.zeros((0, self.spec.embedding_dim), np.float32)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


@contextlib.contextmanager
def on_ray(address: str | None) -> Iterator[Callable[[Embedder], Embedder | RayEmbedder]]:
    """Ray joined at ``address`` for the block (facesys/distributed/cluster.py: None or ``local``
    starts one here); yields the function that gives an embedder's RayEmbedder (one per embedder,
    its actors killed at the end of the block)."""
    from facesys.distributed.cluster import connected

    remote: dict[int, RayEmbedder] = {}

    def on_actors(embedder: Embedder) -> RayEmbedder:
        if isinstance(embedder, RayEmbedder):
            return embedder
        if id(embedder) not in remote:
            remote[id(embedder)] = RayEmbedder(embedder, ray)
        return remote[id(embedder)]

    with connected(address) as ray:
        try:
            yield on_actors
        finally:
            for embedder in remote.values():
                embedder.close()
