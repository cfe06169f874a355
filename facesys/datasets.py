"""Folder-per-person photo collections: which files are photos, which folders are people.

Names starting with '_' or '.' are never people or photos (``_unsorted/``, ``.thumbnails``).
"""

from __future__ import annotations

from pathlib import Path

from facesys.errors import FacesysError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def visible(path: Path) -> bool:
    return not path.name.startswith(("_", "."))


def images_in(folder: Path) -> list[Path]:
    """The photos directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and visible(p) and p.suffix.lower() in IMAGE_SUFFIXES)


def people_in(root: Path, people: set[str] | None = None, max_photos: int | None = None) -> dict[str, list[Path]]:
    """person name -> sorted photos, for every visible sub-folder of ``root`` that holds photos
    (optionally only ``people``, and at most ``max_photos`` each)."""
    if not root.is_dir():
        raise FacesysError(f"{root}: not a folder with one sub-folder per person")
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and visible(p)):
        if people is None or folder.name in people:
            photos = images_in(folder)
            if photos:
                out[folder.name] = photos[:max_photos] if max_photos else photos
    return out
