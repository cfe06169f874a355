"""``facesys eval cluster``: a real run on face_recognition's labelled photos, the report fields on
made-up embeddings (no model, no images), and its errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import facesys.cli.evaluate as evaluate_cli
from facesys.cli import Settings, main
from facesys.config import DEFAULT_MODEL
from facesys.decide.clustering import cluster_threshold
from facesys.models import get_model_spec
from tests.conftest import data_path


def test_eval_cluster_on_real_photos(tmp_path):
    photos = data_path("face_recognition")
    report = tmp_path / "cluster.json"
    result = CliRunner().invoke(main, ["eval", "cluster", "--data", str(photos), "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    document = json.loads(line)
    assert document == json.loads(report.read_text())
    assert document["people"] == 6 and document["faces"] == 22 and document["face"] == "largest"
    assert document["bcubed_f1"] > 0.8 and document["pairwise_precision"] > 0.8
    assert document["clusters"] >= document["people"] - 1
    assert document["embed_seconds"] > document["cluster_seconds"] >= 0
    assert document["threshold"] == pytest.approx(cluster_threshold(get_model_spec(DEFAULT_MODEL)))  # the default model's


class FakeCache:
    """A photo's vector is its person's axis plus a little noise; photos named 'blank*' have no face."""

    def __init__(self):
        spec = SimpleNamespace(threshold=0.417, far_table=())
        self.embedder = SimpleNamespace(model_id="fake@0123456789abcdef", spec=spec)
        self.unreadable = {}

    def embed(self, paths):
        rng = np.random.default_rng(0)
        vectors = {}
        for path in sorted(set(paths)):
            vector = np.eye(8)[int(path.parent.name[1:])] + 0.02 * rng.standard_normal(8)
            vectors[path] = None if path.name.startswith("blank") else (vector / np.linalg.norm(vector)).astype(np.float32)
        return vectors


def fake_people(root, people: int = 3, photos: int = 4):
    for p in range(people):
        (root / f"p{p}").mkdir(parents=True)
        for i in range(photos):
            (root / f"p{p}" / f"{i}.jpg").write_bytes(b"")
    (root / "p0" / "blank.jpg").write_bytes(b"")
    return root


def test_eval_cluster_report_on_made_up_embeddings(tmp_path, monkeypatch):
    monkeypatch.setattr(Settings, "embedder", lambda self, flip=False: None)
    monkeypatch.setattr(evaluate_cli, "cache_for", lambda settings, face, embedder=None, ray=None: FakeCache())
    data = fake_people(tmp_path / "data")
    result = CliRunner().invoke(main, ["eval", "cluster", "--data", str(data), "--face", "center", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["model"] == "fake@0123456789abcdef" and document["face"] == "center"
    assert (document["faces"], document["people"], document["clusters"]) == (13, 3, 4)  # the blank photo alone
    assert document["images_without_face"] == 1 and document["unreadable_images"] == 0
    assert document["bcubed_precision"] == 1.0 and document["bcubed_recall"] < 1.0
    assert document["pairwise_recall"] == (6 + 6 + 6) / (10 + 6 + 6)
    result = CliRunner().invoke(main, ["eval", "cluster", "--data", str(data), "--threshold", "0.01"])
    assert result.exit_code == 0, result.output
    assert "13 clusters for 3 people" in result.stdout and "BCubed    precision 100.00%" in result.stdout
    assert "threshold 0.010" in result.stdout and "embedding " in result.stdout


def test_eval_cluster_errors_are_one_line(tmp_path):
    runner = CliRunner()
    missing = tmp_path / "nowhere"
    result = runner.invoke(main, ["eval", "cluster", "--data", str(missing)])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("facesys: error: ") and str(missing) in line
    (tmp_path / "empty").mkdir()
    result = runner.invoke(main, ["eval", "cluster", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no photos to cluster" in result.stderr and len(result.stderr.splitlines()) == 1
    result = runner.invoke(main, ["eval", "cluster", "--data", str(tmp_path), "--threshold", "3"])
    assert result.exit_code == 2 and "--threshold" in result.stderr
