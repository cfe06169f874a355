"""One face pipeline: every entry point (embed CLI, enroll, verify, identify, evaluation, training
data) gives the same embedding for the same photo; face selection and error policies.

"The same" is to 1e-6 per value: batches of other sizes (and other thread counts) let the CPU
kernels sum in another order, which moves the last bits of a float32 (measured: 1.2e-7 with one
thread, a few 1e-7 with two), nothing more; a distance between two such embeddings then moves by
up to ~2e-5, far below any threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from facesys.errors import FacesysError, ImageError
from tests.conftest import data_path


@pytest.fixture(scope="module")
def photos() -> list:
    lfw = data_path("lfw")
    return [lfw / person / f"{person}_0002.jpg" for person in ("Colin_Powell", "Tony_Blair", "Hans_Blix", "Gerhard_Schroeder")]


SAME = {"rtol": 0, "atol": 1e-6}


@pytest.fixture(scope="module")
def reference(embedder, photos) -> np.ndarray:
    """(4, 128) embeddings of the largest face of each photo, through Embedder.faces."""
    return np.stack([result.faces[0].embedding for result in embedder.faces(photos, select="largest")])


def test_every_entry_point_gives_the_same_embeddings(tmp_path, embedder, photos, reference):
    from facesys.cli import main
    from facesys.evaluate.experiments import EmbeddingCache
    from facesys.gallery.store.sqlite import SQLiteStore
    from facesys.system import FaceSystem
    from facesys.train.data import build_chips

    # facesys embed --json (its own Embedder, batched)
    out = CliRunner().invoke(main, ["--model", embedder.source, "--detector", "mtcnn", "embed", "--json", *map(str, photos)])
    assert out.exit_code == 0, out.output
    embedded = np.array([image["faces"][0]["embedding"] for image in json.loads(out.output)["images"]], np.float32)
    np.testing.assert_allclose(embedded, reference, **SAME)

    # enroll: the stored embeddings
    system = FaceSystem(tmp_path / "g", embedder=embedder)
    report = system.enroll_many([(f"person {i}", photo) for i, photo in enumerate(photos)])
    assert report.count("enrolled") == 4, [r.reason for r in report.results]
    with SQLiteStore(tmp_path / "g") as store:
        np.testing.assert_allclose(store.embeddings()[1], reference, **SAME)

    # identify: each photo finds its own enrolled face at distance 0. FAISS computes the squared
    # distance as |x|^2 + |y|^2 - 2xy in float32, whose rounding (a few 1e-7) becomes up to ~5e-4
    # after the square root: far below any threshold (0.3-0.4).
    for i, photo in enumerate(photos):
        (answer,) = system.identify(photo)
        assert answer.name == f"person {i}" and answer.distance < 1e-3

    # verify: the distance between the two embeddings
    result = system.verify(photos[0], photos[1])
    assert result.verification.distance == pytest.approx(float(np.linalg.norm(reference[0] - reference[1])), abs=1e-4)

    # evaluation
    cache = EmbeddingCache(embedder, face="largest")
    np.testing.assert_allclose(np.stack([cache.embed(photos)[p] for p in photos]), reference, **SAME)

    # training data: chips, then the network
    chips = build_chips(embedder, {f"p{i}": [photo] for i, photo in enumerate(photos)}, "largest", None)
    np.testing.assert_allclose(embedder.embed_chips(chips.chips), reference, **SAME)


def test_face_selection(embedder):
    group = data_path("face_recognition", "_multi_face", "obama_and_biden.jpg")
    everyone, largest, centre = (embedder.faces([group], select=rule)[0] for rule in ("all", "largest", "center"))
    assert everyone.found == len(everyone.faces) == 3
    assert len(largest.faces) == len(centre.faces) == 1 and largest.found == 3
    np.testing.assert_allclose(largest.faces[0].embedding, everyone.faces[0].embedding, **SAME)
    with pytest.raises(FacesysError, match="select='biggest'"):
        embedder.faces([group], select="biggest")


def test_errors_raise_or_are_collected_in_place(embedder, photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        embedder.faces([photos[0], bad])
    results = embedder.faces([photos[0], bad, photos[1]], errors="collect")
    assert [r.error is None for r in results] == [True, False, True]
    assert "bad.jpg" in results[1].error and results[1].faces == []
    assert len(results[2].faces) >= 1


def test_a_stored_crop_gives_back_the_chip(embedder, photos):
    from facesys.vision.crop import face_crop

    result = embedder.faces([photos[0]], select="largest", keep_chips=True)[0]
    face = result.faces[0]
    jpeg, (x0, y0, scale) = face_crop(result.image, face.box)
    again = embedder.embed_crops([(jpeg, [x0, y0, scale], face.landmarks.tolist())])[0]
    assert float(again @ face.embedding) > 0.99  # a JPEG round trip of the crop, nothing more


def test_photo_workers_give_the_same_answers_in_order(embedder, photos, tmp_path, monkeypatch):
    """Several photo workers (facesys/threads.py) split each batch: same faces, same order, errors in
    place, and every worker ran its photos on one thread."""
    from facesys import threads

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    items = [photos[0], bad, *photos[1:], photos[0]]
    alone = embedder.faces(items, errors="collect", batch_size=3)
    seen = []
    run = embedder._run

    def counting_run(pending, *options):
        seen.append(threads.choose_threads())
        return run(pending, *options)

    monkeypatch.setattr(embedder, "_run", counting_run)
    monkeypatch.setattr(threads, "fixed_count", lambda: 3)
    shared = list(embedder.face_batches(enumerate(items), errors="collect", batch_size=3))
    assert [len(batch) for batch in shared] == [3, 3]  # the caller's batches, whoever ran them
    assert [tag for batch in shared for tag, _ in batch] == list(range(6))
    together = [result for batch in shared for _, result in batch]
    assert [r.source for r in together] == [r.source for r in alone]
    assert "bad.jpg" in together[1].error and together[1].faces == []
    for a, b in zip(alone, together, strict=True):
        assert len(a.faces) == len(b.faces)
        for fa, fb in zip(a.faces, b.faces, strict=True):
            # a photo detected alone rather than in a batch of 3 moves its landmarks by ~1e-4 px (the
            # batched convolutions sum in another order), its embedding by ~1e-5 per value
            np.testing.assert_allclose(fb.box, fa.box, atol=1e-2)
            np.testing.assert_allclose(fb.embedding, fa.embedding, rtol=0, atol=1e-4)
    assert len(seen) == 6 and set(seen) == {1}  # 2 batches x 3 parts, each on one thread
