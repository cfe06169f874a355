"""``facesys models prepare NAME --weights FILE.onnx``: the user's own model on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from facesys.cli import main
from tests.conftest import data_path
from tests.models.onnx_graphs import embedding_graph


@pytest.fixture(autouse=True)
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("FACESYS_MODELS", str(folder))  # subprocesses inherit it
    return folder


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_prepare_then_models_lists_it_with_its_licence(tmp_path):
    source = embedding_graph(tmp_path / "tiny.onnx")
    result = run("models", "prepare", "tiny", "--weights", str(source), "--kind", "sface")
    assert result.exit_code == 0, result.output
    assert "8-D, 16x16 chips" in result.output and "licence: not declared" in result.output
    rows = {row["name"]: row for row in json.loads(run("models", "--json").output)["models"]}
    assert rows["dlib-resnet"]["licence"] == "CC0" and rows["facenet-casia"]["licence"].startswith("MIT")
    assert (rows["tiny"]["dim"], rows["tiny"]["input_size"], rows["tiny"]["licence"]) == (8, 16, "not declared")
    assert "UNCALIBRATED" in rows["tiny"]["description"] and "(RGB - 127.5) / 128" in rows["tiny"]["description"]
    assert run("models", "prepare", "tiny", "--licence", "Apache-2.0", "--threshold", "0.9").exit_code == 0
    text = run("models").output
    assert "tiny: 8-D, 16x16 chips, threshold 0.9" in text and "licence: Apache-2.0" in text
    ready = run("models", "prepare", "tiny")  # a prepared model: checked by loading it, as a built-in
    assert ready.exit_code == 0 and "tiny: ready (tiny@" in ready.output
    removed = run("models", "remove", "tiny")
    assert removed.exit_code == 0 and "tiny.json" in removed.output and "tiny" not in run("models").output


def test_each_refusal_is_one_line_naming_the_file_and_exit_2(tmp_path):
    bad = {
        "text.onnx": "not a valid ONNX model",
        "two_inputs.onnx": "takes 2 inputs",
        "nan.onnx": "NaN or infinite",
        "shrink.onnx": "no onnx2torch converter",
    }
    (tmp_path / "text.onnx").write_text("not a graph")
    embedding_graph(tmp_path / "two_inputs.onnx", second_input=True)
    embedding_graph(tmp_path / "nan.onnx", nan_weight=True)
    embedding_graph(tmp_path / "shrink.onnx", operator="Shrink")
    for name, problem in bad.items():
        result = run("models", "prepare", "mine", "--weights", str(tmp_path / name))
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"facesys: error: {tmp_path / name}: ") and problem in line
    process = subprocess.run(
        [sys.executable, "-m", "facesys.cli", "models", "prepare", "mine", "--weights", str(tmp_path / "nan.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 2 and "Traceback" not in process.stderr and len(process.stderr.strip().splitlines()) == 1
    assert "mine" not in run("models").output


def test_builtin_names_and_options_are_refused(tmp_path):
    source = str(embedding_graph(tmp_path / "tiny.onnx"))
    result = run("models", "prepare", "dlib-resnet", "--weights", source, "--kind", "arcface")
    assert result.exit_code == 2 and "--kind: only for your own ONNX models; 'dlib-resnet' is built in" in result.stderr
    result = run("models", "remove", "dlib-resnet")
    assert result.exit_code == 2 and "built in" in result.stderr
    result = run("models", "prepare", "nobody", "--licence", "MIT")
    assert result.exit_code == 2 and "no prepared model of that name" in result.stderr


def test_enroll_verify_identify_with_a_prepared_model(tmp_path):
    """A random tiny graph is enough to run the whole pipeline: enroll, verify and identify with --model."""
    fr = data_path("face_recognition")
    obama, obama2, biden = fr / "barack_obama" / "obama.jpg", fr / "barack_obama" / "obama2.jpg", fr / "joe_biden" / "biden.jpg"
    source = embedding_graph(tmp_path / "tiny.onnx", size=32, dim=16)
    assert run("models", "prepare", "tiny", "--weights", str(source), "--licence", "MIT").exit_code == 0
    gallery = str(tmp_path / "gallery")
    enrolled = run("--gallery", gallery, "--model", "tiny", "enroll", "--name", "Barack Obama", str(obama))
    assert enrolled.exit_code == 0, enrolled.output
    verified = run("--gallery", gallery, "--model", "tiny", "verify", "--json", str(obama), str(obama2))
    assert verified.exit_code in (0, 1), verified.output
    document = json.loads(verified.output.splitlines()[0])
    assert document["model"].startswith("tiny@") and 0 <= document["distance"] <= 2
    identified = run("--gallery", gallery, "identify", "--json", str(biden))  # the gallery's model: tiny
    assert identified.exit_code == 0, identified.output
    stats = json.loads(run("--gallery", gallery, "gallery", "stats", "--json").output)
    assert stats["model_id"].startswith("tiny@") and stats["dim"] == 16 and stats["faces"] == 1
