"""Open-set identification metrics on synthetic probes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.evaluate.identification import (
    GenuineProbe,
    dir_at,
    identification_metrics,
    rank_k,
    rejection_rate,
    threshold_at_fpir,
)

GENUINE = [
    GenuineProbe("a", [("a", 0.2), ("b", 0.6)]),
    GenuineProbe("b", [("a", 0.3), ("b", 0.35)]),  # right person at rank 2
    GenuineProbe("c", [("c", 0.45)]),
    GenuineProbe("d", []),  # no face found
]
IMPOSTOR = np.array([0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2])


def test_rank_k():
    assert rank_k(GENUINE, 1) == 0.5
    assert rank_k(GENUINE, 5) == 0.75


def test_threshold_at_fpir_never_exceeds_the_target():
    # FPIR 0.1 of 10 impostors: at most one may be named -> just below the second smallest (0.4).
    t = threshold_at_fpir(IMPOSTOR, 0.1)
    assert t < 0.4 and t == pytest.approx(0.4)
    assert np.mean(t >= IMPOSTOR) == 0.1
    # FPIR 0.01 of 10: nobody may be named -> just below 0.25.
    assert np.mean(threshold_at_fpir(IMPOSTOR, 0.01) >= IMPOSTOR) == 0.0


def test_dir_and_rejection():
    assert dir_at(GENUINE, 0.5) == 0.5  # a (0.2) and c (0.45); b is wrong at rank 1
    assert dir_at(GENUINE, 0.3) == 0.25
    assert rejection_rate(IMPOSTOR, 0.45) == 0.8


def test_dir_at_fpir():
    metrics = identification_metrics(GENUINE, IMPOSTOR, fpirs=(0.1, 0.01))
    assert metrics.dir_at_fpir[0.1][0] == 0.25  # threshold just under 0.4 names a (0.2) only
    assert metrics.dir_at_fpir[0.01][0] == 0.25  # just under 0.25: a (0.2) still named
    assert (metrics.genuine, metrics.impostor) == (4, 10)
