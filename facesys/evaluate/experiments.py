"""Evaluation runs on real images: verification pairs, open-set identification, calibration.

Each image is embedded once per run (``EmbeddingCache``); images where no face is found (or that
cannot be read) are counted and handled as stated in the report, never silently dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesys.datasets import people_in
from facesys.decide.match import OpenSetThreshold
from facesys.decide.scoring import DEFAULT_PERSON_SCORE
from facesys.errors import FacesysError
from facesys.evaluate.identification import GenuineProbe, dir_at, identification_metrics, rejection_rate
from facesys.evaluate.pairs import Pair
from facesys.evaluate.protocol import kfold_accuracy
from facesys.evaluate.roc import roc_curve

# A pair with a missing face gets the largest possible distance between unit vectors: it is
# always called "different" (a miss for a same-person pair, a hit for a different-person pair).
MISSING_DISTANCE = 2.0
FAR_POINTS = (1e-1, 1e-2, 1e-3)


@dataclass
class EmbeddingCache:
    """Embeds each image once: path -> (D,) unit vector, or None when no face is found.

    ``face``: which face of a photo with several (``largest`` or ``center``); ``progress`` wraps
    the list of images still to embed (e.g. a tqdm bar); ``embedder``: an Embedder, or a Ray
    one (facesys/distributed/: the batches then run side by side on its actors).
    """

    embedder: object
    face: str = "largest"
    progress: Callable[[list], Iterable] = lambda items: items
    batch_size: int = 32
    vectors: dict[Path, np.ndarray | None] = field(default_factory=dict)
    unreadable: dict[Path, str] = field(default_factory=dict)

    def embed(self, paths: Iterable[Path]) -> dict[Path, np.ndarray | None]:
        todo = sorted({Path(p) for p in paths} - self.vectors.keys())
        batches = self.embedder.face_batches(
            ((path, path) for path in todo), select=self.face, errors="collect", batch_size=self.batch_size
        )
        answers = (answer for batch in batches for answer in batch)
        for _, (path, result) in zip(self.progress(todo), answers, strict=True):
            if result.error:
                self.unreadable[path] = result.error
            self.vectors[path] = result.faces[0].embedding if result.faces else None
        return self.vectors

    def missing(self) -> list[Path]:
        return sorted(p for p, v in self.vectors.items() if v is None)


@dataclass
class PairsReport:
    """Everything ``facesys eval pairs`` reports; ``to_dict`` is its JSON form."""

    pairs: int
    folds: int
    accuracy_mean: float
    accuracy_std: float
    fold_thresholds: list[float]
    fold_accuracies: list[float]
    auc: float
    eer: float
    tar_at_far: dict[float, tuple[float, float]]
    images: int
    images_without_face: int
    unreadable_images: int
    pairs_with_missing_face: int
    roc: object = None

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "roc"}
        data["tar_at_far"] = {f"{far:g}": {"tar": tar, "threshold": t} for far, (tar, t) in self.tar_at_far.items()}
        data["missing_face_policy"] = f"pairs with a missing face get distance {MISSING_DISTANCE} (always 'different')"
        return data


def pair_distances(cache: EmbeddingCache, pairs: list[Pair]) -> tuple[np.ndarray, int]:
    """(P,) distances of ``pairs`` (MISSING_DISTANCE where a face is missing) and how many those were."""
    vectors = cache.embed([p.a for p in pairs] + [p.b for p in pairs])
    distances, missing = [], 0
    for pair in pairs:
        a, b = vectors[pair.a], vectors[pair.b]
        if a is None or b is None:
            missing += 1
            distances.append(MISSING_DISTANCE)
        else:
            distances.append(float(np.linalg.norm(a - b)))
    return np.array(distances), missing


def evaluate_pairs(cache: EmbeddingCache, pairs: list[Pair]) -> PairsReport:
    """The k-fold protocol (folds from the pair list), ROC, AUC, EER and TAR@FAR of ``pairs``."""
    if not pairs:
        raise FacesysError("no pairs to evaluate")
    distances, missing_pairs = pair_distances(cache, pairs)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    kfold = kfold_accuracy(distances, same, folds) if len(set(folds.tolist())) > 1 else None
    roc = roc_curve(distances, same)
    return PairsReport(
        pairs=len(pairs),
        folds=len(set(folds.tolist())),
        accuracy_mean=kfold.mean if kfold else float("nan"),
        accuracy_std=kfold.std if kfold else float("nan"),
        fold_thresholds=[f.threshold for f in kfold.folds] if kfold else [],
        fold_accuracies=[f.accuracy for f in kfold.folds] if kfold else [],
        auc=roc.auc,
        eer=roc.eer,
        tar_at_far={far: roc.tar_at_far(far) for far in FAR_POINTS},
        images=len({p.a for p in pairs} | {p.b for p in pairs}),
        images_without_face=len(cache.missing()) - len(cache.unreadable),
        unreadable_images=len(cache.unreadable),
        pairs_with_missing_face=missing_pairs,
        roc=roc,
    )


def calibrate_threshold(cache: EmbeddingCache, pairs: list[Pair], far: float) -> dict:
    """The threshold reaching ``far`` on the user's pairs, and the TAR it gives there."""
    distances, missing = pair_distances(cache, pairs)
    roc = roc_curve(distances, np.array([p.same for p in pairs]))
    tar, threshold = roc.tar_at_far(far)
    if not np.isfinite(threshold):
        raise FacesysError(f"no threshold reaches FAR {far:g} on these pairs (too few different-person pairs?)")
    different = sum(not p.same for p in pairs)
    return {
        "far": far,
        "threshold": threshold,
        "tar": tar,
        "pairs": len(pairs),
        "different_pairs": different,
        "resolution_far": 1.0 / different,
        "pairs_with_missing_face": missing,
    }


@dataclass(frozen=True)
class IdentificationSplit:
    """Who is enrolled with which photos, and the probes of enrolled and never-enrolled people."""

    enrolled: dict[str, list[Path]]
    genuine: list[tuple[str, Path]]
    impostor: list[tuple[str, Path]]


def split_identification(
    root: Path, enroll: int, min_photos: int, max_probes: int, unknown_share: float, seed: int
) -> IdentificationSplit:
    """Folder-per-person data -> a seeded split.

    People with at least ``min_photos`` photos; ``unknown_share`` of them are never enrolled (up
    to ``max_probes`` photos each become impostor probes); the others enroll their first
    ``enroll`` photos (sorted) and up to ``max_probes`` of the rest are genuine probes.
    Folders whose names start with '_' or '.' are not people.
    """
    people = {name: photos for name, photos in people_in(root).items() if len(photos) >= max(min_photos, enroll + 1)}
    if len(people) < 2:
        raise FacesysError(f"{root}: fewer than 2 people with at least {max(min_photos, enroll + 1)} photos")
    names = sorted(people)
    rng = random.Random(seed)
    rng.shuffle(names)
    unknown = set(names[: round(unknown_share * len(names))])
    enrolled, genuine, impostor = {}, [], []
    for name in sorted(people):
        photos = people[name]
        if name in unknown:
            impostor += [(name, p) for p in photos[:max_probes]]
        else:
            enrolled[name] = photos[:enroll]
            genuine += [(name, p) for p in photos[enroll : enroll + max_probes]]
    return IdentificationSplit(enrolled, genuine, impostor)


def evaluate_identification(cache: EmbeddingCache, split: IdentificationSplit, policy, score: str = DEFAULT_PERSON_SCORE) -> dict:
    """rank-1/5, DIR at FPIR 1e-1 and 1e-2, and facesys's open-set answers on ``split``, decided as identify
    decides (facesys/decide/ranking.py ``identify``; ``score``: facesys/decide/scoring.py), over an in-memory index.

    Two thresholds from ``policy`` (a ThresholdPolicy): the model's table alone, and the default (the
    stricter of the table and the gallery's own calibration, facesys/decide/calibration.py).
    """
    from facesys.decide.calibration import describe
    from facesys.decide.ranking import Neighbours, calibrate, identify
    from facesys.gallery.index import index_class

    photos = [p for ps in split.enrolled.values() for p in ps]
    vectors = cache.embed(photos + [p for _, p in split.genuine] + [p for _, p in split.impostor])
    gallery = [(name, vectors[p]) for name, ps in split.enrolled.items() for p in ps if vectors[p] is not None]
    owner = {i: name for i, (name, _) in enumerate(gallery)}
    matrix = np.stack([v for _, v in gallery]).astype(np.float32)
    index = index_class().build(np.arange(len(gallery), dtype=np.int64), matrix, "flat")
    rows_of: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(gallery):
        rows_of.setdefault(name, []).append(i)
    people = {name: (np.array(rows, np.int64), matrix[rows], {}) for name, rows in rows_of.items()}

    def search(probes: np.ndarray, k: int) -> Neighbours:
        return Neighbours(*index.search(probes, k), owner, len(gallery))

    def faces(ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return matrix[ids], [owner[int(i)] for i in ids]

    calibration = calibrate(np.arange(len(gallery)), faces, len(people), search, people.__getitem__, score)

    def answers(items: list[tuple[str, Path]]) -> tuple[list[list[tuple[str, float]]], OpenSetThreshold]:
        probes = np.array([vectors[p] for _, p in items if vectors[p] is not None], np.float32).reshape(-1, matrix.shape[1])
        ranked, threshold = identify(probes, search, people.__getitem__, 5, policy, lambda: calibration, score)
        found = iter(ranked)
        return [[(c.name, c.distance) for c in next(found)] if vectors[p] is not None else [] for _, p in items], threshold

    genuine_answers, default = answers(split.genuine)
    genuine = [GenuineProbe(name, r) for (name, _), r in zip(split.genuine, genuine_answers, strict=True)]
    impostor_best = np.array([r[0][1] if r else np.inf for r in answers(split.impostor)[0]])
    metrics = identification_metrics(genuine, impostor_best)
    table = policy.identify(len(gallery)).value  # the model's table alone
    return {
        "person_score": score,
        "people_enrolled": len(split.enrolled),
        "faces_enrolled": len(gallery),
        "genuine_probes": len(genuine),
        "impostor_probes": len(impostor_best),
        "people_never_enrolled": len({name for name, _ in split.impostor}),
        "images_without_face": len(cache.missing()),
        "rank1": metrics.rank1,
        "rank5": metrics.rank5,
        "dir_at_fpir": {f"{f:g}": {"dir": d, "threshold": t} for f, (d, t) in metrics.dir_at_fpir.items()},
        "model_table_threshold": table,
        "model_table_named_correctly": dir_at(genuine, table),
        "model_table_unknown_rejected": rejection_rate(impostor_best, table),
        "calibration": None if calibration is None else calibration.to_dict(),
        "calibration_note": describe(calibration, len(people)),
        "default_threshold": default.value,
        "default_threshold_source": default.source,
        "default_named_correctly": dir_at(genuine, default.value),
        "default_unknown_rejected": rejection_rate(impostor_best, default.value),
        "missing_face_policy": "probes without a face count as misses (genuine) and as rejected (impostor)",
    }
