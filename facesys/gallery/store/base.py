"""The truth-store interface: what every gallery backend (SQLite today) keeps and answers.

A store holds people, their faces (source, image hash, box, landmarks, score, JPEG crop,
embedding) and a few named settings; it counts its changes in a ``generation`` and can say which
faces were added or removed since an earlier generation, so a derived vector index can follow it
without reading everything again. Face ids are never reused. Embeddings are (dim,) float32 unit
vectors compared by Euclidean distance. Every change is one transaction.

A backend subclasses :class:`TruthStore`; ``tests/gallery/test_store_interface.py`` runs the same
suite against every backend listed in ``facesys.gallery.store.STORE_BACKENDS``.
"""

from __future__ import annotations

import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from facesys.errors import GalleryError

MAX_NAME_LENGTH = 200
RESERVED_NAMES = ("unknown",)  # identify's answer for nobody: never a person's name
# Unicode categories refused in names: control, format (bidi overrides, zero-width joiners...),
# line and paragraph separators. They break one-name-per-line output or hide what a name says.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face as stored: ``box`` [x1, y1, x2, y2] and ``landmarks`` (5 x [x, y]) in
    source pixels; ``crop_origin`` (x0, y0, scale): crop pixel = (source pixel - (x0, y0)) * scale."""

    id: int
    person: str
    source: str
    image_sha256: str
    box: list[float]
    landmarks: list[list[float]]
    score: float
    crop_origin: list[float]
    model_id: str
    created_at: float


@dataclass(frozen=True)
class NewFace:
    """A face to enroll: source path, image sha256, box (4,), landmarks (5, 2), detection score,
    JPEG crop bytes, crop origin (x0, y0, scale), a (dim,) float32 unit embedding and the chip's sharpness."""

    source: str
    image_sha256: str
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    crop_jpeg: bytes
    crop_origin: tuple[float, float, float]
    embedding: np.ndarray
    sharpness: float | None = None


@dataclass(frozen=True)
class Changes:
    """Faces added and removed between two generations: (N,) int64 face ids each."""

    added: np.ndarray
    removed: np.ndarray


class DuplicatePhotoError(GalleryError):
    """The photo (by sha256 of its bytes) is already enrolled, as ``owner``."""

    def __init__(self, message: str, owner: str):
        super().__init__(message)
        self.owner = owner


class NameConflictError(GalleryError):
    """A new name equals an existing person's name ignoring case (``existing`` is that name)."""

    def __init__(self, message: str, existing: str):
        super().__init__(message)
        self.existing = existing


def normalize_name(name: object) -> str:
    """A person's name as stored: NFC, trimmed, inner whitespace collapsed to one space.

    GalleryError when it cannot name a person: empty, longer than MAX_NAME_LENGTH, holding
    control/format characters or line separators, or a reserved word ("unknown").
    """
    if not isinstance(name, str):
        raise GalleryError(f"a person's name must be text, not {type(name).__name__}")
    normal = " ".join(unicodedata.normalize("NFC", name).split())
    if not normal:
        raise GalleryError("a person's name must not be empty or only whitespace")
    if len(normal) > MAX_NAME_LENGTH:
        raise GalleryError(f"name is {len(normal)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if bad:
        raise GalleryError(f"name {name!r} contains control or invisible characters ({', '.join(bad)})")
    if normal.casefold() in RESERVED_NAMES:
        raise GalleryError(f"{normal!r} is reserved (identify's answer for nobody); choose another name")
    return normal


def name_key(name: str) -> str:
    """The form two names are compared in: "Ann" and "ann " are the same person."""
    return unicodedata.normalize("NFC", " ".join(name.split())).casefold()


class TruthStore(ABC):
    """A gallery's source of truth. Use as a context manager or call :meth:`close`.

    Names given to methods are normalised with :func:`normalize_name`; a new name equal to an
    existing one ignoring case is refused. Errors are GalleryErrors naming the store.
    """

    location: str  # for messages: a folder, or a database URL without its password

    def __enter__(self) -> TruthStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    @abstractmethod
    def exists(cls, location: str) -> bool:
        """Whether a gallery of this backend exists at ``location`` (creates nothing)."""

    @abstractmethod
    def close(self) -> None: ...

    # -- identity, settings and change tracking --------------------------------------------------

    @abstractmethod
    def meta(self) -> dict[str, str]:
        """Everything in meta: gallery_id, schema_version, model_id, model_name, weights_sha256, dim,
        metric, generation, and settings."""

    @property
    def gallery_id(self) -> str:
        """A random id made when the store was created: derived files name it, so they are never
        taken for another store's."""
        return self.meta()["gallery_id"]

    @property
    def generation(self) -> int:
        """Bumped by every change (faces, people, names, model)."""
        return int(self.meta()["generation"])

    @property
    def model_id(self) -> str | None:
        return self.meta().get("model_id")

    @property
    def dim(self) -> int:
        return int(self.meta().get("dim", 0))

    @abstractmethod
    def set_model(self, model_id: str, model_name: str, weights_sha256: str, dim: int) -> None:
        """Bind an empty store to a model (the first enrollment does this)."""

    def setting(self, key: str) -> str | None:
        """A named setting (e.g. ``verify_threshold``, ``index_kind``), or None."""
        return self.meta().get(key)

    @abstractmethod
    def set_setting(self, key: str, value: object | None) -> None:
        """Store a named setting (None removes it)."""

    @abstractmethod
    def changes_since(self, generation: int) -> Changes | None:
        """Faces added and removed after ``generation``, or None when the store cannot tell (its
        change log starts later, or every embedding was replaced since)."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[None]:
        """One read snapshot: every query inside sees the same committed state."""

    # -- people and faces --------------------------------------------------------------------------

    @abstractmethod
    def people(self) -> list[tuple[str, int]]:
        """(name, number of faces) of everyone, by name."""

    @abstractmethod
    def person_named(self, name: str) -> str | None:
        """The stored name of the person called ``name`` (compared ignoring case and form), or None."""

    @abstractmethod
    def person_of_image(self, image_sha256: str) -> str | None:
        """Who the photo with this sha256 is enrolled as, if it is."""

    @abstractmethod
    def add_face(self, name: str, face: NewFace, model_id: str) -> int:
        """Enroll one face of ``name`` (created if new) in one transaction; returns its face id.
        DuplicatePhotoError when the photo is already enrolled."""

    @abstractmethod
    def add_faces(self, faces: list[tuple[str, NewFace]], model_id: str) -> list[int]:
        """Enroll several (name, face) in ONE transaction: all or nothing."""

    @abstractmethod
    def remove_person(self, name: str) -> int:
        """Delete a person and all their faces; returns how many faces went."""

    @abstractmethod
    def remove_faces(self, face_ids: list[int]) -> None:
        """Delete faces by id (people left with no face are deleted too)."""

    @abstractmethod
    def rename_person(self, old: str, new: str) -> None: ...

    @abstractmethod
    def faces(self, name: str | None = None) -> list[FaceRecord]:
        """Face records (no pixels, no embeddings), of one person or everyone, oldest first."""

    @abstractmethod
    def face_count(self) -> int: ...

    @abstractmethod
    def face_ids(self) -> np.ndarray:
        """(N,) int64 ids of every face, ascending."""

    @abstractmethod
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(face ids (N,) int64 ascending, embeddings (N, dim) float32, person name of each face)."""

    @abstractmethod
    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """(len(face_ids), dim) float32 embeddings of these faces, in the order given."""

    @abstractmethod
    def names_of(self, face_ids: np.ndarray) -> dict[int, str]:
        """Face id -> person name for those of ``face_ids`` that exist (-1 is ignored)."""

    @abstractmethod
    def crops(self) -> Iterator[tuple[int, bytes, list[float], list[list[float]]]]:
        """(face id, JPEG crop, crop origin, landmarks in source pixels) of every face."""

    @abstractmethod
    def replace_embeddings(
        self, model_id: str, model_name: str, weights_sha256: str, dim: int, vectors: dict[int, np.ndarray]
    ) -> None:
        """Switch every face to another model in one transaction; calibrated thresholds are dropped."""

    # -- administration ----------------------------------------------------------------------------

    @abstractmethod
    def check(self) -> list[str]:
        """Problems found (empty when healthy)."""

    @abstractmethod
    def salvage(self) -> tuple[list[tuple[FaceRecord, np.ndarray, bytes]], int]:
        """For a damaged store: every face that can still be read and parsed, row by row, as
        (record, (dim,) float32 unit embedding, JPEG crop) in id order, and how many face rows
        could not be. Raises GalleryError only when the metadata (model) itself is unreadable."""

    @abstractmethod
    def set_aside(self, suffix: str) -> str:
        """Close the store and move its data aside, kept whole and unchanged, so a new store can
        be created at the same location (a damaged store is rebuilt this way); returns where it
        now lies. GalleryError, with nothing moved, when it cannot be."""

    def erase_freed_pages(self) -> None:
        """Make deleted rows unrecoverable from the store's files (removals do this themselves;
        repair calls it again after a removal that could not finish). Nothing to do by default."""
        return None

    @abstractmethod
    def remove_empty_people(self) -> int:
        """Delete people left without faces; returns how many."""

    @abstractmethod
    def stats(self) -> dict[str, object]:
        """People, faces, model, dimension, schema version and size."""
