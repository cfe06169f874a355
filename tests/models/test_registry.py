"""The model registry: names, specs, checkpoints and clear errors."""

from __future__ import annotations

import sys

import pytest
import torch

from facesys.config import DEFAULT_MODEL
from facesys.errors import ModelError
from facesys.models import create_model, get_model_spec, list_models, save_checkpoint
from tests.conftest import facenet_pytorch


def test_builtin_models_are_listed_default_first():
    names = list_models()
    assert names[0] == DEFAULT_MODEL
    assert {"facenet-vggface2", "facenet-casia"} <= set(names)
    spec = get_model_spec("dlib-resnet")
    assert (spec.input_size, spec.embedding_dim, len(spec.template)) == (150, 128, 5)
    assert 0 < spec.threshold < 2


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'nope'.*dlib-resnet"):
        create_model("nope")


def test_dlib_model_is_cached_and_identified(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path))
    first = create_model("dlib-resnet")
    cached = list(tmp_path.glob("dlib-resnet-*.safetensors"))
    assert len(cached) == 1
    second = create_model("dlib-resnet")
    assert first.model_id == second.model_id and first.model_id.startswith("dlib-resnet@")
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))
        assert torch.allclose(first(x).norm(dim=1), torch.ones(2))


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path))
    create_model("dlib-resnet")
    (cached,) = tmp_path.glob("*.safetensors")
    cached.write_bytes(b"garbage")
    model = create_model("dlib-resnet")
    assert cached.stat().st_size > 1_000_000
    assert model.model_id.startswith("dlib-resnet@")


def test_facenet_offline_without_weights_explains_both_ways(monkeypatch, tmp_path):
    irv1 = facenet_pytorch().models.inception_resnet_v1

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(irv1, "download_url_to_file", no_network)
    with pytest.raises(ModelError, match="could not be downloaded.*weights file") as caught:
        create_model("facenet-vggface2")
    assert caught.value.parameter == "weights"  # the CLI adds "(--weights PATH)"


def test_facenet_from_a_local_weights_file(tmp_path):
    InceptionResnetV1 = facenet_pytorch().InceptionResnetV1

    reference = InceptionResnetV1(pretrained=None, classify=False, num_classes=8631).eval()
    weights = tmp_path / "vgg.pt"
    torch.save(reference.state_dict(), weights)
    model = create_model("facenet-vggface2", weights=str(weights))
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference((x * 255 - 127.5) / 128), dim=1)
        torch.testing.assert_close(model(x), expected)
    with pytest.raises(ModelError, match="missing.pt: weights file not found"):
        create_model("facenet-vggface2", weights=str(tmp_path / "missing.pt"))
    torch.save({"something": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="wrong.pt: not an InceptionResnetV1"):
        create_model("facenet-vggface2", weights=str(tmp_path / "wrong.pt"))


def test_checkpoint_round_trip(tmp_path):
    model = create_model("dlib-resnet")
    with torch.no_grad():
        model.backbone.head.weight.mul_(-1.0)  # a "fine-tuned" change the checkpoint must keep
    path = tmp_path / "tuned.pt"
    save_checkpoint(model, path, threshold=0.5)
    loaded = create_model(str(path))
    assert loaded.spec.threshold == 0.5 and loaded.spec.architecture == "dlib-resnet"
    assert loaded.spec.template == model.spec.template and loaded.model_id.startswith("tuned@")
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_bad_checkpoints_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="plain.pt: not a facesys checkpoint"):
        create_model(str(tmp_path / "plain.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="junk.pt: not a readable"):
        create_model(str(tmp_path / "junk.pt"))
    with pytest.raises(ModelError, match="nothing.pt: checkpoint file not found"):
        create_model(str(tmp_path / "nothing.pt"))


def test_checkpoints_are_loaded_without_unpickling_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "facesys-checkpoint", "x": Evil()}, f)
    with pytest.raises(ModelError, match="evil.pt"):
        create_model(str(path))


def test_facenet_without_torchvision_is_one_model_error(monkeypatch):
    """The CPU-only set-up has no torchvision, which facenet-pytorch's package imports."""
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(ModelError, match="facenet-vggface2: facenet-pytorch cannot be imported.*torchvision"):
        create_model("facenet-vggface2")
