"""Load anything a user hands us as an RGB uint8 array, or fail with one clear ImageError.

Handles EXIF orientation, 16-bit, palette, RGBA/LA (composited on white), CMYK, grayscale and
float arrays; refuses missing files, directories, non-images, truncated files and images whose
declared size is absurd (decompression bombs) before decoding them.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesys.errors import ImageError, ImageTooLargeError

# Largest image decoded, in pixels (about 15,000 x 10,000): far above any camera, far below what
# would exhaust memory. Larger declared sizes are refused before decoding.
MAX_PIXELS = 150_000_000
# Largest file read as an image, in bytes: far above any photo; checked before reading anything.
MAX_FILE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ImageBytes:
    """An encoded image held in memory (an upload): ``name`` for messages and records, ``data`` the
    file's bytes, ``max_pixels`` the largest declared size decoded (a service sets it lower)."""

    name: str
    data: bytes = field(repr=False)
    max_pixels: int = MAX_PIXELS


ImageInput = str | os.PathLike | np.ndarray | Image.Image | ImageBytes


def describe(source: Any) -> str:
    """A short name for an image source, for messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    if isinstance(source, ImageBytes):
        return source.name
    return f"<{type(source).__name__}>"


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image of any mode -> (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        # 16-bit data spans 0..65535; a file whose values never exceed 255 holds 8-bit data.
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageError(f"{name}: cannot convert image mode {mode} to RGB ({exc})") from None
    return np.asarray(image, dtype=np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """A user's numpy array -> (H, W, 3) uint8 RGB. Accepts (H, W), (H, W, 1|3|4), uint8/16 or float in [0, 1]."""
    name = describe(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image array")
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"{name}: image array has NaN or infinite values")
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported image array dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = (array[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array)


def check_image_file(path: Path) -> int:
    """The size in bytes of ``path`` when it can be read as an image file, checked before reading
    anything: ImageError when it is missing, a folder or not a regular file (``/dev/zero``), empty,
    or larger than MAX_FILE_BYTES."""
    name = str(path)
    if not path.exists():
        raise ImageError(f"{name}: no such file")
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, not an image")
    if not path.is_file():
        raise ImageError(f"{name}: not a regular file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise ImageError(f"{name}: empty file")
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"{name}: file is {size:,} bytes; images of at most {MAX_FILE_BYTES:,} bytes are read")
    return size


def _open(file, name: str, max_pixels: int) -> Image.Image:
    """``file`` (a path or binary file object) opened lazily by PIL; ImageError naming ``name``
    when it is not an image or declares more than ``max_pixels`` pixels (nothing is decoded yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file)
    except Image.DecompressionBombError:  # too large as any other image over the limit: ImageTooLargeError
        raise ImageTooLargeError(f"{name}: declared image size is refused (limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (unknown or corrupt format)") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: cannot open image ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(f"{name}: declared size {width}x{height} is refused (limit {max_pixels:,} pixels)")
    return image


def load_image(source: ImageInput) -> np.ndarray:
    """Load ``source`` (path, numpy array, PIL image or ImageBytes) as (H, W, 3) uint8 RGB, EXIF-rotated.

    Raises ImageError naming the source for anything that is not a usable image.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source), describe(source))
    if isinstance(source, ImageBytes):
        return _decode(_open_bytes(source), source.name)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageError(f"{describe(source)}: not an image path, numpy array, PIL image or ImageBytes")
    path = Path(source)
    check_image_file(path)
    return _decode(_open(path, str(path), MAX_PIXELS), str(path))


def check_image_bytes(source: ImageBytes) -> None:
    """ImageError unless ``source`` is an image of an allowed size, reading its header only
    (nothing is decoded; a file damaged further in fails only when decoded)."""
    _open_bytes(source).close()


def declared_pixels(source: ImageBytes) -> int:
    """Width x height ``source`` declares (its header only; nothing is decoded); 0 when it is not
    an image of an allowed size (it is refused on its own when decoded)."""
    try:
        with _open_bytes(source) as image:
            return image.width * image.height
    except ImageError:
        return 0


def _open_bytes(source: ImageBytes) -> Image.Image:
    """An upload opened lazily (:func:`_open`); ImageError for an empty one."""
    if not source.data:
        raise ImageError(f"{source.name}: empty file")
    return _open(io.BytesIO(source.data), source.name, source.max_pixels)


def _decode(image: Image.Image, name: str) -> np.ndarray:
    """Decode an opened image as (H, W, 3) uint8 RGB, EXIF-rotated; ImageError naming ``name``."""
    try:
        with image, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image, name)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is refused as too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None
    except MemoryError:
        raise ImageTooLargeError(f"{name}: image too large to decode in memory") from None
