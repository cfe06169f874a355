"""Smoke runs of ``facesys eval`` and ``facesys calibrate`` on a few real LFW faces."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from facesys.cli import main
from facesys.evaluate.pairs import read_lfw_pairs
from tests.conftest import data_path


def small_pairs_csv(tmp_path, per_fold: int = 12, folds: int = 3):
    """A CSV of LFW pairs: the first ``per_fold`` same and different pairs of each of ``folds`` folds."""
    lfw = data_path("lfw")
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    rows = ["file_a,file_b,same,fold"]
    for fold in range(folds):
        for same in (True, False):
            chosen = [p for p in pairs if p.fold == fold and p.same == same][:per_fold]
            rows += [f"{p.a.relative_to(lfw)},{p.b.relative_to(lfw)},{int(same)},{fold}" for p in chosen]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, lfw


def test_eval_pairs_reports_protocol_roc_and_plot(tmp_path):
    csv, lfw = small_pairs_csv(tmp_path)
    out, plot = tmp_path / "report.json", tmp_path / "roc.png"
    result = CliRunner().invoke(
        main,
        ["eval", "pairs", "--data", str(lfw), "--pairs", str(csv), "--face", "center", "--json", str(out), "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    assert "mean ± std of 3 held-out folds" in result.output and "TAR @ FAR 0.01" in result.output
    report = json.loads(out.read_text())
    assert report["pairs"] == 72 and report["folds"] == 3
    assert report["accuracy_mean"] == np.mean(report["fold_accuracies"])
    assert report["accuracy_mean"] > 0.9 and report["auc"] > 0.95
    assert "missing_face_policy" in report
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_identify_on_a_small_lfw_split(tmp_path):
    out = tmp_path / "identify.json"
    args = ["eval", "identify", "--data", str(data_path("lfw")), "--min-photos", "60", "--max-probes", "2", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["people_enrolled"] >= 4 and report["people_never_enrolled"] >= 4
    assert report["rank1"] >= 0.9 and "0.01" in report["dir_at_fpir"]
    assert "rank-1" in result.output and "DIR @ FPIR 0.01" in result.output


def test_calibrate_saves_a_threshold_that_verify_then_uses(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    runner = CliRunner()
    assert runner.invoke(main, ["--gallery", str(gallery), "enroll", "--name", "Joe Biden", str(fr / "joe_biden")]).exit_code == 0
    a, b = str(fr / "barack_obama" / "obama.jpg"), str(fr / "barack_obama" / "obama3.jpg")
    assert runner.invoke(main, ["--gallery", str(gallery), "verify", a, b]).exit_code == 0
    csv, lfw = small_pairs_csv(tmp_path, per_fold=10, folds=1)
    result = runner.invoke(
        main,
        [
            "--gallery",
            str(gallery),
            "calibrate",
            "--data",
            str(lfw),
            "--pairs",
            str(csv),
            "--far",
            "0.1",
            "--save",
            "verify",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    calibrated = json.loads(result.output.splitlines()[-1])
    assert calibrated["saved_as"] == "verify" and 0 < calibrated["threshold"] < 2
    stats = json.loads(runner.invoke(main, ["--gallery", str(gallery), "gallery", "stats", "--json"]).output)
    assert stats["verify_threshold"] == calibrated["threshold"]
    # A threshold stored in the gallery now decides verify; make it strict to see the decision change.
    from facesys.system import FaceSystem

    FaceSystem(gallery).set_threshold("verify", 0.05)
    verdict = json.loads(runner.invoke(main, ["--gallery", str(gallery), "verify", "--json", a, b]).output)
    assert verdict["same"] is False and verdict["threshold_source"] == "gallery" and verdict["threshold"] == 0.05
