"""Enrollment: photos of named people -> checked faces committed to a gallery, one photo per
transaction, each with a per-photo answer (enrolled, duplicate, rejected or error).

Not all-or-nothing: when the gallery becomes unreachable mid-run (a database server stopped),
the photos committed before stay enrolled and are reported so; the photo being committed and
every later one get an "error" result saying they were not enrolled, and the report keeps the
error (``EnrollReport.unavailable``), so that a caller can tell the whole run was cut short.

A photo is refused before it is decoded when its name is not a valid person's name, it is not a
readable file within the size limit, or it is enrolled already (also earlier in the same run);
after detection when it fails the quality gates (facesys/vision/quality.py). A face nearer another
enrolled person than the named one is enrolled with a warning (the confusion check searches the
gallery's index, which follows every face committed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesys.config import CONFUSION_NEIGHBOURS
from facesys.datasets import images_in, people_in
from facesys.decide.match import confused_with
from facesys.errors import (
    DuplicatePhotoError,
    FacesysError,
    GalleryUnavailableError,
    ImageError,
    NameConflictError,
    UnknownPersonError,
)
from facesys.gallery.store import NewFace, normalize_name
from facesys.hashing import file_sha256
from facesys.vision.images import ImageBytes, ImageInput, check_image_bytes, check_image_file, describe, load_image
from facesys.vision.quality import QualityRules, check_chip, pick_enrollment_face, sharpness

PEOPLE_FOLDER = "people"  # <gallery>/people/<name>/*.jpg: photos a bare `facesys enroll` picks up


def people_folder(gallery) -> Path:
    """The gallery's own folder of people's photos (a folder gallery only)."""
    if not gallery.is_folder:
        raise FacesysError(
            f"{gallery.location}: a database gallery has no {PEOPLE_FOLDER}/ folder; enroll photos or a folder of people"
        )
    return Path(gallery.location) / PEOPLE_FOLDER


def enrollment_items(inputs: list[Path], name: str | None, gallery) -> list[tuple[str, Path]]:
    """(name, photo) pairs to enroll: ``inputs`` (photos and folders of photos) of ``name``; or,
    without a name, one folder with a sub-folder per person; or, with no inputs, the gallery's
    people folder. FacesysError when the inputs cannot be read that way or ``name`` cannot name
    a person (checked here, before any model is loaded)."""
    from facesys.vision.media import expand_inputs

    if name is not None:
        name = enrollment_name(name, gallery)
    for path in inputs:
        if not path.exists():
            raise FacesysError(f"{path}: no such file or folder")
    if name is not None:
        return [(name, path) for path in expand_inputs(inputs, videos=False).files]
    if not inputs:
        root = people_folder(gallery)
        if not root.is_dir():
            raise FacesysError(f"nothing to enroll: give photos and a name, a folder of people, or put photos in {root}/<name>/")
        return [(person, path.resolve()) for person, photos in people_in(root).items() for path in photos]
    if len(inputs) == 1 and inputs[0].is_dir():
        items = [(person, path) for person, photos in people_in(inputs[0]).items() for path in photos]
        if not items and images_in(inputs[0]):
            raise FacesysError(
                f"{inputs[0]}: holds {len(images_in(inputs[0]))} photo(s) but no sub-folder per person; "
                "to enroll them as one person, give the person's name"
            )
        return items
    raise FacesysError("without a name, give one folder that holds a sub-folder per person")


def enrollment_name(name: object, gallery, known: dict[str, str | None] | None = None) -> str:
    """``name`` as the gallery stores it: InvalidValueError when it cannot name a person,
    NameConflictError when an enrolled person's name differs from it only in case (``known``: the
    spellings looked up so far, name -> the enrolled one or None)."""
    name, known = normalize_name(name), {} if known is None else known
    if name not in known:
        known[name] = gallery.spelling_of(name)
    if known[name] not in (None, name):
        raise NameConflictError(f"{name!r}: a person named {known[name]!r} exists already; use that exact name", known[name])
    return name


@dataclass(frozen=True)
class EnrollResult:
    """What happened to one enrollment photo: status is enrolled, duplicate, rejected or error
    (``error``: the library error behind it, when one was raised)."""

    source: str
    name: str
    status: str
    reason: str | None = None
    face_id: int | None = None
    warning: str | None = None
    error: FacesysError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "error"}


@dataclass
class EnrollReport:
    """Every photo's result, in input order; ``unavailable``: the error that cut the run short, if
    the gallery became unreachable (the photos without an "enrolled" or "duplicate" result were not
    enrolled)."""

    results: list[EnrollResult] = field(default_factory=list)
    unavailable: GalleryUnavailableError | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


def image_sha256(source: ImageInput) -> str:
    """sha256 of a file's bytes (read in chunks, after ``check_image_file``) or an upload's (after
    ``check_image_bytes``), or of an array's pixels (so re-enrolling the same photo is detected)."""
    if isinstance(source, ImageBytes):
        check_image_bytes(source)
        return hashlib.sha256(source.data).hexdigest()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        check_image_file(path)
        try:
            return file_sha256(path)
        except OSError as exc:
            raise ImageError(f"{source}: cannot read ({exc.strerror})") from None
    return hashlib.sha256(np.ascontiguousarray(load_image(source)).tobytes()).hexdigest()


@dataclass(frozen=True)
class _Photo:
    """A photo that passed the checks made before decoding."""

    name: str
    source: ImageInput
    sha256: str
    position: int  # in the input


class EnrollInterrupted(KeyboardInterrupt):
    """Ctrl-C during an enrollment; ``report`` holds what was committed before it (the photo whose
    commit was under way included, as the store says) and every other photo's answer so far."""

    def __init__(self, report: EnrollReport):
        super().__init__("enrollment interrupted")
        self.report = report


class Enrollment:
    """Enroll (name, photo) pairs with ``embedder`` into ``gallery`` under ``quality`` rules;
    ``verify_threshold`` decides the confusion warning."""

    def __init__(self, embedder, gallery, quality: QualityRules, verify_threshold: float):
        self.embedder, self.gallery, self.quality, self.verify_threshold = embedder, gallery, quality, verify_threshold

    def run(
        self, items: Iterable[tuple[str, ImageInput]], on_result: Callable[[EnrollResult], None] | None = None
    ) -> EnrollReport:
        """Enroll every item; each accepted photo is committed on its own before ``on_result``
        hears of it (bad photos as soon as they are refused). Bad photos are reported, never fatal;
        an unreachable gallery ends the run with an "error" result for each photo not committed
        (see the module docstring)."""
        report = EnrollReport()
        unanswered: dict[int, tuple[str, str]] = {}  # photos taken but not yet answered: position -> (source, name)
        positions: dict[int, int] = {}  # id of a result -> its photo's position in the input

        def record(position: int, result: EnrollResult) -> None:
            unanswered.pop(position, None)
            positions[id(result)] = position
            report.results.append(result)
            if on_result:
                on_result(result)

        def taken(photos: Iterable[_Photo]) -> Iterator[tuple[_Photo, ImageInput]]:
            for photo in photos:
                unanswered[photo.position] = (describe(photo.source), photo.name)
                yield photo, photo.source

        remaining = enumerate(items)
        current: _Photo | None = None  # the photo being committed and reported, until it is
        answered = 0  # len(report.results) before it
        try:
            for batch in self.embedder.face_batches(
                taken(self._checked(remaining, record)), select="largest", errors="collect", keep_chips=True, crops=True
            ):
                for photo, result in batch:
                    current, answered = photo, len(report.results)
                    record(photo.position, self._enroll_one(photo, result))
                    current = None
        except GalleryUnavailableError as exc:
            report.unavailable = exc
            why = f"not enrolled: {exc}"
            for position, (source, name) in list(unanswered.items()):
                record(position, EnrollResult(source, name, "error", f"{source}: {why}"))
            for position, (raw_name, source) in remaining:
                record(position, EnrollResult(describe(source), str(raw_name), "error", f"{describe(source)}: {why}"))
            return report
        except KeyboardInterrupt:
            if current is not None and len(report.results) == answered:  # stopped before its answer was recorded
                try:  # the store says whether its commit happened
                    stored = self.gallery.faces(current.name)
                except UnknownPersonError:
                    stored = []
                ids = [f.id for f in stored if f.image_sha256 == current.sha256]
                if ids:
                    record(current.position, EnrollResult(describe(current.source), current.name, "enrolled", face_id=ids[0]))
            raise EnrollInterrupted(report) from None
        finally:
            report.results.sort(key=lambda result: positions[id(result)])
        if report.count("enrolled"):
            try:
                with self.gallery.open() as store:
                    self.gallery.refresh(store)  # saved for the next process
            except GalleryUnavailableError:  # committed all the same: the index is derived, synced next time
                pass
        return report

    def _checked(self, items: Iterable[tuple[int, tuple[str, ImageInput]]], record) -> Iterator[_Photo]:
        """The photos worth decoding, of (position, (name, photo)) items; the others are recorded with their reason."""
        seen: dict[str, str] = {}  # sha256 -> name, for this run
        spellings: dict[str, str | None] = {}  # name -> the enrolled person's spelling (enrollment_name)
        for position, (raw_name, source) in items:
            where = describe(source)
            try:
                name = enrollment_name(raw_name, self.gallery, spellings)
            except GalleryUnavailableError as exc:
                record(position, EnrollResult(where, str(raw_name), "error", f"{where}: not enrolled: {exc}"))
                raise
            except FacesysError as exc:
                record(position, EnrollResult(where, str(raw_name), "error", f"{where}: {exc}", error=exc))
                continue
            try:
                sha = image_sha256(source)
            except FacesysError as exc:
                record(position, EnrollResult(where, name, "error", str(exc), error=exc))
                continue
            try:
                owner = seen.get(sha) or self.gallery.owner_of_photo(sha)
            except GalleryUnavailableError as exc:
                record(position, EnrollResult(where, name, "error", f"{where}: not enrolled: {exc}"))
                raise
            if owner is not None:
                record(position, self._duplicate(where, name, owner))
                continue
            seen[sha] = name
            yield _Photo(name, source, sha, position)

    @staticmethod
    def _duplicate(source: str, name: str, owner: str) -> EnrollResult:
        if owner == name:
            return EnrollResult(source, name, "duplicate", "this photo is already enrolled")
        return EnrollResult(source, name, "rejected", f"this photo is already enrolled as {owner!r}")

    def _enroll_one(self, photo: _Photo, result) -> EnrollResult:
        """Gates, crop, confusion check and commit of one photo through the pipeline."""
        source = describe(photo.source)
        if result.error:
            return EnrollResult(source, photo.name, "error", result.error)
        detection, reason = pick_enrollment_face(result.detections, self.quality)
        if detection is None:
            return EnrollResult(source, photo.name, "rejected", reason)
        face = result.faces[0]
        if reason := check_chip(face.chip, self.quality):
            return EnrollResult(source, photo.name, "rejected", reason)
        warning = self._confusion_warning(photo.name, face.embedding)
        crop, origin = face.crop
        new = NewFace(
            source, photo.sha256, face.box, face.landmarks, face.score, crop, origin, face.embedding, sharpness(face.chip)
        )
        try:
            (face_id,) = self.gallery.add_faces([(photo.name, new)], self.embedder.model_info)
        except DuplicatePhotoError as exc:  # another process enrolled the same photo meanwhile
            return self._duplicate(source, photo.name, exc.owner)
        except NameConflictError as exc:  # another process created a name that differs only in case
            return EnrollResult(source, photo.name, "error", f"{source}: {exc}")
        return EnrollResult(source, photo.name, "enrolled", face_id=face_id, warning=warning)

    def _confusion_warning(self, name: str, embedding: np.ndarray) -> str | None:
        """A warning when the photo is nearer another enrolled person than its own, among its
        ``CONFUSION_NEIGHBOURS`` nearest enrolled faces (the rule: decide.match.confused_with)."""
        if not self.gallery.exists():
            return None
        found = self.gallery.search(embedding[None], k=CONFUSION_NEIGHBOURS, save=False)
        nearest = [
            (d, found.names[i])
            for d, i in zip(found.distances[0].tolist(), found.ids[0].tolist(), strict=True)
            if i in found.names
        ]
        if confused := confused_with(name, nearest, self.verify_threshold):
            return f"this photo looks more like {confused[0]!r} (distance {confused[1]:.3f}) than like {name!r}"
        return None
