"""The command line: output formats, one-line errors with exit code 2, fast start."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from facesys.cli import main
from tests.conftest import data_path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def torch_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesys.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from facesys.cli import main; assert 'torch' not in sys.modules and 'cv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    start = time.perf_counter()
    result = run_process("--help")
    assert result.returncode == 0 and "embed" in result.stdout
    assert time.perf_counter() - start < 5  # generous: CI machines vary; benchmarks measure it


def test_models_lists_the_registry_without_torch():
    result = run("models", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)["models"]
    assert rows[0]["name"] == "dlib-resnet" and rows[0]["dim"] == 128
    assert "dlib_face_recognition_resnet_model_v1.dat" in rows[0]["weights"]


def test_embed_json_schema():
    lfw = data_path("lfw")
    face = str(lfw / "AJ_Cook" / "AJ_Cook_0001.jpg")
    empty = str(data_path("bad_inputs", "no_face", "coffee.png"))
    result = run("embed", "--json", face, empty)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["model"].startswith("dlib-resnet@")
    first, second = document["images"]
    assert first["file"] == face and len(first["faces"]) == 1 and second["faces"] == []
    record = first["faces"][0]
    assert set(record) == {"box", "landmarks", "score", "embedding"}
    assert len(record["box"]) == 4 and len(record["landmarks"]) == 5 and len(record["embedding"]) == 128
    assert abs(np.linalg.norm(record["embedding"]) - 1) < 1e-4


def test_embed_text_output():
    result = run("embed", str(data_path("face_recognition", "_multi_face", "two_people.jpg")))
    assert result.exit_code == 0
    assert "2 faces" in result.output and "face 2: box=(" in result.output


def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    bad = [str(tmp_path / "text.jpg"), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.jpg"), str(tmp_path)]
    truncated = data_path("bad_inputs", "odd_format", "truncated.jpg")
    result = run_process("embed", *bad, str(truncated))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5, result.stderr
    assert "Traceback" not in result.stderr
    for path, line in zip([*bad, str(truncated)], lines, strict=True):
        assert line.startswith("facesys: error: ") and path in line


def test_unknown_model_and_bad_arguments():
    result = run_process("--model", "nope", "embed", "x.jpg")
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr and "Traceback" not in result.stderr
    cases = [(["embed"], "Missing argument 'IMAGES...'"), (["--device", "tpu", "embed", "x.jpg"], "--device tpu: not a device")]
    if not torch_sees_a_gpu():
        cases.append((["--device", "cuda", "embed", "x.jpg"], "--device cuda: no CUDA GPU is available"))
    for args, message in cases:
        result = run_process(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()  # one line, naming the problem
        assert line.startswith("facesys: error: ") and message in line
