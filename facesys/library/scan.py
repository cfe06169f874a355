"""``facesys scan``: every face of every photo (and every Nth video frame) under some folders,
stored as unnamed library faces with their file, box, crop and embedding.

Incremental: a file whose size and modification time are those recorded (or, when they differ,
whose sha256 is) is not processed again, unless its faces were embedded with another model. A
file moved or renamed (a new path holding the bytes, by sha256, of a recorded file whose path is
gone) is the same photo: its record moves, keeping its faces, their names and their links to the
enrolled copies. A recorded file that is gone from a scanned folder is forgotten, with its faces;
when its folder is gone too (an unmounted disk looks like that), or a scanned folder holds no
photo now, nothing is forgotten unless ``force`` is given. Files whose faces were all erased with
a removed person are left out, and faces erased from a photo are left out when it is read again
(see ``TruthStore.remove_person``). Kill-safe: each file
is recorded with all its faces in one transaction (``TruthStore.record_photo``), so a scan killed
at any moment leaves every file either fully recorded or not at all, and the next scan does the
rest. A file that cannot be read is reported (one line each), recorded with its error (reported
again, without being read, while it is unchanged) and the scan goes on.

Faces matching an enrolled person at identify's open-set threshold (``FaceSystem.identifying``
over the scan's open store) are attached to that person automatically (assigned "auto"), without
being enrolled: a wrong automatic match never changes who identify finds, and ``unname`` undoes it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from facesys.config import FRAME_STEP
from facesys.errors import FacesysError
from facesys.gallery.store import TruthStore
from facesys.gallery.store.records import LibraryPhoto, NewLibraryFace, ScannedPhoto
from facesys.hashing import file_sha256
from facesys.library.files import LibraryFile, resolved_roots, under, walk
from facesys.vision.media import media_items

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from facesys.decide.match import Identification
    from facesys.gallery.gallery import Gallery
    from facesys.vision.embed import Embedder, ImageFaces

    Identify = Callable[[list[ImageFaces]], list[list[Identification]]]  # what FaceSystem.identifying gives

STATUSES = ("new", "changed", "unchanged", "moved", "erased", "error", "forgotten")


@dataclass(frozen=True)
class ScanResult:
    """What a scan did with one file: ``status`` is new or changed (read now), unchanged (skipped),
    moved (the bytes of a recorded file whose path is gone: its record, faces and names follow),
    erased (left out: its faces were erased with a removed person, or expired: see
    facesys/gallery/store/retention.py), error (could not be read;
    ``error`` says why) or forgotten (gone from disk); ``faces`` found in
    it (for forgotten: the faces forgotten), ``face_ids`` the new library face ids, ``automatic``:
    person -> faces attached to them automatically, and whether this scan read the file."""

    path: str
    status: str
    faces: int = 0
    face_ids: list[int] = field(default_factory=list)
    automatic: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    processed: bool = False  # read by this scan (an error an earlier scan recorded is only reported again)

    def to_dict(self) -> dict:
        out: dict = {"file": self.path, "status": self.status, "faces": self.faces}
        if self.face_ids:
            out["face_ids"] = self.face_ids
        if self.automatic:
            out["automatic"] = self.automatic
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class ScanReport:
    """Counts of a scan: files by status, files read now, faces found in them, faces attached
    automatically, faces forgotten with deleted files; videos skipped (no frame step given) and
    other files (neither photo nor video) in the folders."""

    files: Counter = field(default_factory=Counter)
    processed: int = 0
    faces: int = 0
    automatic: int = 0
    forgotten_faces: int = 0
    videos_skipped: int = 0
    other_files: int = 0

    def add(self, result: ScanResult) -> None:
        self.files[result.status] += 1
        self.processed += result.processed
        if result.status == "forgotten":
            self.forgotten_faces += result.faces
        elif result.processed:
            self.faces += result.faces
            self.automatic += sum(result.automatic.values())

    def to_dict(self) -> dict:
        return {
            "files": {status: self.files.get(status, 0) for status in STATUSES},
            "processed": self.processed,
            "faces": self.faces,
            "automatic": self.automatic,
            "forgotten_faces": self.forgotten_faces,
            "videos_skipped": self.videos_skipped,
            "other_files": self.other_files,
        }


@dataclass
class _Reading:
    """A file being processed: its items' faces so far, and their errors."""

    file: LibraryFile
    old: LibraryPhoto | None
    sha256: str
    faces: list[NewLibraryFace] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    items: int = 0


def scan(
    gallery: Gallery,
    paths: list[str | os.PathLike],
    embedder: Callable[[], Embedder],
    identifying: Callable[..., AbstractContextManager[Identify]],
    every: int | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
    force: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> ScanReport:
    """Scan ``paths`` (folders, recursively, or files) into ``gallery``; see the module docstring.
    ``embedder``: gives the pipeline (asked only when a file is read); ``identifying``: the identify
    call that names the faces found (``FaceSystem.identifying``); ``every``: also scan videos, every
    Nth frame (None: videos are skipped); ``on_result`` hears of every file (after it is recorded);
    ``force``: forget the photos of a folder that now holds none, or of a sub-folder that is gone
    (refused otherwise: an unmounted disk looks like that); ``on_start`` hears how many results will
    follow (for a progress bar), once the folders are walked. Returns the counts."""
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise FacesysError(f"every={every!r}: a frame step must be a whole number >= 1", parameter="every")
    roots = resolved_roots(paths)
    found = walk(roots, videos=every is not None)
    report = ScanReport(videos_skipped=found.videos_skipped, other_files=found.other_files)

    def emit(result: ScanResult) -> None:
        report.add(result)
        if on_result is not None:
            on_result(result)

    with gallery.open(create=True) as store:
        stored = {photo.path: photo for photo in store.library_photos()}
        gone = _gone(stored, found.files, roots, found.unreadable)
        hashes: dict[Path, str] = {}  # sha256 of the files read to find moves, not read again
        moves = _moves(stored, gone, found.files, roots, hashes)
        gone = [path for path in gone if path not in moves]
        _refuse_vanished(gone, found.files, roots, force)
        if on_start is not None:
            on_start(len(found.problems) + len(gone) + len(found.files))
        for path, message in found.problems:
            emit(ScanResult(path, "error", error=message))
        model_id = store.model_id
        moved: dict[str, LibraryPhoto] = {}
        for old_path, file in moves.items():  # before forgetting: a move keeps the faces and their names
            if store.move_photo(old_path, ScannedPhoto(str(file.path), file.size, file.mtime_ns, stored[old_path].sha256)):
                photo = replace(stored[old_path], path=str(file.path), size=file.size, mtime_ns=file.mtime_ns)
                moved[photo.path] = photo
                if _current(photo, model_id):
                    emit(_unchanged(photo, "moved"))
        if gone:
            store.forget_photos(gone)
            for path in gone:
                emit(ScanResult(path, "forgotten", faces=stored[path].faces))
        erased = store.erased_photos()
        todo = []
        for file in found.files:
            old = moved.get(str(file.path)) or stored.get(str(file.path))
            if old is not None and (old.size, old.mtime_ns) == (file.size, file.mtime_ns) and _current(old, model_id):
                if str(file.path) not in moved:  # a move was reported when it was committed
                    emit(_unchanged(old))
            else:
                todo.append((file, old))
        if todo:
            _process(embedder(), identifying, store, todo, every, emit, hashes, erased)
    return report


def _gone(stored: dict[str, LibraryPhoto], files: list[LibraryFile], roots: list, unreadable: list) -> list[str]:
    """Recorded paths under ``roots`` that the walk did not find (those under ``unreadable``
    folders excepted)."""
    walked = {str(file.path) for file in files}
    return sorted(path for path in stored if under(path, roots) and path not in walked and not under(path, unreadable))


def _moves(
    stored: dict[str, LibraryPhoto], gone: list[str], files: list[LibraryFile], roots: list, hashes: dict[Path, str]
) -> dict[str, LibraryFile]:
    """Recorded path -> the walked file it moved to: a file not recorded at its path whose sha256
    is that of a readable recorded file that is ``gone``, or that lies outside ``roots`` and no
    longer exists (a photo moved in from a folder not scanned now). The sha256 read go in ``hashes``."""
    new = [file for file in files if str(file.path) not in stored]
    if not new:
        return {}
    candidates: dict[str, list[str]] = {}
    for photo in stored.values():
        away = photo.path in gone or not (under(photo.path, roots) or os.path.lexists(photo.path))
        if photo.error is None and photo.sha256 and away:
            candidates.setdefault(photo.sha256, []).append(photo.path)
    if not candidates:
        return {}
    moves: dict[str, LibraryFile] = {}
    for file in new:
        try:
            sha = hashes[file.path] = file_sha256(file.path)
        except OSError:
            continue  # reported when it is read
        if candidates.get(sha):
            moves[candidates[sha].pop(0)] = file
    return moves


def _refuse_vanished(gone: list[str], files: list[LibraryFile], roots: list, force: bool) -> None:
    """FacesysError, nothing forgotten, unless ``force``: when a scanned folder holds no photo now
    but had some recorded, or when photos to forget lie in a sub-folder that is gone (an unmounted
    disk looks like either)."""
    if force:
        return
    walked = [str(file.path) for file in files]
    for root in roots:
        had = [path for path in gone if under(path, [root])]
        if had and root.is_dir() and not any(under(path, [root]) for path in walked):
            raise FacesysError(
                f"{root}: holds no photo now, but {len(had)} file(s) of it are in the library; refusing to forget "
                "them (is the disk unmounted?); scan with force to forget them",
                parameter="force",
            )
    vanished: Counter = Counter()
    for path in gone:
        folder = Path(path).parent
        if folder.is_dir():
            continue  # the file alone was deleted
        while not folder.parent.is_dir() and folder.parent not in roots and folder.parent != folder.parent.parent:
            folder = folder.parent
        vanished[folder] += 1
    if vanished:
        folder, count = sorted(vanished.items())[0]
        more = f" (and {len(vanished) - 1} other folder(s))" if len(vanished) > 1 else ""
        raise FacesysError(
            f"{folder}: this folder is gone{more}, but {count} file(s) of it are in the library; refusing to forget "
            "them (is the disk unmounted?); scan with force to forget them",
            parameter="force",
        )


def _current(photo: LibraryPhoto, model_id: str | None) -> bool:
    """Whether a recorded file's faces are of the gallery's model (a file without faces always is)."""
    return photo.faces == 0 or photo.model_id == model_id


def _unchanged(photo: LibraryPhoto, status: str = "unchanged") -> ScanResult:
    """The result of a file skipped as unchanged (or moved): its recorded error again, if it had one."""
    if photo.error is not None:
        return ScanResult(photo.path, "error", error=photo.error)
    return ScanResult(photo.path, status, faces=photo.faces)


def _process(
    embedder: Embedder,
    identifying: Callable[..., AbstractContextManager[Identify]],
    store: TruthStore,
    todo: list[tuple[LibraryFile, LibraryPhoto | None]],
    every: int | None,
    emit: Callable[[ScanResult], None],
    hashes: dict[Path, str],
    erased: set[str],
) -> None:
    """Read the files of ``todo`` through the pipeline and record each one with its faces; the
    sha256 of ``hashes`` are not read again; files whose sha256 is ``erased`` are left out."""
    if store.model_id is None:
        model = embedder.model_info
        store.set_model(model.model_id, model.name, model.weights_sha256, model.dim)
    model_id = embedder.model_id
    reading: dict[int, _Reading] = {}
    settled: list[ScanResult] = []  # files done while items were drawn (touched only, unreadable)
    replaced = False

    def items() -> Iterator[tuple[tuple[int, object], object]]:
        for index, (file, old) in enumerate(todo):
            try:
                sha = hashes.get(file.path) or file_sha256(file.path)
            except OSError as exc:
                error = f"{file.path}: cannot read ({exc.strerror})"
                store.record_photo(ScannedPhoto(str(file.path), file.size, file.mtime_ns, "", error), [], model_id)
                settled.append(ScanResult(str(file.path), "error", error=error, processed=True))
                continue
            if old is not None and old.sha256 == sha and old.error is None and _current(old, model_id):
                store.record_photo(ScannedPhoto(str(file.path), file.size, file.mtime_ns, sha), None, model_id)
                settled.append(ScanResult(str(file.path), "unchanged", faces=old.faces))
                continue
            if sha in erased and old is None:  # every face of it was erased with a removed person
                settled.append(ScanResult(str(file.path), "erased"))
                continue
            reading[index] = _Reading(file, old, sha)
            for ref, image in media_items([file.path], every or FRAME_STEP):
                yield (index, ref), image

    def finish(index: int) -> None:
        nonlocal replaced
        done = reading.pop(index)
        error = done.errors[0] if done.errors and len(done.errors) == done.items else None
        faces = [] if error else done.faces
        if done.old is not None and done.old.erased and done.old.sha256 == done.sha256:
            faces = [face for face in faces if not _erased(face, done.old.erased)]
        photo = ScannedPhoto(str(done.file.path), done.file.size, done.file.mtime_ns, done.sha256, error)
        ids = store.record_photo(photo, faces, model_id)
        replaced |= done.old is not None and done.old.faces > 0
        automatic = Counter(face.person for face in faces if face.person is not None)
        status = "error" if error else "changed" if done.old is not None else "new"
        emit(ScanResult(photo.path, status, len(ids), ids, dict(automatic), error, processed=True))

    current: int | None = None
    with identifying(top_k=1, store=store) as identify:  # GalleryError when it holds another model
        for batch in embedder.face_batches(items(), select="all", errors="collect", crops=True):
            answers = identify([result for _, result in batch])
            for ((index, ref), result), named in zip(batch, answers, strict=True):
                if current is not None and index != current:
                    finish(current)
                current = index
                _add(reading[index], ref, result, named)
            while settled:
                emit(settled.pop(0))
    if current is not None:
        finish(current)
    for result in settled:
        emit(result)
    if replaced:
        store.erase_freed_pages()  # the faces of changed files were replaced


def _erased(face: NewLibraryFace, erased: list[list[float | None]]) -> bool:
    """Whether ``face`` is where a face erased with a removed person was (same frame, boxes
    overlapping by more than half of their union)."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    for frame, *box in erased:
        if frame != face.frame:
            continue
        w = min(x2, box[2]) - max(x1, box[0])
        h = min(y2, box[3]) - max(y1, box[1])
        inter = max(w, 0.0) * max(h, 0.0)
        union = (x2 - x1) * (y2 - y1) + (box[2] - box[0]) * (box[3] - box[1]) - inter
        if union > 0 and inter / union > 0.5:
            return True
    return False


def _add(reading: _Reading, ref, result, named) -> None:
    """One photo or video frame through the pipeline, into the faces of its file."""
    reading.items += 1
    if result.error:
        reading.errors.append(result.error)
        return
    for face, identification in zip(result.faces, named, strict=True):
        crop, origin = face.crop
        reading.faces.append(
            NewLibraryFace(face.box, face.landmarks, face.score, crop, origin, face.embedding, ref.frame, identification.name)
        )
