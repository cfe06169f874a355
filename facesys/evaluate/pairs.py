"""Pair lists: LFW's ``pairs.txt`` format and a simple CSV (``file_a,file_b,same[,fold]``, header optional)."""

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


CSV_COLUMNS = ("file_a", "file_b", "same", "fold")  # their positions in a CSV without a header
REQUIRED_CSV_COLUMNS = CSV_COLUMNS[:3]
POSITIONAL = {name: position for position, name in enumerate(CSV_COLUMNS)}
TRUTHY = {"1", "true", "yes", "y", "t"}
FALSY = {"0", "false", "no", "n", "f"}


def _csv_columns(csv_file: Path, first_row: list[str]) -> tuple[dict[str, int], bool]:
    """(column -> position, whether ``first_row`` is a header line).

    A header names ``file_a``, ``file_b``, ``same`` and optionally ``fold``, in any order and any
    case (other columns are ignored), and they are read by name. A first row that is not a pair
    but names none of these is a header of other names: the columns are read by position.
    """
    names = [cell.strip().lower() for cell in first_row]
    known = [name for name in names if name in CSV_COLUMNS]
    if not known:
        same = names[2] if len(names) >= 3 else ""
        return POSITIONAL, same not in TRUTHY | FALSY
    twice = sorted({name for name in known if known.count(name) > 1})
    if twice:
        raise FacesysError(f"{csv_file}: the header names the column(s) {', '.join(twice)} more than once")
    missing = [name for name in REQUIRED_CSV_COLUMNS if name not in known]
    if missing:
        raise FacesysError(
            f"{csv_file}: the header lacks the column(s) {', '.join(missing)} (needed: file_a, file_b, same; optional: fold)"
        )
    return {name: names.index(name) for name in known}, True


def read_csv_pairs(csv_file: str | Path, image_root: str | Path | None = None, folds: int = 10) -> list[Pair]:
    """Pairs from a CSV with columns ``file_a,file_b,same[,fold]``.

    A header line is optional. With one, the columns are found by name (in any order and any case;
    other columns are ignored); without one, they are read in that order. ``same`` is 1/0,
    true/false or yes/no. Relative paths are resolved against ``image_root`` (default: the CSV's
    folder). Without a fold column, pairs are spread over ``folds`` folds round-robin.
    """
    csv_file = Path(csv_file)
    root = Path(image_root) if image_root else csv_file.parent
    pairs: list[Pair] = []
    columns: dict[str, int] | None = None
    try:
        with open(csv_file, newline="") as f:
            for number, row in enumerate(csv.reader(f), start=1):
                if not any(cell.strip() for cell in row):
                    continue
                if columns is None:  # the first line: a header, or already a pair
                    row[0] = row[0].removeprefix("\ufeff")  # a byte-order mark, as spreadsheets write one
                    columns, header = _csv_columns(csv_file, row)
                    if header:
                        continue
                cell = {name: row[i].strip() if i < len(row) else "" for name, i in columns.items()}
                same = cell["same"].lower()
                if same not in TRUTHY | FALSY or not cell["file_a"] or not cell["file_b"]:
                    raise FacesysError(f"{csv_file}: line {number}: expected file_a,file_b,same[,fold]")
                try:
                    fold = int(cell["fold"]) if cell.get("fold") else len(pairs) % folds
                except ValueError:
                    raise FacesysError(f"{csv_file}: line {number}: fold {cell['fold']!r} is not an integer") from None
                pairs.append(Pair(root / cell["file_a"], root / cell["file_b"], same in TRUTHY, fold))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise FacesysError(f"{csv_file}: cannot read pairs file ({reason})") from None
    return pairs


def read_pairs(pairs_file: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """Pairs from an LFW ``pairs.txt`` or a CSV (by the ``.csv`` extension), images under ``image_root``
    (default: the pairs file's folder)."""
    if not Path(pairs_file).is_file():
        raise FacesysError(f"{pairs_file}: pairs file not found")
    reader = read_csv_pairs if str(pairs_file).lower().endswith(".csv") else read_lfw_pairs
    return reader(pairs_file, image_root)


def people_in_pairs(pairs: list[Pair]) -> set[str]:
    """Names (image parent folders) of everyone who appears in ``pairs``."""
    return {p.parent.name for pair in pairs for p in (pair.a, pair.b)}
