"""``facesys eval`` and ``facesys calibrate``: smoke runs on a few real LFW faces, and the
--json/--report plumbing on made-up embeddings (no model, no images)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import facesys.cli.evaluate as evaluate_cli
import facesys.evaluate.experiments as experiments
from facesys.cli import Settings, main
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
        ["eval", "pairs", "--data", str(lfw), "--pairs", str(csv), "--face", "center", "--report", str(out), "--plot", str(plot)],
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
    args = ["eval", "identify", "--data", str(data_path("lfw")), "--min-photos", "60", "--max-probes", "2", "--report", str(out)]
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


class FakeCache:
    """Stands in for EmbeddingCache: a photo's vector is its person's axis plus a little noise."""

    def __init__(self):
        self.embedder = SimpleNamespace(model_id="fake@0123456789abcdef", spec=SimpleNamespace(far_table=None, threshold=0.5))
        self.unreadable = {}

    def embed(self, paths):
        rng = np.random.default_rng(0)
        vectors = {}
        for path in sorted(set(paths)):
            vector = np.eye(8)[int(path.parent.name[1:])] + 0.1 * rng.standard_normal(8)
            vectors[path] = vector / np.linalg.norm(vector)
        return vectors

    def missing(self):
        return []


@pytest.fixture
def fake_embeddings(monkeypatch):
    monkeypatch.setattr(Settings, "embedder", lambda self, flip=False: None)
    monkeypatch.setattr(evaluate_cli, "cache_for", lambda settings, face, embedder=None, ray=None: FakeCache())


def fake_pairs_csv(tmp_path) -> Path:
    """Pairs of 4 people (folders p0..p3) in 2 folds, the header naming the columns in another order."""
    rows = ["fold,file_a,file_b,same"]
    for fold in range(2):
        for person in range(4):
            rows.append(f"{fold},p{person}/{fold}a.jpg,p{person}/{fold}b.jpg,1")
            rows.append(f"{fold},p{person}/{fold}a.jpg,p{(person + 1) % 4}/{fold}b.jpg,0")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_eval_pairs_json_is_one_object_on_stdout_and_report_the_same_in_a_file(tmp_path, fake_embeddings):
    csv, report = fake_pairs_csv(tmp_path), tmp_path / "report.json"
    result = CliRunner().invoke(main, ["eval", "pairs", "--pairs", str(csv), "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()  # no human text on stdout
    document = json.loads(line)
    assert document == json.loads(report.read_text())
    assert document["schema_version"] == 1 and document["model"] == "fake@0123456789abcdef"
    assert document["pairs"] == 16 and document["folds"] == 2 and document["auc"] == 1.0
    assert document["flip"] is False and document["face"] == "largest" and "0.01" in document["tar_at_far"]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed over the report


def test_eval_pairs_text_report_and_its_errors(tmp_path, fake_embeddings):
    csv, report = fake_pairs_csv(tmp_path), tmp_path / "report.json"
    runner = CliRunner()
    result = runner.invoke(main, ["eval", "pairs", "--pairs", str(csv), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "ROC AUC 1.00000" in result.stdout and f"report saved to {report}" in result.stdout
    assert json.loads(report.read_text())["pairs"] == 16
    # One fold: the k-fold accuracy is undefined, null in the JSON (not NaN, which is not JSON).
    (tmp_path / "one_fold.csv").write_text(csv.read_text().replace("\n1,", "\n0,"))
    result = runner.invoke(main, ["eval", "pairs", "--pairs", str(tmp_path / "one_fold.csv"), "--json"])
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout and json.loads(result.stdout)["accuracy_mean"] is None
    # A report that cannot be written fails at once, in one line; --json no longer takes a file.
    missing = tmp_path / "no" / "such" / "report.json"
    result = runner.invoke(main, ["eval", "pairs", "--pairs", str(csv), "--report", str(missing)])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("facesys: error: ") and str(missing) in line
    result = runner.invoke(main, ["eval", "pairs", "--pairs", str(csv), "--json", str(report)])
    assert result.exit_code == 2 and "unexpected extra argument" in result.stderr


def test_eval_identify_json_and_report(tmp_path, fake_embeddings, monkeypatch):
    result_of_run = {"rank1": 0.9, "rank5": 1.0, "dir_at_fpir": {"0.1": {"dir": 0.8, "threshold": 0.4}}, "spread": float("nan")}
    monkeypatch.setattr(experiments, "split_identification", lambda *args: "split")
    monkeypatch.setattr(experiments, "evaluate_identification", lambda cache, split, policy, score: dict(result_of_run))
    report = tmp_path / "identify.json"
    args = ["eval", "identify", "--data", str(tmp_path), "--seed", "7", "--json", "--report", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    document = json.loads(line)
    assert document == json.loads(report.read_text())
    assert document == {
        "schema_version": 1,
        "model": "fake@0123456789abcdef",
        "data": str(tmp_path),
        "enroll": 2,
        "seed": 7,
        "flip": False,
        **result_of_run,
        "spread": None,
    }
