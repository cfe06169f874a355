"""The model a driver ships to its actors: rebuilt from the shipped weights alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facesys.distributed.shipping import pack, unpack
from facesys.models import _registry, get_model_spec
from tests.conftest import data_path

pytest.importorskip("safetensors")


def test_an_actor_builds_the_drivers_model_from_the_shipped_weights_without_reading_any_file(monkeypatch):
    from facesys.vision.embed import Embedder

    photo = data_path("lfw", "Colin_Powell", "Colin_Powell_0001.jpg")
    driver = Embedder("sface")
    shipped, weights = pack(driver)
    assert isinstance(weights, bytes) and weights[8:9] == b"{"  # safetensors: header length, JSON header; no pickle

    def nowhere(*_):
        raise AssertionError("a worker must not load weights from disk")

    monkeypatch.setitem(_registry._REGISTRY, "sface", replace(get_model_spec("sface"), load_weights=nowhere))
    actor = unpack(shipped, weights, "cpu")
    assert actor.model_id == driver.model_id and actor.detector.name == driver.detector.name
    (mine,), (theirs,) = driver.faces([photo]), actor.faces([photo])
    assert len(mine.faces) == len(theirs.faces) >= 1
    vectors = [np.stack([face.embedding for face in result.faces]) for result in (mine, theirs)]
    np.testing.assert_allclose(*vectors, atol=1e-6)
