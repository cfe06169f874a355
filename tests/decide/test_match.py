"""Matching rules on synthetic numbers: verify and the open-set threshold."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.decide.match import confused_with, identify_threshold, verify

TABLE = ((1e-1, 0.50), (1e-2, 0.45), (1e-3, 0.40), (1e-4, 0.35), (1e-5, 0.30))


def test_verify_uses_less_or_equal():
    a = np.array([1.0, 0.0])
    assert verify(a, np.array([1.0, 0.5]), threshold=0.5, threshold_source="x").same
    assert not verify(a, np.array([0.0, 1.0]), threshold=1.0, threshold_source="x").same


def test_open_set_threshold_tightens_with_gallery_size():
    # 1% target over 10 faces -> FAR 1e-3 -> 0.40; over 100 faces -> 1e-4 -> 0.35.
    assert identify_threshold(TABLE, 10, verify_threshold=0.6) == pytest.approx(0.40)
    assert identify_threshold(TABLE, 100, verify_threshold=0.6) == pytest.approx(0.35)
    # Between table rows the threshold is interpolated in log(FAR).
    assert identify_threshold(TABLE, 31.62, verify_threshold=0.6) == pytest.approx(0.375, abs=1e-3)
    # Clamped to the table, and never looser than verification.
    assert identify_threshold(TABLE, 10**9, verify_threshold=0.6) == pytest.approx(0.30)
    assert identify_threshold(TABLE, 1, verify_threshold=0.42) == pytest.approx(0.42)
    assert identify_threshold((), 50, verify_threshold=0.42) == 0.42


def test_a_face_nearer_someone_else_than_its_own_person_is_confused_within_the_threshold():
    nearest = [(0.30, "Ann"), (0.35, "Bob"), (0.50, "Bob")]
    assert confused_with("Bob", nearest, threshold=0.6) == ("Ann", 0.30)
    assert confused_with("Bob", nearest, threshold=0.2) is None  # Ann too far to be confused with
    assert confused_with("Ann", nearest, threshold=0.6) is None  # its own photo is the nearest
    assert confused_with("Cid", nearest, threshold=0.6) == ("Ann", 0.30)  # a new person: no photo of their own
    assert confused_with("Bob", [(0.4, "Bob")], threshold=0.6) is None
