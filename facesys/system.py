"""FaceSystem: the object users hold. Ties an Embedder (the face pipeline), a Gallery (store and
index) and the matching rules together; the CLI and any service are thin shells over it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from facesys.config import DEFAULT_MODEL, DEFAULT_TARGET_FPIR, TOP_K
from facesys.decide.match import Identification, OpenSetThreshold, ThresholdPolicy, VerifyResult, verify
from facesys.enroll import Enrollment, EnrollReport, EnrollResult
from facesys.errors import FacesysError, ImageError, NoFaceError, NoGalleryError
from facesys.gallery.gallery import Gallery, Reembedded
from facesys.gallery.store import TruthStore
from facesys.vision.images import ImageInput
from facesys.vision.quality import ProbeRules, QualityRules, probe_problem, rules_for

if TYPE_CHECKING:
    from facesys.vision.embed import ImageFaces

Tag = TypeVar("Tag")
Identify = Callable[[list["ImageFaces"]], list[list[Identification]]]


class FaceSystem:
    """Enroll, verify and identify against a persistent gallery.

    ``gallery``: a Gallery or its folder (default ``$FACESYS_GALLERY`` or ``./gallery``); ``model``:
    a model name or checkpoint path (default: the gallery's model, else the default model);
    ``threshold``: overrides verify's and identify's thresholds; ``target_fpir``: open-set
    false-identification target; ``embedder``: an already loaded Embedder to use; ``detector``: the
    face detector's name (config.DETECTORS; default: the embedder's, else the default); ``quality``:
    enrollment's gates; ``probe_rules``: when identify answers "unknown (low quality)" (both default
    to the detector's score limits, facesys/vision/quality.py).

    Batch jobs (scan, enroll, identify, reindex) run their pipeline on a Ray cluster inside
    :meth:`on_ray` (or with their ``ray`` argument); the gallery is written here all the same.

    Thread-safe: the embedder is created once under a lock and holds no per-call state; every
    call opens its own store connection (one per identify call, :meth:`identifying`); the gallery
    guards its shared in-memory index.
    """

    def __init__(
        self,
        gallery: Gallery | str | Path | None = None,
        model: str | None = None,
        device: str = "cpu",
        weights: str | None = None,
        precision: str = "auto",
        quality: QualityRules | None = None,
        threshold: float | None = None,
        target_fpir: float = DEFAULT_TARGET_FPIR,
        embedder=None,
        probe_rules: ProbeRules | None = None,
        detector: str | None = None,
        key_file: str | Path | None = None,
    ):
        if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 2.0):
            raise FacesysError(f"threshold {threshold}: must be a distance between 0 and 2", parameter="threshold")
        self.gallery = gallery if isinstance(gallery, Gallery) else Gallery(gallery, key_file=key_file)
        self.requested_model, self.device, self.weights, self.precision = model, device, weights, precision
        if detector is None and embedder is not None:  # a detector without a name gets the default's rules
            detector = getattr(embedder.detector, "name", None)
        self.detector = detector
        gates, probes = rules_for(self.detector)  # an unknown detector fails here, before any model loads
        self.quality = quality or gates
        self.probe_rules = probe_rules or probes
        self.threshold_override = threshold
        self.target_fpir = target_fpir
        self._embedder = embedder
        self._lock = threading.Lock()
        self._on_actors: Callable | None = None  # inside on_ray: an Embedder -> its Ray actors' embedder

    @property
    def embedder(self):
        """The Embedder, created on first use with the requested model or the gallery's (inside
        :meth:`on_ray`, the same run by Ray actors)."""
        return self._placed(self._embedder_of(None))

    def _placed(self, embedder):
        """``embedder``, or inside :meth:`on_ray` the same run by the block's Ray actors."""
        return embedder if self._on_actors is None else self._on_actors(embedder)

    @contextlib.contextmanager
    def on_ray(self, address: str | None = "local") -> Iterator[FaceSystem]:
        """Every job in the block reads, detects and embeds on Ray: ``local`` (or None) starts a
        Ray here for the block (loopback only), ``auto`` or ``host:port`` joins a running cluster
        (facesys/distributed/). FacesysError naming the address, before anything changes, when it
        cannot be joined."""
        from facesys.distributed.embedder import on_ray

        with on_ray(address) as on_actors:
            before, self._on_actors = self._on_actors, on_actors
            try:
                yield self
            finally:
                self._on_actors = before

    def _ray(self, address: str | None) -> contextlib.AbstractContextManager:
        """:meth:`on_ray` at ``address``, or nothing when it is None (a job's ``ray`` argument)."""
        return contextlib.nullcontext() if address is None else self.on_ray(address)

    def _embedder_of(self, store: TruthStore | None):
        """:attr:`embedder`, the gallery's model read from ``store`` (default: opened here) if it is created now."""
        with self._lock:
            if self._embedder is None:
                from facesys.vision.embed import Embedder

                held = self.gallery.model(store)
                model = self.requested_model or (held[1] if held else DEFAULT_MODEL)
                options = {"device": self.device, "weights": self.weights, "precision": self.precision, "detector": self.detector}
                self._embedder = Embedder(model, **options)
            return self._embedder

    def policy(self, threshold: float | None = None, store: TruthStore | None = None) -> ThresholdPolicy:
        """The thresholds in force (the gallery's calibrated ones only when it holds this model);
        ``threshold`` overrides them for one call, as the constructor's ``threshold`` does for all.
        ``store``: the gallery's store, open (default: opened here)."""
        override = threshold if threshold is not None else self.threshold_override
        embedder = self.embedder
        return self.gallery.policy(embedder.spec, override, self.target_fpir, embedder.model_id, store)

    def set_threshold(self, kind: str, value: float | None) -> None:
        """Store a calibrated ``verify`` or ``identify`` threshold in the gallery (None removes it)."""
        self.gallery.require_model(self.embedder.model_id)
        self.gallery.set_threshold(kind, value)

    # -- enrollment -----------------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        images: Iterable[ImageInput],
        on_result: Callable[[EnrollResult], None] | None = None,
        ray: str | None = None,
    ) -> EnrollReport:
        """Enroll photos of one person. Each accepted photo is committed on its own before
        ``on_result`` hears of it; bad photos are reported, not fatal. ``ray``: see :meth:`on_ray`."""
        return self.enroll_many(((name, image) for image in images), on_result, ray)

    def enroll_many(
        self,
        items: Iterable[tuple[str, ImageInput]],
        on_result: Callable[[EnrollResult], None] | None = None,
        ray: str | None = None,
    ) -> EnrollReport:
        """Enroll (name, photo) pairs; see :meth:`enroll`."""
        self.gallery.require_model(self.embedder.model_id)
        with self._ray(ray):
            return Enrollment(self.embedder, self.gallery, self.quality, self.policy().verify()[0]).run(items, on_result)

    # -- decisions ------------------------------------------------------------------------------

    def verify(self, a: ImageInput, b: ImageInput) -> VerifyResult:
        """Same person or not: the largest face of each photo, compared at the threshold in force
        (``threshold`` argument > gallery's calibrated > model default). NoFaceError if a photo has none."""
        return self.verify_faces(*self.embedder.faces([a, b], select="largest"))

    def verify_faces(self, a: ImageFaces, b: ImageFaces, threshold: float | None = None) -> VerifyResult:
        """:meth:`verify` on two images already through the pipeline (faces largest first);
        ``threshold`` overrides the one in force. ImageError / NoFaceError naming the image."""
        for result in (a, b):
            if result.error:
                raise ImageError(result.error)
            if not result.faces:
                raise NoFaceError(f"{result.source}: no face found")
        return VerifyResult(
            verify(a.faces[0].embedding, b.faces[0].embedding, *self.policy(threshold).verify()),
            (a.faces[0].box.tolist(), b.faces[0].box.tolist()),
            (a.found, b.found),
        )

    def identify(self, image: ImageInput, top_k: int = TOP_K) -> list[Identification]:
        """Every face in the photo, largest first, named or unknown (name None)."""
        return self.identify_many([image], top_k)[0]

    def identify_many(self, images: list[ImageInput], top_k: int = TOP_K) -> list[list[Identification]]:
        """:meth:`identify` for several images: batched detection, network pass and search.
        ImageError for an unusable image."""
        answers = []
        for _, result, faces in self.identify_stream(((None, image) for image in images), top_k):
            if result.error:
                raise ImageError(result.error)
            answers.append(faces)
        return answers

    def identify_stream(
        self, items: Iterable[tuple[Tag, ImageInput]], top_k: int = TOP_K, ray: str | None = None
    ) -> Iterator[tuple[Tag, ImageFaces, list[Identification]]]:
        """(tag, image) items -> (tag, ImageFaces, identifications) in input order; unusable
        images come back with ``ImageFaces.error`` set and no identification. One store open for
        the whole stream (:meth:`identifying`). ``ray``: see :meth:`on_ray` (then
        ``ImageFaces.image`` is None: the pixels stay on the actors)."""
        with self._ray(ray), self.identifying(top_k) as identify:
            for batch in self.embedder.face_batches(items, select="all", errors="collect"):
                answers = identify([result for _, result in batch])
                for (tag, result), faces in zip(batch, answers, strict=True):
                    yield tag, result, faces

    @contextlib.contextmanager
    def identifying(
        self, top_k: int = TOP_K, threshold: float | None = None, store: TruthStore | None = None
    ) -> Iterator[Identify]:
        """One identify call (the CLI's, a service request's, a scan's): yields the function that
        names every face of images already through the pipeline (one search per batch; a face that
        fails the probe rules names nobody). The gallery's store, opened once (or ``store``), serves
        the model check, thresholds, calibration and searches. NoGalleryError when there is no
        gallery (or no face yet), GalleryError when it holds another model: before any network runs."""
        with self.gallery.open() if store is None else contextlib.nullcontext(store) as store:
            held = self.gallery.model(store)
            if held is None:
                raise NoGalleryError(self.gallery.location)
            requested = self.requested_model
            if requested is not None and requested != held[1] and {requested, held[1]} <= _registered():
                self.gallery.require_model(requested, store)  # two different registered models: no need to load one
            model_id = self._embedder_of(store).model_id
            self.gallery.require_model(model_id, store)
            policy = self.policy(threshold, store)

            def identify(results: list[ImageFaces]) -> list[list[Identification]]:
                faces = [face for result in results for face in result.faces]
                ranked, limit = [[] for _ in faces], policy.identify(0)
                # require_model: the gallery may have been re-embedded meanwhile by another process
                if faces and self.gallery.require_model(model_id, store) is not None:
                    vectors = np.stack([f.embedding for f in faces])
                    ranked, limit = self.gallery.identify(vectors, top_k, policy, store=store)
                answers = iter(_identification(f, c, limit, self.probe_rules) for f, c in zip(faces, ranked, strict=True))
                return [[next(answers) for _ in result.faces] for result in results]

            yield identify

    def reindex(self, model: str, ray: str | None = None) -> Reembedded:
        """Re-embed every stored face, enrolled and in the photo library, with ``model`` from the
        stored crops (kill-safe, see Gallery.reembed); returns how many of each were done.
        ``ray``: see :meth:`on_ray`."""
        from facesys.vision.embed import Embedder

        embedder = Embedder(model, device=self.device, weights=self.weights, precision=self.precision)
        with self._ray(ray):
            done = self.gallery.reembed(embedder.model_info, self._placed(embedder).embed_crops)
        with self._lock:
            self._embedder = embedder
        return done

    # -- the photo library (facesys/library/): faces nobody labelled, unnamed until named ---------

    def scan(
        self,
        paths: list,
        every: int | None = None,
        on_result: Callable | None = None,
        force: bool = False,
        on_start: Callable[[int], None] | None = None,
        ray: str | None = None,
    ):
        """Store every face of the photos (and every ``every``-th video frame) under ``paths`` as
        unnamed library faces, incrementally; faces matching an enrolled person are attached to them
        automatically. ``ray``: see :meth:`on_ray`. Returns a ScanReport; see facesys/library/scan.py."""
        from facesys.library.scan import scan

        if self.requested_model is not None:  # a model asked for must be the gallery's before anything changes
            self.gallery.require_model(self.embedder.model_id)
        with self._ray(ray):  # joined before anything changes: a bad address changes nothing
            return scan(self.gallery, paths, lambda: self.embedder, self.identifying, every, on_result, force, on_start)

    def cluster(self, threshold: float | None = None):
        """Group the unnamed library faces (clusters that persist keep their ids); returns a ClusterRun."""
        from facesys.library.clusters import cluster_library

        return cluster_library(self.gallery, threshold, self.probe_rules)

    def clusters(self, min_size: int = 1) -> list:
        """The clusters of unnamed faces with at least ``min_size`` faces, largest first."""
        from facesys.library.clusters import list_clusters

        return list_clusters(self.gallery, min_size)

    def name_cluster(self, cluster: int, name: str):
        """Name every face of ``cluster`` (merged into an existing person of that name); returns NamedFaces."""
        from facesys.library.names import name_cluster

        return name_cluster(self.gallery, cluster, name)

    def name_faces(self, face_ids: list[int], name: str, seen: dict | None = None):
        """Name library faces (moving them from another person if named before); returns NamedFaces.
        ``seen``: face id -> the person (None: unnamed) the caller saw it as (compare-and-set)."""
        from facesys.library.names import name_faces

        return name_faces(self.gallery, face_ids, name, seen)

    def unname_faces(self, face_ids: list[int], seen: dict | None = None) -> list[int]:
        """Take library faces back from their person (automatic or not); returns those that were named."""
        from facesys.library.names import unname_faces

        return unname_faces(self.gallery, face_ids, seen)

    def remove_library_faces(self, face_ids: list[int], seen: dict | None = None) -> int:
        """Delete library faces entirely (crops and vectors); returns how many."""
        from facesys.library.names import remove_faces

        return remove_faces(self.gallery, face_ids, seen)

    def find(self, name: str):
        """The photos ``name`` appears in (enrolled and library), each with its boxes; returns Found."""
        from facesys.library.names import find

        return find(self.gallery, name)


def _identification(face, candidates, threshold: OpenSetThreshold, rules: ProbeRules) -> Identification:
    """One face's answer: named when it is good enough to judge and its best candidate is within ``threshold``."""
    best = candidates[0] if candidates else None
    problem = probe_problem(face.box, face.score, face.landmarks, face.sharpness, rules)
    named = best is not None and problem is None and best.distance <= threshold.value
    return Identification(
        face.box.tolist(),
        face.score,
        best.name if named else None,
        best.distance if best else None,
        threshold.value,
        candidates,
        quality=problem,
        threshold_source=threshold.source,
    )


def _registered() -> set[str]:
    from facesys.models import list_models

    return set(list_models())
