"""What users point facesys at -> images to process: files, folders of photos, videos (every Nth
frame), each with a name for messages and results.

``media_items`` turns paths into (MediaRef, image source) items for the face pipeline
(``Embedder.face_batches``); images are decoded only when their batch is processed, and a file
that cannot be read becomes an item whose loading raises, so it is reported in its place.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesys.config import FRAME_STEP
from facesys.datasets import IMAGE_SUFFIXES, visible
from facesys.errors import ImageError
from facesys.vision.images import load_image

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class MediaRef:
    """Where an image came from: a file, or frame ``frame`` (at ``time_s`` seconds) of a video."""

    source: str
    frame: int | None = None
    time_s: float | None = None

    def to_dict(self) -> dict:
        extra = {} if self.frame is None else {"frame": self.frame, "time_s": round(self.time_s or 0.0, 3)}
        return {"file": self.source, **extra}


class LazyImage:
    """An image source that decodes (or fails) only when called; ``str()`` names it; ``path``: the
    photo file it loads (None: a video frame, already decoded), so another process can load it too."""

    def __init__(self, name: str, load: Callable[[], np.ndarray], path: Path | None = None):
        self.name, self.load, self.path = name, load, path

    def __call__(self) -> np.ndarray:
        return self.load()

    def __str__(self) -> str:
        return self.name


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Inputs:
    """What a list of paths holds: ``files`` to read (photos, and videos when wanted), in order,
    and what was ``skipped`` in folders, with why."""

    files: list[Path]
    skipped: list[tuple[Path, str]]

    def summary(self) -> str:
        """One line: how many photos and videos, and what was skipped."""
        videos = sum(is_video(p) for p in self.files)
        line = f"{len(self.files) - videos} photo(s), {videos} video(s)"
        if self.skipped:
            shown = ", ".join(f"{p.name} ({why})" for p, why in self.skipped[:5])
            line += f"; skipped {len(self.skipped)}: {shown}" + (", ..." if len(self.skipped) > 5 else "")
        return line


def walk_folder(root: Path, on_error: Callable[[OSError], None] | None = None) -> Iterator[Path]:
    """Every file under the folder ``root``, recursively: the one walking rule of ``scan``,
    ``identify`` and ``enroll``. Sorted within each folder, a folder's files before its
    sub-folders; names starting with '.' or '_' are hidden and skipped with all they hold; links to
    folders are not followed (links to files are kept). ``on_error`` hears of each folder that
    cannot be listed (skipped otherwise)."""
    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if visible(Path(d)))
        for name in sorted(files):
            if visible(Path(name)):
                yield Path(folder) / name


def expand_inputs(paths, videos: bool = True) -> Inputs:
    """Files as given; folders replaced by the photos (and ``videos``) under them, recursively
    (``walk_folder``: hidden names starting with '_' or '.' are skipped silently). Other files
    and folders that cannot be read are skipped and listed."""
    inputs = Inputs([], [])
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            inputs.files.append(path)
            continue

        def unreadable(error: OSError, path: Path = path) -> None:
            inputs.skipped.append((Path(error.filename or path), f"cannot read this folder ({error.strerror})"))

        for item in walk_folder(path, unreadable):
            suffix = item.suffix.lower()
            if suffix in IMAGE_SUFFIXES or (videos and suffix in VIDEO_SUFFIXES):
                inputs.files.append(item)
            elif suffix in VIDEO_SUFFIXES:
                inputs.skipped.append((item, "a video"))
            else:
                inputs.skipped.append((item, "not a supported image type"))
    return inputs


def video_frames(path: Path, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, seconds, (H, W, 3) uint8 RGB) of every ``every``-th frame of a video.
    opencv's and ffmpeg's own log lines are silenced: a bad video is reported once, by us."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # ffmpeg's AV_LOG_QUIET ("moov atom not found" ...)
    import cv2

    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(f"{path}: cannot open as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    pixel_aspect = _pixel_aspect(capture.get(cv2.CAP_PROP_SAR_NUM), capture.get(cv2.CAP_PROP_SAR_DEN))
    number = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if number % every == 0:
                yield number, number / fps, square_pixels(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), pixel_aspect)
            number += 1
    finally:
        capture.release()
    if number == 0:
        raise ImageError(f"{path}: no frames could be read")


def _pixel_aspect(numerator: float, denominator: float) -> float:
    """A video's sample aspect ratio (pixel width / height) from opencv's properties; 1 when unknown."""
    return numerator / denominator if numerator > 0 and denominator > 0 else 1.0


def square_pixels(frame: np.ndarray, pixel_aspect: float) -> np.ndarray:
    """(H, W, 3) frame of pixels ``pixel_aspect`` times as wide as tall -> the frame as it is shown,
    with square pixels (wider or taller, never smaller). Anamorphic video (DVDs, HDV 1440x1080 shown
    as 1920x1080) stores faces squashed; alignment can only undo rotation and scale, so a squashed
    face would be embedded as someone narrower."""
    if abs(pixel_aspect - 1.0) < 0.01:
        return frame
    import cv2

    height, width = frame.shape[:2]
    size = (round(width * pixel_aspect), height) if pixel_aspect > 1 else (width, round(height / pixel_aspect))
    return cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)


def animated_frames(path: Path, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """Like :func:`video_frames`, for an animated GIF/WebP/PNG (frame durations from the file)."""
    from PIL import Image, ImageSequence

    from facesys.vision.images import _to_rgb

    seconds = 0.0
    try:
        with Image.open(path) as image:
            for number, frame in enumerate(ImageSequence.Iterator(image)):
                if number % every == 0:
                    yield number, seconds, _to_rgb(frame.copy(), str(path))
                seconds += frame.info.get("duration", 100) / 1000.0
    except (OSError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: cannot read its frames ({exc})") from None


def is_animated(path: Path) -> bool:
    """Whether ``path`` is an image file with several frames (an animated GIF, WebP or PNG)."""
    if path.suffix.lower() not in (".gif", ".webp", ".png"):
        return False
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, Image.DecompressionBombError):
        return False  # reported when it is read as a photo


def _failed(error: ImageError) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise error

    return load


def media_items(paths: list[Path], every: int = FRAME_STEP) -> Iterator[tuple[MediaRef, LazyImage]]:
    """(where, image source) for every photo and every ``every``-th frame of each video or animated image."""
    for path in paths:
        animated = is_animated(path)
        if not is_video(path) and not animated:
            yield MediaRef(str(path)), LazyImage(str(path), lambda path=path: load_image(path), path)
            continue
        frames = animated_frames(path, every) if animated else video_frames(path, every)
        try:
            for number, seconds, frame in frames:
                yield MediaRef(str(path), number, seconds), LazyImage(f"{path} frame {number}", lambda frame=frame: frame)
        except ImageError as exc:
            yield MediaRef(str(path)), LazyImage(str(path), _failed(exc))
