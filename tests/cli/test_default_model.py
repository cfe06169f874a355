"""A gallery keeps the model it was made with when the default changes, and moves to another with
``gallery reindex --model``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from facesys.cli import main
from facesys.config import DEFAULT_MODEL
from tests.conftest import data_path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def model_of(gallery: str) -> str:
    stats = run("gallery", "stats", "--json", "--gallery", gallery)
    assert stats.exit_code == 0, stats.output
    return json.loads(stats.stdout)["model_id"]


def identified(gallery: str, photo: str) -> str | None:
    result = run("identify", "--json", photo, "--gallery", gallery)
    assert result.exit_code == 0, result.output
    (face,) = json_lines(result.output)[0]["faces"]
    return face["name"]


def test_a_gallery_of_another_model_keeps_working_and_reindexes(tmp_path):
    lfw = data_path("lfw")
    powell = [str(lfw / "Colin_Powell" / f"Colin_Powell_000{i}.jpg") for i in (1, 2, 3)]
    bush = [str(lfw / "George_W_Bush" / f"George_W_Bush_000{i}.jpg") for i in (1, 2, 3)]
    old = "dlib-resnet" if DEFAULT_MODEL != "dlib-resnet" else "sface"
    gallery = str(tmp_path / "g")
    for name, photos in (("Colin Powell", powell[:2]), ("George Bush", bush[:2])):
        assert run("--model", old, "--gallery", gallery, "enroll", "--name", name, *photos).exit_code == 0
    assert model_of(gallery).startswith(f"{old}@")
    # no --model: the gallery's own model answers, not the default
    assert identified(gallery, powell[2]) == "Colin Powell" and identified(gallery, bush[2]) == "George Bush"
    assert model_of(gallery).startswith(f"{old}@")
    moved = run("gallery", "reindex", "--model", DEFAULT_MODEL, "--gallery", gallery)
    assert moved.exit_code == 0, moved.output
    assert model_of(gallery).startswith(f"{DEFAULT_MODEL}@")
    assert identified(gallery, powell[2]) == "Colin Powell" and identified(gallery, bush[2]) == "George Bush"


def test_a_new_gallery_takes_the_default_model(tmp_path):
    lfw = data_path("lfw")
    gallery = str(tmp_path / "g")
    photo = str(lfw / "Colin_Powell" / "Colin_Powell_0001.jpg")
    assert run("--gallery", gallery, "enroll", "--name", "Colin Powell", photo).exit_code == 0
    assert model_of(gallery).startswith(f"{DEFAULT_MODEL}@")
