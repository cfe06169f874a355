"""FaceSystem: the object users hold. Ties the embedder, the gallery store, its index and the
matching rules together; the CLI is a thin shell over it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesys.errors import FacesysError, GalleryError, ImageError, NoFaceError
from facesys.gallery.store import DB_NAME, GalleryStore, NewFace, check_name
from facesys.images import ImageInput, describe, load_image
from facesys.match import Identification, Verification, identify_threshold, rank_people, verify
from facesys.quality import QualityRules, check_chip, pick_enrollment_face, sharpness

DEFAULT_MODEL = "dlib-resnet"
# Stored crops: the face box plus this fraction of its size on every side, the face at most
# CROP_FACE_PX pixels across, JPEG quality CROP_QUALITY. Enough for any model to re-align.
CONFUSION_NEIGHBOURS = 32  # enrolled faces compared with a new photo for the confusion warning
CROP_MARGIN = 0.6
CROP_FACE_PX = 224
CROP_QUALITY = 95


def default_gallery() -> Path:
    """``$FACESYS_GALLERY``, else ``gallery/`` in the current directory."""
    return Path(os.environ.get("FACESYS_GALLERY", "gallery"))


@dataclass(frozen=True)
class EnrollResult:
    """What happened to one enrollment photo: status is enrolled, duplicate, rejected or error."""

    source: str
    name: str
    status: str
    reason: str | None = None
    face_id: int | None = None
    warning: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class EnrollReport:
    results: list[EnrollResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


@dataclass(frozen=True)
class VerifyResult:
    """``verify``'s answer, with the face used in each photo and how many each photo had."""

    verification: Verification
    boxes: tuple[list[float], list[float]]
    faces_found: tuple[int, int]

    def to_dict(self, files: tuple[str, str]) -> dict:
        v = self.verification
        return {
            "same": v.same,
            "distance": round(v.distance, 4),
            "threshold": round(v.threshold, 4),
            "threshold_source": v.threshold_source,
            "a": {"file": files[0], "box": [round(x, 1) for x in self.boxes[0]], "faces_found": self.faces_found[0]},
            "b": {"file": files[1], "box": [round(x, 1) for x in self.boxes[1]], "faces_found": self.faces_found[1]},
        }


def image_sha256(source: ImageInput) -> str:
    """sha256 of a file's bytes, or of an array's pixels (so re-enrolling the same photo is detected)."""
    if isinstance(source, (str, os.PathLike)):
        try:
            return hashlib.sha256(Path(source).read_bytes()).hexdigest()
        except OSError as exc:
            raise ImageError(f"{source}: cannot read ({exc.strerror})") from None
    return hashlib.sha256(np.ascontiguousarray(load_image(source)).tobytes()).hexdigest()


def face_crop(image: np.ndarray, box: np.ndarray) -> tuple[bytes, tuple[float, float, float]]:
    """A model-independent JPEG crop around ``box`` and its origin (x0, y0, scale)."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    size = max(x2 - x1, y2 - y1)
    x0, y0 = max(0, int(x1 - CROP_MARGIN * size)), max(0, int(y1 - CROP_MARGIN * size))
    xe, ye = min(image.shape[1], int(x2 + CROP_MARGIN * size) + 1), min(image.shape[0], int(y2 + CROP_MARGIN * size) + 1)
    crop = image[y0:ye, x0:xe]
    scale = min(1.0, CROP_FACE_PX / max(size, 1.0))
    if scale < 1.0:
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, CROP_QUALITY])
    if not ok:
        raise FacesysError("could not encode the face crop")
    return encoded.tobytes(), (float(x0), float(y0), scale)


class FaceSystem:
    """Enroll, verify and identify against a persistent gallery.

    ``gallery``: folder (default ``$FACESYS_GALLERY`` or ``./gallery``); ``model``: a model name or
    checkpoint path (default: the gallery's model, else dlib-resnet); ``threshold``: overrides
    verify's and identify's thresholds; ``target_fpir``: open-set false-identification target;
    ``embedder``: an already loaded Embedder to use instead of loading ``model``.
    """

    def __init__(
        self,
        gallery: str | Path | None = None,
        model: str | None = None,
        device: str = "cpu",
        weights: str | None = None,
        precision: str = "auto",
        quality: QualityRules | None = None,
        threshold: float | None = None,
        target_fpir: float = 0.01,
        embedder=None,
    ):
        self.gallery = Path(gallery) if gallery is not None else default_gallery()
        self.requested_model, self.device, self.weights, self.precision = model, device, weights, precision
        self.quality = quality or QualityRules()
        self.threshold_override = threshold
        self.target_fpir = target_fpir
        self._embedder = embedder
        self._index = None  # the last FaceIndex loaded, reused while the store's generation is unchanged

    # -- plumbing -----------------------------------------------------------------------------

    def _store(self, create: bool = False) -> GalleryStore:
        return GalleryStore(self.gallery, create=create)

    def _gallery_exists(self) -> bool:
        return (self.gallery / DB_NAME).is_file()

    def _gallery_model(self) -> str | None:
        if not self._gallery_exists():
            return None
        with self._store() as store:
            return store.meta().get("model_name")

    @property
    def embedder(self):
        """The Embedder, created on first use with the requested model or the gallery's."""
        if self._embedder is None:
            from facesys.embed import Embedder

            model = self.requested_model or self._gallery_model() or DEFAULT_MODEL
            self._embedder = Embedder(model, device=self.device, weights=self.weights, precision=self.precision)
        return self._embedder

    def _check_model(self, store: GalleryStore) -> None:
        """GalleryError when the gallery holds embeddings of another model."""
        gallery_model = store.model_id
        if gallery_model is not None and gallery_model != self.embedder.model_id:
            name = store.meta().get("model_name", gallery_model)
            raise GalleryError(
                f"{self.gallery}: gallery was built with {gallery_model}, not {self.embedder.model_id}; "
                f"use --model {name}, or re-embed it with: facesys gallery reindex --model {self.embedder.spec.name}"
            )

    def _verify_threshold(self, store: GalleryStore | None) -> tuple[float, str]:
        if self.threshold_override is not None:
            return self.threshold_override, "argument"
        if store is not None and store.model_id == self.embedder.model_id and store.threshold("verify") is not None:
            return store.threshold("verify"), "gallery"
        return self.embedder.spec.threshold, "model default"

    def _identify_threshold(self, store: GalleryStore, faces: int) -> float:
        if self.threshold_override is not None:
            return self.threshold_override
        if store.threshold("identify") is not None:
            return store.threshold("identify")
        verify_threshold, _ = self._verify_threshold(store)
        return identify_threshold(self.embedder.spec.far_table, faces, verify_threshold, self.target_fpir)

    # -- people -------------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """(name, number of enrolled faces) of everyone in the gallery."""
        if not self._gallery_exists():
            return []
        with self._store() as store:
            return store.people()

    def remove(self, name: str) -> int:
        """Forget a person: their faces, crops and index entries; returns the faces removed."""
        with self._store() as store:
            count = store.remove_person(name)
            self._refresh_index(store)
        return count

    def rename(self, old: str, new: str) -> None:
        """Rename a person (no re-embedding)."""
        with self._store() as store:
            store.rename_person(old, new)
            self._refresh_index(store)

    def faces(self, name: str):
        """The enrolled face records of ``name`` (GalleryError if nobody has that name)."""
        with self._store() as store:
            records = store.faces(name)
        if not records:
            raise GalleryError(f"no person named {name!r} in {self.gallery}")
        return records

    def set_threshold(self, kind: str, value: float | None) -> None:
        """Store a calibrated ``verify`` or ``identify`` threshold in the gallery (None removes it)."""
        with self._store() as store:
            self._check_model(store)
            store.set_threshold(kind, value)

    def check(self) -> list[str]:
        """Problems in the gallery (empty when healthy): the database's own checks, and whether the
        saved FAISS index agrees with it (ids and vectors)."""
        from facesys.gallery.index import index_problems

        with self._store() as store:
            return store.check() + index_problems(store)

    def repair(self) -> list[str]:
        """Rebuild everything derived (index), drop people without faces; returns what was done.
        A database that fails SQLite's integrity check cannot be repaired here: restore an export."""
        from facesys.gallery.index import rebuild_index

        done = []
        with self._store() as store:
            if any(p.startswith("sqlite:") for p in store.check()):
                raise GalleryError(f"{store.path}: the database itself is damaged; restore it from an export (gallery import)")
            if removed := store.remove_empty_people():
                done.append(f"removed {removed} person(s) without faces")
            rebuild_index(store)
            done.append("rebuilt the index")
        return done

    def export(self, path: str | Path) -> int:
        """Write the gallery to a portable zip (see facesys/gallery/portable.py); returns the faces written."""
        from facesys.gallery.portable import export_gallery

        with self._store() as store:
            return export_gallery(store, path)

    def import_(self, path: str | Path) -> tuple[int, int]:
        """Add the faces of an export; returns (added, skipped as already present)."""
        from facesys.gallery.portable import import_gallery

        with self._store(create=True) as store:
            result = import_gallery(store, path)
            self._refresh_index(store)
        return result

    def index(self, kind: str | None = None) -> dict:
        """The gallery's search index (kind, faces, forced kind, build or load seconds); ``kind``
        (auto, flat, ivf, hnsw) forces a kind first and rebuilds the index as that kind."""
        import time

        from facesys.gallery.index import INDEX_KINDS

        if kind is not None and kind not in INDEX_KINDS:
            raise FacesysError(f"--kind {kind}: choose from {', '.join(INDEX_KINDS)}")
        with self._store() as store:
            if kind is not None:
                store.set_index_kind(kind)
                self._index = None  # the kind changed, the generation did not
            started = time.perf_counter()
            index = self._refresh_index(store)
            seconds = time.perf_counter() - started
            return {"kind": index.kind, "faces": len(index), "forced": store.index_kind(), "seconds": seconds}

    def stats(self) -> dict:
        """People, faces, model, thresholds and sizes of the gallery."""
        with self._store() as store:
            return store.stats()

    def forget_missing_photos(self, folder: str | Path) -> int:
        """Forget faces whose source photo lay under ``folder`` and no longer exists; returns how many."""
        if not self._gallery_exists():
            return 0
        folder = Path(folder).resolve()
        with self._store() as store:
            gone = [f.id for f in store.faces() if Path(f.source).is_relative_to(folder) and not Path(f.source).exists()]
            if gone:
                store.remove_faces(gone)
                self._refresh_index(store)
        return len(gone)

    def enroll(
        self,
        name: str,
        images: Iterable[ImageInput],
        on_result: Callable[[EnrollResult], None] | None = None,
        batch_size: int = 16,
    ) -> EnrollReport:
        """Enroll photos of one person. Each accepted photo is committed on its own before
        ``on_result`` hears of it; bad photos are reported, not fatal."""
        check_name(name)
        return self.enroll_many(((name, image) for image in images), on_result, batch_size)

    def enroll_many(
        self,
        items: Iterable[tuple[str, ImageInput]],
        on_result: Callable[[EnrollResult], None] | None = None,
        batch_size: int = 16,
    ) -> EnrollReport:
        """Enroll (name, photo) pairs; see :meth:`enroll`."""
        report = EnrollReport()

        def record(result: EnrollResult) -> None:
            report.results.append(result)
            if on_result:
                on_result(result)

        items = list(items)
        # A gallery is created only when its first face is added: bad input leaves no trace.
        store = self._store() if self._gallery_exists() else None
        recent: list[tuple[str, np.ndarray]] = []  # faces added by this call, not yet in the index
        try:
            if store is not None:
                self._check_model(store)
                self._refresh_index(store)
            for start in range(0, len(items), batch_size):
                store = self._enroll_batch(store, items[start : start + batch_size], record, recent)
            if store is not None and report.count("enrolled"):
                self._refresh_index(store)
        finally:
            if store is not None:
                store.close()
        return report

    def _open_for_writing(self, store: GalleryStore | None) -> GalleryStore:
        """``store``, or a new gallery bound to this system's model."""
        if store is None:
            store = self._store(create=True)
            self._check_model(store)  # another process may have created it meanwhile
        if store.model_id is None:
            embedder = self.embedder
            store.set_model(embedder.model_id, embedder.source, embedder.model.weights_sha256, embedder.spec.embedding_dim)
        return store

    def _enroll_batch(
        self, store: GalleryStore | None, batch: list[tuple[str, ImageInput]], record, recent: list[tuple[str, np.ndarray]]
    ) -> GalleryStore | None:
        """Enroll one batch of (name, photo); returns the store (opened when the first face is added)."""
        loaded = []
        for name, source in batch:
            try:
                check_name(name)
                sha = image_sha256(source)
                owner = store.person_of_image(sha) if store is not None else None
                if owner == name:
                    record(EnrollResult(describe(source), name, "duplicate", "this photo is already enrolled"))
                    continue
                if owner is not None:
                    record(EnrollResult(describe(source), name, "rejected", f"this photo is already enrolled as {owner!r}"))
                    continue
                loaded.append((name, source, sha, load_image(source)))
            except FacesysError as exc:
                record(EnrollResult(describe(source), name, "error", str(exc)))
        detections = self.embedder.detector.detect([image for *_, image in loaded])
        for (name, source, sha, image), faces in zip(loaded, detections, strict=True):
            face, reason = pick_enrollment_face(faces, self.quality)
            chip = None
            if face is not None:
                chip = self.embedder.chips(image, [face])
                reason = check_chip(chip[0], self.quality)
            if reason:
                record(EnrollResult(describe(source), name, "rejected", reason))
                continue
            embedding = self.embedder.embed_chips(chip)[0]
            store = self._open_for_writing(store)
            warning = self._confusion_warning(store, name, embedding, recent)
            crop, origin = face_crop(image, face.box)
            new = NewFace(
                describe(source), sha, face.box, face.landmarks, face.score, crop, origin, embedding, sharpness(chip[0])
            )
            face_id = store.add_face(name, new, self.embedder.model_id)
            recent.append((name, embedding))
            record(EnrollResult(describe(source), name, "enrolled", face_id=face_id, warning=warning))
        return store

    def _confusion_warning(
        self, store: GalleryStore, name: str, embedding: np.ndarray, recent: list[tuple[str, np.ndarray]]
    ) -> str | None:
        """A warning when the new photo is nearer another enrolled person than its own: among the
        index's nearest faces (loaded when this enrollment began) and the faces ``recent``ly added."""
        nearest: list[tuple[float, str]] = []
        if self._index is not None and len(self._index):
            distances, ids = self._index.search(embedding[None], k=CONFUSION_NEIGHBOURS)
            names = store.names_of(ids[0])
            nearest = [(d, names[i]) for d, i in zip(distances[0].tolist(), ids[0].tolist(), strict=True) if i in names]
        nearest += [(float(np.linalg.norm(vector - embedding)), other) for other, vector in recent]
        others = [(d, n) for d, n in nearest if n != name]
        if not others:
            return None
        best_other, other_name = min(others)
        own = [d for d, n in nearest if n == name]
        threshold, _ = self._verify_threshold(store)
        if best_other <= threshold and (not own or best_other < min(own)):
            return f"this photo looks more like {other_name!r} (distance {best_other:.3f}) than like {name!r}"
        return None

    def _refresh_index(self, store: GalleryStore):
        """The index of the store's current generation (kept in memory between identify calls)."""
        from facesys.gallery.index import FaceIndex

        if self._index is None or self._index.generation != store.generation:
            self._index = FaceIndex.for_store(store)
        return self._index

    # -- decisions ----------------------------------------------------------------------------

    def verify(self, a: ImageInput, b: ImageInput) -> VerifyResult:
        """Same person or not: the largest face of each photo, compared at the threshold in force
        (``threshold`` argument > gallery's calibrated > model default). NoFaceError if a photo has none."""
        images = [load_image(a), load_image(b)]
        detections = self.embedder.detector.detect(images)
        for source, faces in zip((a, b), detections, strict=True):
            if not faces:
                raise NoFaceError(f"{describe(source)}: no face found")
        chips = np.concatenate([self.embedder.chips(img, faces[:1]) for img, faces in zip(images, detections, strict=True)])
        vectors = self.embedder.embed_chips(chips)
        store = self._store() if self._gallery_exists() else None
        try:
            threshold, source = self._verify_threshold(store)
        finally:
            if store:
                store.close()
        return VerifyResult(
            verify(vectors[0], vectors[1], threshold, source),
            (detections[0][0].box.tolist(), detections[1][0].box.tolist()),
            (len(detections[0]), len(detections[1])),
        )

    def identify(self, image: ImageInput, top_k: int = 3) -> list[Identification]:
        """Every face in the photo, largest first, named or unknown (name None)."""
        return self.identify_many([load_image(image)], top_k)[0]

    def identify_many(self, images: list[np.ndarray], top_k: int = 3) -> list[list[Identification]]:
        """:meth:`identify` for several decoded (H, W, 3) uint8 RGB images at once: one batched
        detection, one network pass over all their faces, one index search."""
        detections = self.embedder.detector.detect(images)
        chips = [self.embedder.chips(image, faces) for image, faces in zip(images, detections, strict=True) if faces]
        vectors = self.embedder.embed_chips(np.concatenate(chips)) if chips else None
        with self._store() as store:
            self._check_model(store)
            index = self._refresh_index(store)
            threshold = self._identify_threshold(store, len(index))
            if vectors is None:
                return [[] for _ in images]
            distances, ids = index.search(vectors, k=min(len(index), max(64, 16 * top_k)))
            names = store.names_of(ids)
        answers = iter(zip(distances, ids, strict=True))
        return [[self._identification(face, *next(answers), names, threshold, top_k) for face in faces] for faces in detections]

    @staticmethod
    def _identification(face, distances, ids, names: dict[int, str], threshold: float, top_k: int) -> Identification:
        """One face's answer from its search results (``distances``, ``ids``: (k,))."""
        candidates = rank_people(distances, ids, names, top_k)
        best = candidates[0] if candidates else None
        named = best is not None and best.distance <= threshold
        return Identification(
            face.box.tolist(),
            face.score,
            best.name if named else None,
            best.distance if best else None,
            threshold,
            candidates,
        )

    def reindex(self, model: str) -> int:
        """Re-embed every stored face with ``model`` from the stored crops; returns the faces done."""
        import cv2

        from facesys.align import align_face
        from facesys.embed import Embedder
        from facesys.gallery.index import rebuild_index

        embedder = Embedder(model, device=self.device, weights=self.weights, precision=self.precision)
        template = np.asarray(embedder.spec.template)
        with self._store() as store:
            vectors, pending = {}, {}  # pending: face id -> chip, embedded 1,024 at a time

            def embed_pending() -> None:
                vectors.update(zip(pending, embedder.embed_chips(np.stack(list(pending.values()))), strict=True))
                pending.clear()

            for face_id, jpeg, (x0, y0, scale), landmarks in store.crops():
                crop = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                points = (np.asarray(landmarks) - [x0, y0]) * scale
                pending[face_id] = align_face(crop, points, template, embedder.spec.input_size)
                if len(pending) == 1024:
                    embed_pending()
            if pending:
                embed_pending()
            store.replace_embeddings(
                embedder.model_id, model, embedder.model.weights_sha256, embedder.spec.embedding_dim, vectors
            )
            self._index = rebuild_index(store)
        self._embedder = embedder
        return len(vectors)
