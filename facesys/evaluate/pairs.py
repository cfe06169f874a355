"""Pair lists: LFW's ``pairs.txt`` format and a simple CSV (``file_a,file_b,same[,fold]``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from facesys.errors import FacesysError


@dataclass(frozen=True)
class Pair:
    """Two image paths, whether they show the same person, and the cross-validation fold (0-based)."""

    a: Path
    b: Path
    same: bool
    fold: int


def _lfw_image(root: Path, name: str, number: str) -> Path:
    return root / name / f"{name}_{int(number):04d}.jpg"


def read_lfw_pairs(pairs_file: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """Pairs from an LFW ``pairs.txt`` (first line: folds and pairs per class, then per fold
    that many matched lines ``name i j`` followed by as many mismatched ``name1 i name2 j``).

    Images are looked up as ``image_root/name/name_000i.jpg`` (default: the file's folder).
    A one-line header with a single count (``pairsDevTrain.txt``) is one fold.
    """
    pairs_file = Path(pairs_file)
    root = Path(image_root) if image_root else pairs_file.parent
    try:
        lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise FacesysError(f"{pairs_file}: cannot read pairs file ({exc.strerror})") from None
    header, rows = lines[0], lines[1:]
    try:
        folds, per_class = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    except (ValueError, IndexError):
        raise FacesysError(f"{pairs_file}: first line must be '<folds> <pairs per class>' or '<pairs>'") from None
    if len(rows) != folds * per_class * 2:
        raise FacesysError(f"{pairs_file}: expected {folds * per_class * 2} pair lines, found {len(rows)}")
    pairs = []
    for index, row in enumerate(rows):
        fold = index // (2 * per_class)
        if len(row) == 3:
            pairs.append(Pair(_lfw_image(root, row[0], row[1]), _lfw_image(root, row[0], row[2]), True, fold))
        elif len(row) == 4:
            pairs.append(Pair(_lfw_image(root, row[0], row[1]), _lfw_image(root, row[2], row[3]), False, fold))
        else:
            raise FacesysError(f"{pairs_file}: line {index + 2} is not 'name i j' or 'name1 i name2 j'")
    return pairs


def read_csv_pairs(csv_file: str | Path, image_root: str | Path | None = None, folds: int = 10) -> list[Pair]:
    """Pairs from a CSV with columns ``file_a,file_b,same[,fold]`` (an optional header line).

    Relative paths are resolved against ``image_root`` (default: the CSV's folder). Without a fold
    column, pairs are spread over ``folds`` folds round-robin.
    """
    csv_file = Path(csv_file)
    root = Path(image_root) if image_root else csv_file.parent
    truthy = {"1", "true", "yes", "y", "t"}
    falsy = {"0", "false", "no", "n", "f"}
    pairs = []
    with open(csv_file, newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            same = row[2].strip().lower() if len(row) >= 3 else ""
            if number == 1 and same not in truthy | falsy:
                continue  # a header line
            if same not in truthy | falsy:
                raise FacesysError(f"{csv_file}: line {number}: expected file_a,file_b,same[,fold]")
            try:
                fold = int(row[3]) if len(row) > 3 and row[3].strip() else len(pairs) % folds
            except ValueError:
                raise FacesysError(f"{csv_file}: line {number}: fold {row[3]!r} is not an integer") from None
            pairs.append(Pair(root / row[0].strip(), root / row[1].strip(), same in truthy, fold))
    return pairs


def people_in_pairs(pairs: list[Pair]) -> set[str]:
    """Names (image parent folders) of everyone who appears in ``pairs``."""
    return {p.parent.name for pair in pairs for p in (pair.a, pair.b)}
