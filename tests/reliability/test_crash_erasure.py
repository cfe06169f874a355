"""SIGKILL at random moments while the index is written, a person is removed and an export is
imported: nothing reported is lost, no gallery is corrupt, no partial import, and nothing of a
removed person is left in any file of the gallery folder. A CI-sized run of three kinds of
benchmarks/crash_enroll.py (the full run is ``python benchmarks/crash_enroll.py --trials 50``)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT, data_path

sys.path.insert(0, str(ROOT / "benchmarks"))

pytestmark = pytest.mark.slow
KINDS = ["index", "remove", "import"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    data_path("face_recognition", "joe_biden")
    data_path("face_recognition", "barack_obama", "obama3.jpg")
    from crash_enroll import run_kinds

    return run_kinds(KINDS, trials=3, workdir=tmp_path_factory.mktemp("crash"), seed=1, filler=500)


@pytest.mark.parametrize("kind", KINDS)
def test_killed_runs_lose_nothing_and_leave_nothing(results, kind):
    result = results[kind]
    details = [(row["delay_s"], row["problems"], row["leftover"]) for row in result["rows"]]
    assert result["trials"] == 3
    assert result["killed"] >= 1, details  # the delays must actually interrupt runs
    assert result["lost"] == 0, details
    assert result["corrupt_galleries"] == 0, details
    assert result["leftover"] == 0, details


def test_an_uninterrupted_removal_leaves_nothing(results):
    assert results["remove"]["uninterrupted_removal_leftover"] == []
    assert results["remove"]["signatures"] > 3  # embeddings, crop pieces, name and paths were searched for


def test_an_import_is_all_or_nothing(results):
    states = results["import"]["states"]
    assert states["partial"] == 0 and sum(states.values()) == 3
