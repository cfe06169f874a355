"""The fused model ``dlib+sface``: one chip, each member's own view of it, and a distance that orders
pairs exactly as the fused z-score does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesys.errors import ModelError
from facesys.models import create_model, get_model_spec
from facesys.models.dlib_sface import MEMBERS
from facesys.models.fusion import Member, fit_statistics, member_transform, member_vectors
from facesys.vision.embed import Embedder
from tests.conftest import data_path

PEOPLE = ("Hu_Jintao", "Michelle_Kwan", "Serena_Williams", "Yao_Ming")


@pytest.fixture(scope="module")
def photos() -> list:
    lfw = data_path("lfw")
    return [p for person in PEOPLE for p in sorted((lfw / person).glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def fused() -> Embedder:
    return Embedder("dlib+sface")


def embeddings(embedder: Embedder, photos) -> np.ndarray:
    return np.stack([r.faces[0].embedding for r in embedder.faces(photos, select="center")])


def test_each_member_sees_its_own_chip_in_the_canvas(fused, photos):
    """A member's vector inside the fused one matches the member run alone on its native chip."""
    parts = member_vectors(embeddings(fused, photos), [128, 128])
    for member, part in zip(MEMBERS, parts, strict=True):
        alone = embeddings(Embedder(member.name, detector=fused.detector), photos)
        assert (part * alone).sum(axis=1).min() > 0.999, member.name


def test_fused_distance_is_the_fused_z_score(fused, photos):
    vectors = embeddings(fused, photos).astype(np.float64)
    dlib, sface = member_vectors(vectors, [128, 128])
    weights = [m.weight / m.std for m in MEMBERS]
    i, j = np.triu_indices(len(vectors), k=1)
    z = sum(w * ((x[i] * x[j]).sum(1) - m.mean) for w, x, m in zip(weights, (dlib, sface), MEMBERS, strict=True))
    distances = np.linalg.norm(vectors[i] - vectors[j], axis=1)
    # d^2 = 2 - 2 * (sum w_m c_m) / sum w_m: an exact decreasing function of the fused score
    expected = 2 - 2 * (z + sum(w * m.mean for w, m in zip(weights, MEMBERS, strict=True))) / sum(weights)
    np.testing.assert_allclose(distances**2, expected, atol=1e-5)
    assert np.all(np.diff(distances[np.argsort(-z)]) >= -1e-6)  # higher score, smaller distance


def test_the_spec_describes_the_canvas_and_the_concatenation():
    spec = get_model_spec("dlib+sface")
    assert spec.embedding_dim == 256 and spec.input_size == 256 and len(spec.template) == 5


def test_member_transform_maps_member_landmarks_onto_the_canvas_template():
    member = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    canvas = member * 2 + 10
    theta = member_transform(member, 100, canvas, 256)
    # member pixel (30, 40) -> canvas pixel (70, 90), in normalised coordinates
    x = np.array([(2 * 30 + 1) / 100 - 1, (2 * 40 + 1) / 100 - 1, 1])
    assert np.allclose(theta @ x, [(2 * 70 + 1) / 256 - 1, (2 * 90 + 1) / 256 - 1], atol=1e-5)


def test_statistics_of_pairs_and_member_vectors():
    vectors = np.eye(3)
    assert fit_statistics(vectors) == (0.0, 0.0)
    fused = np.concatenate([np.eye(2) * 3, np.eye(2)], axis=1)
    parts = member_vectors(fused, [2, 2])
    assert np.allclose(parts[0], np.eye(2)) and np.allclose(parts[1], np.eye(2))
    assert Member("x", weight=0.5, mean=0.1, std=0.5).scale == 1.0


def test_a_fused_model_refuses_one_weights_file_and_fine_tuning():
    with pytest.raises(ModelError, match="each member's own weights"):
        create_model("dlib+sface", weights="some.onnx")
    model = create_model("dlib+sface")
    with pytest.raises(ModelError, match="cannot be fine-tuned"):
        model.backbone.named_stages()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 256, 256))
    assert out.shape == (2, 256) and torch.allclose(out.norm(dim=1), torch.ones(2))
