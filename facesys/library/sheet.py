"""Contact sheet of clusters: one row per cluster, its id and size written at the left, then up to
``PER_ROW`` of its face crops, for a person to look at before naming a cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesys.errors import FacesysError

PER_ROW = 12  # face crops shown per cluster
MAX_ROWS = 100  # clusters on one sheet (larger libraries: raise min_size)
TILE = 96  # pixels per crop, square
LABEL_WIDTH = 170  # pixels of the text column
GAP = 4  # pixels between tiles and rows
BACKGROUND = (255, 255, 255)
MISSING = (200, 200, 200)  # a tile whose crop cannot be decoded


def tile(jpeg: bytes | None) -> np.ndarray:
    """A (TILE, TILE, 3) uint8 BGR tile of a JPEG crop (letterboxed on white), grey when it cannot be decoded."""
    import cv2

    out = np.full((TILE, TILE, 3), BACKGROUND, np.uint8)
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
    if pixels is None or pixels.size == 0:
        out[:] = MISSING
        return out
    scale = TILE / max(pixels.shape[:2])
    height, width = max(1, round(pixels.shape[0] * scale)), max(1, round(pixels.shape[1] * scale))
    small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (TILE - height) // 2, (TILE - width) // 2
    out[top : top + height, left : left + width] = small
    return out


def contact_sheet(rows: list[tuple[str, str, list[bytes | None]]]) -> np.ndarray:
    """(H, W, 3) uint8 BGR sheet of ``rows``: (first label line, second label line, JPEG crops),
    at most PER_ROW crops and MAX_ROWS rows shown."""
    import cv2

    rows = rows[:MAX_ROWS]
    width = LABEL_WIDTH + PER_ROW * (TILE + GAP) + GAP
    sheet = np.full((max(1, len(rows)) * (TILE + GAP) + GAP, width, 3), BACKGROUND, np.uint8)
    for number, (title, subtitle, crops) in enumerate(rows):
        y = GAP + number * (TILE + GAP)
        cv2.putText(sheet, title, (GAP * 2, y + TILE // 2 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(sheet, subtitle, (GAP * 2, y + TILE // 2 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        for column, jpeg in enumerate(crops[:PER_ROW]):
            x = LABEL_WIDTH + GAP + column * (TILE + GAP)
            sheet[y : y + TILE, x : x + TILE] = tile(jpeg)
    return sheet


def write_sheet(rows: list[tuple[str, str, list[bytes | None]]], path: str | Path) -> Path:
    """Write the contact sheet of ``rows`` to ``path`` (a .png file); returns it. FacesysError
    naming the file when it is not a .png name or cannot be written."""
    import cv2

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise FacesysError(f"{path}: a contact sheet is written as PNG; give a file name ending in .png", parameter="sheet")
    if not path.parent.is_dir():
        raise FacesysError(f"{path}: no such folder {path.parent}", parameter="sheet")
    try:
        ok = cv2.imwrite(str(path), contact_sheet(rows))
    except cv2.error as exc:
        raise FacesysError(f"{path}: cannot write the contact sheet ({exc.msg.strip()})") from None
    if not ok:
        raise FacesysError(f"{path}: cannot write the contact sheet (permission denied or disk full?)")
    return path
