"""NMS without torchvision (the CPU-only set-up): the plain-torch NMS keeps what torchvision's keeps."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from facesys.vision import nms as nms_module
from facesys.vision.images import load_image
from facesys.vision.nms import batched_nms, torch_nms
from tests.conftest import data_path


def _random_boxes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes with every third seed on integer corners (IoUs hit thresholds exactly), tied scores,
    empty, zero-area and inverted boxes."""
    generator = torch.Generator().manual_seed(seed)
    count = int(torch.randint(0, 700, (1,), generator=generator))
    corner = torch.rand(count, 2, generator=generator) * 100
    size = torch.rand(count, 2, generator=generator) * 40
    if seed % 3 == 0:
        corner, size = (corner.round(), (size / 4).round() * 4)
    if seed % 4 == 0:
        size[::5] = 0
    if seed % 5 == 0:
        size[::7] *= -1
    scores = torch.rand(count, generator=generator)
    if seed % 2 == 0:
        scores = (scores * 5).round() / 5
    return torch.cat([corner, corner + size], 1), scores


def test_torch_nms_keeps_what_torchvision_keeps():
    reference = pytest.importorskip("torchvision.ops").nms
    for seed in range(120):
        boxes, scores = _random_boxes(seed)
        for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
            assert torch.equal(torch_nms(boxes, scores, threshold), reference(boxes, scores, threshold)), (seed, threshold)


def test_torch_nms_on_more_boxes_than_one_block(monkeypatch):
    reference = pytest.importorskip("torchvision.ops").nms
    monkeypatch.setattr(nms_module, "TORCH_NMS_ROWS", 7)
    for seed in range(6):
        boxes, scores = _random_boxes(seed)
        assert torch.equal(torch_nms(boxes, scores, 0.5), reference(boxes, scores, 0.5)), seed


def _hide_torchvision(monkeypatch) -> None:
    """facesys as it runs where torchvision is not installed (sys.modules None: find_spec and import fail)."""
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)
    nms_module._load_nms_operator.cache_clear()


@pytest.fixture
def without_torchvision(monkeypatch):
    _hide_torchvision(monkeypatch)
    yield
    monkeypatch.undo()
    nms_module._load_nms_operator.cache_clear()


def test_without_torchvision_nms_falls_back_to_torch(without_torchvision):
    assert nms_module._nms_operator() is torch_nms
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0, 1]), 0.5).tolist() == [3, 0, 2]


def test_a_torchvision_without_its_operator_falls_back_to_torch(monkeypatch):
    """A torchvision built for another torch fails to import with "operator torchvision::nms does not exist"."""

    class BrokenTorchvision(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(nms_module.importlib.util, "find_spec", lambda name, *args: None)
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.ops", BrokenTorchvision("torchvision.ops"))
    nms_module._load_nms_operator.cache_clear()
    try:
        assert nms_module._nms_operator() is torch_nms
    finally:
        nms_module._load_nms_operator.cache_clear()


def test_detection_without_torchvision_finds_the_same_faces(embedder, without_torchvision, monkeypatch):
    images = [
        load_image(data_path("face_recognition", "barack_obama", "obama.jpg")),
        load_image(data_path("face_recognition", "_multi_face", "two_people.jpg")),
    ]
    ours = embedder.detector.detect(images)
    assert nms_module._nms_operator() is torch_nms
    monkeypatch.undo()  # torchvision's operator back, where it is installed
    nms_module._load_nms_operator.cache_clear()
    theirs = embedder.detector.detect(images)
    assert [len(faces) for faces in ours] == [1, 2]
    for a, b in zip(ours, theirs, strict=True):
        assert [(f.box.tolist(), f.landmarks.tolist(), f.score) for f in a] == [
            (f.box.tolist(), f.landmarks.tolist(), f.score) for f in b
        ]
