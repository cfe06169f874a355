"""Detection on real photos: batches mixing sizes and empty images, group photos, large photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facesys.errors import FacesysError, ImageError
from facesys.vision.images import load_image
from tests.conftest import data_path


def test_batch_with_no_face_images_and_mixed_sizes(embedder):
    lfw = data_path("lfw")
    no_face = data_path("bad_inputs", "no_face")
    images = [
        load_image(lfw / "AJ_Cook" / "AJ_Cook_0001.jpg"),
        load_image(no_face / "brick.png"),
        load_image(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"),
        load_image(no_face / "coffee.png"),
        np.zeros((250, 250, 3), np.uint8),
    ]
    results = embedder.detector.detect(images)
    assert [len(r) >= 1 for r in results] == [True, False, True, False, False]
    face = results[0][0]
    assert face.box.shape == (4,) and face.landmarks.shape == (5, 2) and 0.9 < face.score <= 1.0
    x1, y1, x2, y2 = face.box
    assert (x1 <= face.landmarks[:, 0]).all() and (face.landmarks[:, 0] <= x2).all()
    assert (y1 <= face.landmarks[:, 1]).all() and (face.landmarks[:, 1] <= y2).all()
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert left_eye[0] < right_eye[0]


def test_group_photos_give_one_detection_per_face_largest_first(embedder):
    two = load_image(data_path("face_recognition", "_multi_face", "two_people.jpg"))
    six = load_image(data_path("facenet_pytorch", "_multi_face", "multiface.jpg"))
    faces_two, faces_six = embedder.detector.detect([two, six])
    assert len(faces_two) == 2
    assert len(faces_six) == 6
    sizes = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces_six]
    assert sizes == sorted(sizes, reverse=True)


def test_large_photo_is_downscaled_and_boxes_mapped_back(embedder):
    image = load_image(data_path("lfw", "AJ_Cook", "AJ_Cook_0001.jpg"))
    big = cv2.resize(image, (2500, 2500), interpolation=cv2.INTER_CUBIC)  # 10x, above max_side
    (small_face,), (big_face,) = embedder.detector.detect([image, big])
    np.testing.assert_allclose(big_face.box / 10.0, small_face.box, atol=4.0)
    np.testing.assert_allclose(big_face.landmarks / 10.0, small_face.landmarks, atol=3.0)


def test_low_confidence_detections_are_dropped():
    from facesys.vision.detect import FaceDetector

    image = load_image(data_path("face_recognition", "barack_obama", "obama.jpg"))
    permissive = FaceDetector(min_score=0.7).detect([image])[0]
    default = FaceDetector().detect([image])[0]
    assert len(permissive) == 2 and min(f.score for f in permissive) < 0.9  # a false face in the background
    assert len(default) == 1 and default[0].score > 0.99


def test_unknown_selection_and_non_uint8_pixels_are_typed_errors():
    """An unknown ``select`` was a ValueError (and passed unnoticed for a photo without faces); a
    float image a TypeError. The Embedder checks ``select`` with pick_faces before decoding."""
    from facesys.vision.detect import FaceDetector, pick_faces

    for faces in ([], [None]):
        with pytest.raises(FacesysError, match="select='nearest': choose from all, largest, center"):
            pick_faces(faces, (10, 10), "nearest")
    with pytest.raises(ImageError, match="uint8"):
        FaceDetector().detect([np.zeros((40, 40, 3), np.float32)])
