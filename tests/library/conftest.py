"""Fixtures of the photo-library tests: the store backends of tests/gallery (SQLite, and
PostgreSQL where its server binaries are installed) and synthetic library faces."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesys.gallery.store.records import NewLibraryFace, ScannedPhoto
from tests.conftest import data_path
from tests.gallery.conftest import _drop_databases_made_by_the_test, backend, second_store, store  # noqa: F401  (fixtures)


def library_face(seed: int, person: str | None = None, frame: int | None = None, dim: int = 8) -> NewLibraryFace:
    """A synthetic library face: a seeded unit embedding and a small real JPEG crop of seeded noise."""
    rng = np.random.default_rng(1000 + seed)
    vector = rng.normal(size=dim).astype(np.float32)
    pixels = rng.integers(0, 255, (16, 16, 3), np.uint8)
    return NewLibraryFace(
        box=np.array([10.0 + seed, 20, 110, 140]),
        landmarks=rng.uniform(20, 100, (5, 2)),
        score=0.9 + seed / 1000,
        crop_jpeg=cv2.imencode(".jpg", pixels)[1].tobytes(),
        crop_origin=(0.0, 0.0, 1.0),
        embedding=vector / np.linalg.norm(vector),
        frame=frame,
        person=person,
    )


def photo(number: int, size: int = 1000, sha: str | None = None) -> ScannedPhoto:
    """A scanned file /library/<number>.jpg with a sha256 of its own (unless ``sha`` is given;
    tests/gallery's ``face(n)`` photos have ``n`` as sha256, these ``n`` followed by "a")."""
    return ScannedPhoto(f"/library/{number}.jpg", size, 1_700_000_000_000_000_000 + number, sha or f"{number:063x}a")


# -- a small labelled photo library (face_recognition's photos), scanned once per session ------------

ENROLLED = "Barack Obama"  # enrolled from one photo before the scan: the scan attaches their faces automatically


@dataclass(frozen=True)
class Scanned:
    """A scanned library: its folder, the gallery (SQLite folder) it was scanned into, file path
    -> the people labelled in it (face_recognition's labels.csv), and the reports of a first scan
    and of a second one right after."""

    folder: Path
    gallery: Path
    labels: dict[str, set[str]]
    first: object
    second: object

    def files_of(self, person: str) -> set[str]:
        return {path for path, people in self.labels.items() if person in people}

    def copy(self, tmp_path: Path) -> Path:
        """A copy of the scanned gallery to change (the library folder is shared)."""
        return Path(shutil.copytree(self.gallery, tmp_path / "gallery"))


@pytest.fixture(scope="session")
def scanned(tmp_path_factory, embedder) -> Scanned:
    """face_recognition's labelled photos (the multi-face ones too; not the unlabelled RGBA one)
    copied into a library folder, one sub-folder per person; a gallery with Barack Obama enrolled
    from obama.jpg; the folder scanned twice and clustered."""
    from facesys.system import FaceSystem

    source = data_path("face_recognition")
    folder = tmp_path_factory.mktemp("library") / "photos"
    labels: dict[str, set[str]] = {}
    with open(source / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["file"].startswith("_format/"):
                continue
            target = folder / row["file"].lstrip("_")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / row["file"], target)
            labels[str(target.resolve())] = set(row["person"].split(";"))
    gallery = tmp_path_factory.mktemp("scanned") / "gallery"
    system = FaceSystem(gallery, embedder=embedder)
    assert system.enroll(ENROLLED, [source / "barack_obama" / "obama.jpg"]).count("enrolled") == 1
    first = system.scan([folder])
    second = system.scan([folder])
    system.cluster()
    return Scanned(folder, gallery, labels, first, second)
