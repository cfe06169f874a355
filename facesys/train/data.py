"""Training data: a folder-per-person dataset aligned once into cached chips.

``ChipSet`` holds (N, S, S, 3) uint8 chips aligned to the model's template, their person labels
and source paths. Building it runs detection and alignment once; the result is saved as an
``.npz`` (no pickle) keyed by the file list and alignment settings, and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesys.errors import FacesysError


@dataclass
class ChipSet:
    """``chips`` (N, S, S, 3) uint8 RGB; ``labels`` (N,) int person index; ``names`` per index; ``paths`` (N,)."""

    chips: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def index_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def build_chips(embedder, files: dict[str, list[Path]], face: str, cache_dir: Path | None, progress=lambda x: x) -> ChipSet:
    """Detect and align every photo once (cached in ``cache_dir``); photos with no face are skipped."""
    spec = embedder.spec
    flat = [(name, str(path)) for name, paths in files.items() for path in paths]
    key = hashlib.sha256(json.dumps([flat, spec.template, spec.input_size, face]).encode()).hexdigest()[:16]
    cached = cache_dir / f"chips-{key}.npz" if cache_dir else None
    if cached and cached.is_file():
        data = np.load(cached, allow_pickle=False)
        return ChipSet(data["chips"], data["labels"], json.loads(str(data["names"])), data["paths"].tolist())
    names = sorted(files)
    label_of = {name: i for i, name in enumerate(names)}
    chips, labels, paths = [], [], []
    batches = [flat[i : i + 32] for i in range(0, len(flat), 32)]
    for batch in progress(batches):
        results = embedder.faces(
            [path for _, path in batch], select=face, errors="collect", keep_chips=True, embed=False, batch_size=len(batch)
        )
        for (name, path), result in zip(batch, results, strict=True):
            if result.faces:
                chips.append(result.faces[0].chip)
                labels.append(label_of[name])
                paths.append(path)
    result = ChipSet(np.stack(chips), np.array(labels), names, paths)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, chips=result.chips, labels=result.labels, names=json.dumps(names), paths=np.array(paths))
    return result


def degrade(chips: np.ndarray, condition: str | None) -> np.ndarray:
    """Chips as seen under a harder condition: ``lowres:N`` (face down-scaled to N px and back up)
    or ``gray`` (grayscale); None leaves them unchanged. (N, S, S, 3) uint8 in and out."""
    if not condition:
        return chips
    if condition == "gray":
        gray = chips.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(np.clip(gray + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=3)
    low = condition.removeprefix("lowres:")
    if condition.startswith("lowres:") and low.isdigit() and int(low) >= 1:
        low = int(low)
        size = chips.shape[1]
        return np.stack(
            [
                cv2.resize(cv2.resize(c, (low, low), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR)
                for c in chips
            ]
        )
    raise FacesysError(f"unknown condition {condition!r}: use lowres:N (N >= 1 pixels) or gray")
