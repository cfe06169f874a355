"""Embedder on real faces: unit vectors, same person closer than different, flip TTA."""

from __future__ import annotations

import numpy as np

from facesys.vision.images import load_image
from tests.conftest import data_path


def test_embeddings_are_unit_and_separate_people(embedder):
    lfw = data_path("lfw")
    files = [
        lfw / "George_W_Bush" / "George_W_Bush_0001.jpg",
        lfw / "George_W_Bush" / "George_W_Bush_0010.jpg",
        lfw / "Colin_Powell" / "Colin_Powell_0001.jpg",
        lfw / "Colin_Powell" / "Colin_Powell_0002.jpg",
    ]
    faces = embedder.embed(files)
    vectors = np.stack([f[0].embedding for f in faces])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    threshold = embedder.spec.threshold
    assert d[0, 1] < threshold and d[2, 3] < threshold
    assert min(d[0, 2], d[0, 3], d[1, 2], d[1, 3]) > threshold


def test_no_face_gives_an_empty_list_and_single_input_is_accepted(embedder):
    assert embedder.embed(data_path("bad_inputs", "no_face", "coffee.png")) == [[]]


def test_flip_augmentation_changes_little_and_stays_unit(embedder):
    from facesys.vision.embed import Embedder

    path = data_path("lfw", "Colin_Powell", "Colin_Powell_0001.jpg")
    flipped = Embedder(embedder.source, flip=True, detector=embedder.detector)
    plain_vector = embedder.embed(path)[0][0].embedding
    flip_vector = flipped.embed(path)[0][0].embedding
    assert abs(np.linalg.norm(flip_vector) - 1.0) < 1e-5
    assert 0.95 < float(plain_vector @ flip_vector) < 0.99999


def test_embed_chips_of_mirrored_chip_matches_flip_mode(embedder):
    from facesys.vision.embed import Embedder

    chip = embedder.chips(*_first_face(embedder))
    flipped = Embedder(embedder.source, flip=True, detector=embedder.detector)
    both = embedder.embed_chips(np.concatenate([chip, chip[:, :, ::-1]]))
    expected = (both[0] + both[1]) / np.linalg.norm(both[0] + both[1])
    np.testing.assert_allclose(flipped.embed_chips(chip)[0], expected, atol=1e-5)


def _first_face(embedder):
    from facesys.vision.images import load_image

    image = load_image(data_path("lfw", "AJ_Cook", "AJ_Cook_0001.jpg"))
    return image, embedder.detector.detect([image])[0][:1]


def test_reduced_precision_keeps_every_embedding_within_cosine_0999(embedder):
    from facesys.vision.embed import Embedder

    lfw = data_path("lfw")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:400:20]
    images = [load_image(next(person.iterdir())) for person in people]
    detections = embedder.detector.detect(images)
    chips = np.concatenate([embedder.chips(image, faces[:1]) for image, faces in zip(images, detections, strict=True)])
    assert len(chips) >= 15
    reference = Embedder(embedder.source, precision="fp32", detector=embedder.detector).embed_chips(chips)
    for precision in ("bf16", "fp16"):
        low = Embedder(embedder.source, precision=precision, detector=embedder.detector).embed_chips(chips)
        np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
        assert np.sum(low * reference, axis=1).min() >= 0.999
        assert not np.array_equal(low, reference)  # the network really ran in 16 bits


def test_auto_precision_is_fp32_on_the_cpu(embedder):
    assert embedder.precision == "fp32"
