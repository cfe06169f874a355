"""The trainer: checks of its configuration, exact resume, checkpoints, and 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facesys.errors import FacesysError
from facesys.train.data import ChipSet
from facesys.train.trainer import FINAL_FILE, LOG_FILE, STATE_FILE, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]


def synthetic_chips(people: int = 6, per_person: int = 4, seed: int = 0, size: int = 150) -> ChipSet:
    """Random size x size chips whose colour tint depends on the person (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(people), per_person)
    tint = rng.integers(0, 120, (people, 1, 1, 3))
    chips = (rng.integers(0, 136, (len(labels), size, size, 3)) + tint[labels]).astype(np.uint8)
    return ChipSet(chips, labels, [f"p{i}" for i in range(people)], [f"img{i}.jpg" for i in range(len(labels))])


def config(out: Path, **changes) -> TrainConfig:
    base = dict(
        out=str(out),
        model="dlib-resnet",  # the synthetic chips are its 150x150
        people=4,
        per_person=2,
        micro_batch=4,
        accum_steps=2,
        steps=4,
        freeze="stage4",
        lr=1e-3,
        checkpoint_every=2,
        validate_every=0,
        accum_mode="exact",
    )
    return TrainConfig(**(base | changes))


def parameters(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters() if p.requires_grad])


def test_batch_geometry_is_checked(tmp_path):
    with pytest.raises(FacesysError, match="must equal"):
        Trainer(config(tmp_path, micro_batch=3), synthetic_chips())
    with pytest.raises(FacesysError, match="multiple of K"):
        Trainer(config(tmp_path, people=3, per_person=4, micro_batch=6, accum_steps=2), synthetic_chips())
    with pytest.raises(FacesysError, match="unknown stage"):
        Trainer(config(tmp_path, freeze="stage9"), synthetic_chips())


def test_freezing_leaves_early_stages_untouched(tmp_path):
    trainer = Trainer(config(tmp_path, steps=1), synthetic_chips())
    stem_before = trainer.model.backbone.stem[0].weight.clone()
    head_before = trainer.model.backbone.head.weight.clone()
    trainer.run()
    assert torch.equal(trainer.model.backbone.stem[0].weight, stem_before)
    assert not torch.equal(trainer.model.backbone.head.weight, head_before)
    assert trainer.trainable == ["stage5", "head"]


@pytest.mark.parametrize("mode", ["naive", "exact"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, mode):
    data = synthetic_chips()
    straight = Trainer(config(tmp_path / "a", accum_mode=mode, augment=True), data)
    straight.run()
    interrupted = Trainer(config(tmp_path / "b", accum_mode=mode, augment=True), data)
    interrupted.run(until=2)
    assert json.loads((tmp_path / "b" / LOG_FILE).read_text().splitlines()[-1])["step"] == 2
    resumed = Trainer(config(tmp_path / "b", accum_mode=mode, augment=True), data)
    assert resumed.resume() and resumed.step == 2
    resumed.run()
    torch.testing.assert_close(parameters(resumed), parameters(straight), rtol=0, atol=0)
    assert (tmp_path / "b" / FINAL_FILE).is_file() and (tmp_path / "b" / STATE_FILE).is_file()


def test_final_checkpoint_loads_as_a_model_everywhere(tmp_path):
    from facesys.models import create_model

    trainer = Trainer(config(tmp_path, steps=2), synthetic_chips())
    final = trainer.run()
    model = create_model(str(final))
    assert model.spec.architecture == "dlib-resnet" and model.spec.input_size == 150
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trainer.model.eval()(x))
    assert (tmp_path / "metrics.png").is_file()


@pytest.mark.parametrize("mode", ["naive", "exact"])
def test_sface_fine_tunes_and_its_checkpoint_is_a_new_model(tmp_path, mode):
    from facesys.models import create_model

    data = synthetic_chips(size=112)
    trainer = Trainer(config(tmp_path / "a", model="sface", freeze="stage3", steps=2, accum_mode=mode), data)
    stage3 = dict(trainer.model.backbone.named_stages())["stage3"]
    frozen_before = next(stage3.parameters()).clone()
    head_before = trainer.model.backbone.head[3].weight.clone()
    final = trainer.run()
    assert trainer.trainable == ["stage4", "head"]
    assert torch.equal(next(stage3.parameters()), frozen_before)
    assert not torch.equal(trainer.model.backbone.head[3].weight, head_before)
    model = create_model(str(final))
    base = create_model("sface")
    assert (model.spec.architecture, model.spec.input_size, model.spec.template) == ("sface", 112, base.spec.template)
    assert model.model_id.startswith("final@") and model.model_id != base.model_id
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trainer.model.eval()(x))
        assert model(x).shape == (2, 128)
    # a checkpoint fine-tuned again names the registered model it came from, and loads
    again = Trainer(config(tmp_path / "b", model=str(final), freeze="stage3", steps=1, accum_mode=mode), data).run()
    assert torch.load(again, weights_only=True)["base_model"] == "sface"
    assert create_model(str(again)).spec.base == "sface"


def test_chips_of_another_size_than_the_model_takes_are_refused(tmp_path):
    with pytest.raises(FacesysError, match=r"chips are 150x150 pixels; model sface takes 112x112"):
        Trainer(config(tmp_path, model="sface"), synthetic_chips(size=150))


def test_validation_logs_accuracy_and_keeps_the_best(tmp_path):
    from facesys.evaluate.pairs import Pair

    data = synthetic_chips()
    pairs = [
        Pair(Path(data.paths[i]), Path(data.paths[j]), bool(data.labels[i] == data.labels[j]), 0)
        for i in range(0, 24, 3)
        for j in range(1, 24, 5)
        if i != j
    ]
    trainer = Trainer(config(tmp_path, steps=2, validate_every=1), data, val_chips=data, val_pairs=pairs)
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows if "val_accuracy" in r] == [1, 2]
    assert (tmp_path / "best.pt").is_file()


WORKER = """
import sys, torch, numpy as np
sys.path.insert(0, {root!r})
from tests.train.test_trainer import synthetic_chips, config, parameters
from facesys.train.trainer import Trainer
t = Trainer(config({out!r}, steps=1, micro_batch={micro}, accum_steps=2, optimizer="sgd"), synthetic_chips())
t.run()
if t.rank == 0:
    torch.save(parameters(t), {result!r})
"""


def test_two_process_ddp_matches_one_process(tmp_path):
    # SGD: Adam's first step is about lr * sign(gradient), which turns float rounding in
    # near-zero gradients (sums in another order) into full-size differences.
    single = Trainer(config(tmp_path / "single", steps=1, optimizer="sgd"), synthetic_chips())
    single.run()
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), out=str(tmp_path / "ddp"), micro=2, result=str(tmp_path / "ddp.pt")))
    env = os.environ | {"FACESYS_DDP_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port on loopback for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "ddp.pt", weights_only=True), parameters(single), rtol=0, atol=1e-6)
    initial = parameters(Trainer(config(tmp_path / "fresh", steps=1), synthetic_chips()))
    assert (parameters(single) - initial).abs().max() > 5e-5  # the step is far larger than the tolerance
