"""Shared helpers of the benchmark scripts: where the data and the results are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("FACESYS_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"

from facesys.evaluate.pairs import people_in_pairs, read_lfw_pairs  # noqa: E402
from facesys.models.dlib_model import dlib_model_files  # noqa: E402
from facesys.vision.detect import nearest_to_centre  # noqa: E402


def lfw_pair_people(pairs_file: Path) -> set[str]:
    """Everyone who appears in a pair of ``pairs_file``."""
    return people_in_pairs(read_lfw_pairs(pairs_file))


__all__ = ["DATA", "RESULTS", "ROOT", "dlib_model_files", "lfw_pair_people", "nearest_to_centre"]
