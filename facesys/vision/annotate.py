"""Drawing faces on photos: boxes and names (green: known, red: unknown).

Names are drawn with DejaVu Sans (shipped with matplotlib, a facesys dependency), which covers
Latin, Greek, Cyrillic and many other scripts; characters it lacks are drawn as boxes, never
replaced by "?".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facesys.errors import ImageError

KNOWN, UNKNOWN = (0, 180, 0), (220, 0, 0)  # RGB


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except OSError:
        return ImageFont.load_default()


def draw_faces(image: np.ndarray, faces) -> Image.Image:
    """A copy of (H, W, 3) uint8 RGB ``image`` with each face's box and name (``name`` None = unknown)."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        color = KNOWN if face.name is not None else UNKNOWN
        label = face.name if face.name is not None else "unknown"
        draw.rectangle((x1, y1, x2, y2), outline=color, width=thickness)
        font = _font(max(12, round((x2 - x1) / 8)))
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        height = bottom - top + 6
        y0 = max(0, y1 - height)
        draw.rectangle((x1, y0, x1 + right - left + 6, y0 + height), fill=color)
        draw.text((x1 + 3 - left, y0 + 3 - top), label, fill=(255, 255, 255), font=font)
    return canvas


def save_annotated(image: np.ndarray, faces, out: str) -> None:
    """Write ``image`` with its faces drawn to ``out`` (format from the extension)."""
    try:
        draw_faces(image, faces).save(out)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"{out}: cannot write the annotated image ({exc})") from None
