"""Chip building and caching on real faces, degradation, and ``facesys train`` end to end (tiny)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.cli import main
from facesys.datasets import people_in
from facesys.errors import FacesysError
from facesys.train.data import build_chips, degrade
from tests.conftest import data_path


def test_degrade_conditions():
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    low = degrade(chips, "lowres:24")
    assert low.shape == chips.shape and low.dtype == np.uint8
    assert np.abs(np.diff(low.astype(int), axis=2)).mean() < np.abs(np.diff(chips.astype(int), axis=2)).mean() / 3
    gray = degrade(chips, "gray")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert degrade(chips, None) is chips
    for condition in ("sepia", "lowres:x", "lowres:0"):  # lowres:x was a ValueError from int()
        with pytest.raises(FacesysError, match="unknown condition"):
            degrade(chips, condition)


def test_chips_are_built_once_and_cached(embedder, tmp_path):
    files = people_in(data_path("face_recognition"))
    assert "_multi_face" not in files and "barack_obama" in files
    first = build_chips(embedder, files, "largest", tmp_path)
    assert first.chips.shape[1:] == (150, 150, 3) and len(first) >= 20
    assert sorted(set(first.labels.tolist())) == list(range(len(first.names)))
    assert len(list(tmp_path.glob("chips-*.npz"))) == 1

    class CannotDetect:  # the second build must come from the cache, without detecting anything
        spec = embedder.spec
        detector = None

    second = build_chips(CannotDetect(), files, "largest", tmp_path)
    np.testing.assert_array_equal(first.chips, second.chips)
    assert first.paths == second.paths and first.names == second.names


def test_train_command_runs_and_its_checkpoint_works_as_a_model(tmp_path):
    fr = data_path("face_recognition")
    out = tmp_path / "run"
    pairs = tmp_path / "val.csv"
    pairs.write_text(
        "barack_obama/obama.jpg,barack_obama/obama2.jpg,1\nbarack_obama/obama.jpg,joe_biden/biden.jpg,0\n"
        "joe_biden/biden.jpg,joe_biden/biden2.jpg,1\nkit_harington/john1.jpeg,joe_biden/biden2.jpg,0\n"
    )
    args = [
        "train",
        str(fr),
        "--out",
        str(out),
        "--val-pairs",
        str(pairs),
        "--val-data",
        str(fr),
        "-P",
        "2",
        "-K",
        "2",
        "--micro-batch",
        "2",
        "--accum-steps",
        "2",
        "--steps",
        "2",
        "--freeze",
        "stage4",
        "--validate-every",
        "1",
        "--augment",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and any("val_accuracy" in r for r in rows)
    assert (out / "final.pt").is_file() and (out / "metrics.png").is_file()
    face = str(fr / "joe_biden" / "biden.jpg")
    embedded = CliRunner().invoke(main, ["--model", str(out / "final.pt"), "embed", "--json", face])
    assert embedded.exit_code == 0, embedded.output
    assert json.loads(embedded.stdout)["model"].startswith("final@")


@pytest.mark.parametrize("mode", ["naive", "exact"])
def test_train_command_fine_tunes_sface_on_its_own_chips(tmp_path, mode):
    fr = data_path("face_recognition")
    out = tmp_path / "run"
    args = ["train", "--model", "sface", str(fr), "--out", str(out), "-P", "2", "-K", "2", "--micro-batch", "2"]
    args += ["--accum-steps", "2", "--accum-mode", mode, "--steps", "2", "--freeze", "stage3", "--max-photos", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "training stage4, head" in result.output
    (cache,) = (out / "chip-cache").glob("chips-*.npz")
    assert np.load(cache)["chips"].shape[1:] == (112, 112, 3)  # aligned for SFace, not dlib's 150
    face = str(fr / "joe_biden" / "biden.jpg")
    embedded = CliRunner().invoke(main, ["--model", str(out / "final.pt"), "embed", "--json", face])
    base = CliRunner().invoke(main, ["--model", "sface", "embed", "--json", face])
    assert embedded.exit_code == 0 and base.exit_code == 0, embedded.output + base.output
    tuned, pretrained = json.loads(embedded.stdout), json.loads(base.stdout)
    assert tuned["model"].startswith("final@") and tuned["model"] != pretrained["model"]


def test_bad_batch_geometry_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(data_path("face_recognition")),
            "--out",
            str(tmp_path),
            "-P",
            "3",
            "-K",
            "2",
            "--micro-batch",
            "4",
            "--accum-steps",
            "2",
        ],
    )
    assert result.exit_code == 2 and "must equal" in result.output
