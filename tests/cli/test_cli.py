"""The command line: output formats, one-line errors with exit code 2, fast start."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import Settings, main
from facesys.config import DEFAULT_MODEL
from facesys.errors import FacesysError
from facesys.gallery.gallery import Reembedded
from tests.conftest import data_path


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


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
    assert rows[0]["name"] == DEFAULT_MODEL and rows[0]["dim"] == 128
    weights = {row["name"]: row["weights"] for row in rows}
    assert "dlib_face_recognition_resnet_model_v1.dat" in weights["dlib-resnet"]
    assert "face_recognition_sface_2021dec_int8bq.onnx" in weights["sface"]


def test_embed_json_schema():
    lfw = data_path("lfw")
    face = str(lfw / "AJ_Cook" / "AJ_Cook_0001.jpg")
    empty = str(data_path("bad_inputs", "no_face", "coffee.png"))
    result = run("embed", "--json", face, empty)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["model"].startswith(f"{DEFAULT_MODEL}@")
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
    cases = [(["embed"], "Missing argument 'IMAGES...'"), (["--device", "tpu", "embed", "x.jpg"], "device 'tpu': not a device")]
    if not torch_sees_a_gpu():
        cases.append((["--device", "cuda", "embed", "x.jpg"], "device 'cuda': no CUDA GPU is available"))
    for args, message in cases:
        result = run_process(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()  # one line, naming the problem
        assert line.startswith("facesys: error: ") and message in line
        assert "--device" in line or "--device" not in args  # the CLI names the flag to change


@pytest.fixture
def settings_seen(monkeypatch):
    """The Settings of the last run, as its command body saw them; Settings.system and .embedder stop the command."""
    seen = {}
    original_init = Settings.__init__

    def record(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        seen["settings"] = self

    def stop(self, *args, **kwargs):
        raise FacesysError("stopped before any work")

    monkeypatch.setattr(Settings, "__init__", record)
    monkeypatch.setattr(Settings, "system", stop)
    monkeypatch.setattr(Settings, "embedder", stop)
    return lambda name: getattr(seen["settings"], name)


def stopped(result) -> bool:
    """The command body ran and was stopped by ``settings_seen``: exit 2 and that one line."""
    return result.exit_code == 2 and result.stderr == "facesys: error: stopped before any work\n"


def test_global_options_may_follow_the_command_name(tmp_path, settings_seen):
    result = run("identify", "x.jpg", "--gallery", "G", "--json", "--model", "M", "--weights", "w.dat")
    assert stopped(result), result.output
    assert (settings_seen("gallery"), settings_seen("model"), settings_seen("weights")) == ("G", "M", "w.dat")
    assert (settings_seen("device"), settings_seen("precision"), settings_seen("quiet")) == ("cpu", "auto", False)
    # In a nested group too; after the command name wins over before it.
    pairs = tmp_path / "p.csv"
    pairs.write_text("a.jpg,b.jpg,1\n")
    args = ["--device", "cpu", "eval", "pairs", "--pairs", str(pairs), "--device", "cuda:1", "--precision", "fp16", "-q"]
    assert stopped(run(*args, "--model", "X"))
    assert (settings_seen("device"), settings_seen("precision"), settings_seen("model")) == ("cuda:1", "fp16", "X")
    assert settings_seen("quiet") is True
    assert stopped(run("--gallery", "A", "calibrate", "--pairs", str(pairs), "--gallery", "B"))
    assert settings_seen("gallery") == "B"
    # The environment still gives the defaults, and an option after the command name still beats it.
    environment = {"FACESYS_GALLERY": "from-env", "FACESYS_MODEL": "env-model"}
    assert stopped(run("embed", "x.jpg", env=environment))
    assert (settings_seen("gallery"), settings_seen("model")) == ("from-env", "env-model")
    assert stopped(run("--model", "M1", "verify", "a.jpg", "b.jpg", "--gallery", "G2", env=environment))
    assert (settings_seen("gallery"), settings_seen("model")) == ("G2", "M1")
    # -v after the command name: the error comes with its traceback.
    result = run("identify", "x.jpg", "-v")
    assert result.exit_code == 2 and "Traceback" in result.stderr and settings_seen("verbose") is True


def test_a_command_keeps_its_own_option_of_a_global_name(monkeypatch):
    seen = {}

    class FakeSystem:
        def reindex(self, model: str, ray: str | None = None) -> Reembedded:
            seen["reindexed_with"] = model
            return Reembedded(faces=3, library_faces=1)

    def system(self, *args, **kwargs):
        seen.update(vars(self))
        return FakeSystem()

    monkeypatch.setattr(Settings, "system", system)
    result = run("--model", "old", "gallery", "reindex", "--model", "new", "--gallery", "G")
    assert result.exit_code == 0, result.output
    assert result.stdout == "re-embedded 3 faces and 1 library face with new\n"
    assert seen["reindexed_with"] == "new" and seen["gallery"] == "G" and seen["model"] is None
    assert "Missing option '--model'" in run("gallery", "reindex", "--gallery", "G").stderr  # still required
    prepare = main.commands["models"].commands["prepare"]
    assert [p.name for p in prepare.params if "--weights" in p.opts] == ["weights"]
    help_text = run("gallery", "reindex", "--help").stdout
    assert "--precision" in help_text and "--device" in help_text and "Global options" in help_text  # only the note
    assert "bf16" not in help_text and "--weights FILE" not in help_text  # hidden: not listed as options


def test_global_options_after_the_command_reach_a_real_command(tmp_path):
    gallery = tmp_path / "g"
    gallery.mkdir()
    listed = run("gallery", "list", "--gallery", str(gallery), "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["people"] == []
    result = run_process("identify", str(tmp_path / "missing.jpg"), "--gallery", str(gallery), "--json")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("facesys: error: ") and "No such option" not in line and str(gallery) in line


def test_bad_global_option_after_the_command_is_a_usage_error():
    result = run_process("identify", "x.jpg", "--precision", "bf8")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("facesys: error: ") and "'--precision'" in line and "identify --help" in line
