"""Which files of a photo library a scan looks at, and which of them changed since the last scan.

A scan walks its folders recursively (symbolic links to folders are not followed; names starting
with '.' or '_' are hidden and skipped, as everywhere in facesys), keeps photos (and videos when
asked) by suffix, and compares each file with what the store recorded: the same size and
modification time means unchanged; otherwise its sha256 decides (a file only touched is not
processed again).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from facesys.datasets import IMAGE_SUFFIXES
from facesys.errors import FacesysError
from facesys.vision.media import VIDEO_SUFFIXES, walk_folder


@dataclass(frozen=True)
class LibraryFile:
    """A file a scan found: resolved absolute ``path``, ``size`` in bytes, ``mtime_ns``."""

    path: Path
    size: int
    mtime_ns: int


@dataclass
class Walk:
    """What walking the scan's folders found: ``files`` to compare (sorted by path, each once),
    ``problems`` (path, one-line message) for what could not be looked at (an unreadable folder, a
    file that is not a regular file), the ``unreadable`` folders and files (what is recorded of
    them is never forgotten), ``videos_skipped`` (videos, when videos are not scanned) and
    ``other_files`` (neither photo nor video)."""

    files: list[LibraryFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    videos_skipped: int = 0
    other_files: int = 0


def resolved_roots(paths: list[str | os.PathLike]) -> list[Path]:
    """The scan's folders (or single files) as resolved absolute paths, without repeats;
    FacesysError naming the first that does not exist."""
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            what = "a symbolic link to nothing (missing or a loop)" if path.is_symlink() else "no such file or folder"
            raise FacesysError(f"{raw}: {what}")
        root = path.resolve()
        if root not in roots:
            roots.append(root)
    if not roots:
        raise FacesysError("nothing to scan: give one or more folders of photos")
    return roots


def walk(roots: list[Path], videos: bool) -> Walk:
    """Every photo (and video when ``videos``) under ``roots``, recursively; see :class:`Walk`."""
    found = Walk()
    seen: dict[Path, LibraryFile] = {}
    for root in roots:
        if root.is_file():
            _consider(root, videos, seen, found)
            continue

        for path in walk_folder(root, lambda error, root=root: _unreadable(error, root, found)):
            _consider(path, videos, seen, found)
    found.files = sorted(seen.values(), key=lambda f: str(f.path))
    return found


def _unreadable(error: OSError, root: Path, found: Walk) -> None:
    """A folder os.walk could not list: reported, and its recorded photos kept."""
    where = Path(error.filename) if error.filename else root
    found.unreadable.append(where)
    found.problems.append((str(where), f"{where}: cannot read this folder ({error.strerror}); its photos are kept"))


def _consider(path: Path, videos: bool, seen: dict[Path, LibraryFile], found: Walk) -> None:
    """Add ``path`` to ``seen`` when it is a photo (or a wanted video) that is a regular file."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES and not videos:
        found.videos_skipped += 1
        return
    if suffix not in IMAGE_SUFFIXES and suffix not in VIDEO_SUFFIXES:
        found.other_files += 1
        return
    try:
        resolved = path.resolve()
        info = resolved.stat()
    except (OSError, RuntimeError) as exc:  # a dangling link, a link loop, a permission denied on the way
        found.problems.append((str(path), f"{path}: cannot read ({_why(exc)})"))
        found.unreadable.append(path)
        return
    if not stat.S_ISREG(info.st_mode):
        found.problems.append((str(path), f"{path}: not a regular file"))
        found.unreadable.append(path)
        return
    seen.setdefault(resolved, LibraryFile(resolved, info.st_size, info.st_mtime_ns))


def _why(exc: OSError | RuntimeError) -> str:
    """Why a path cannot be looked at, in a few words (Python < 3.13 reports a symbolic link loop
    from ``Path.resolve`` as a RuntimeError, later ones as OSError ELOOP)."""
    if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
        return "a loop of symbolic links"
    return exc.strerror or str(exc)


def under(path: str, roots: list[Path]) -> bool:
    """Whether the stored ``path`` lies in one of ``roots`` (or is one of them)."""
    candidate = Path(path)
    return any(candidate == root or candidate.is_relative_to(root) for root in roots)
