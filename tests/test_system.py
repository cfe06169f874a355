"""FaceSystem end to end on real faces (LFW, face_recognition's photos); skipped without the data.

People are chosen by a seeded rule from LFW people with at least 4 photos who are in neither
pairsDevTrain nor pairsDevTest (the pairs the default thresholds were calibrated on). Each
person's last photo is held back as the probe; the first 3 photos that pass the enrollment
quality gates among the others are enrolled.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest

from facesys.errors import GalleryError, ImageError, NoFaceError
from facesys.evaluate.pairs import people_in_pairs, read_lfw_pairs
from facesys.gallery.gallery import Reembedded
from tests.conftest import data_path, facenet_pytorch

SEED = 20261127


def centre_face(results, shape=(250, 250)):
    """The identification of the face nearest the image centre (LFW's labelled person)."""
    h, w = shape
    return min(results, key=lambda r: ((r.box[0] + r.box[2]) / 2 - w / 2) ** 2 + ((r.box[1] + r.box[3]) / 2 - h / 2) ** 2)


@pytest.fixture(scope="module")
def lfw_people():
    lfw = data_path("lfw")
    calibration = people_in_pairs(read_lfw_pairs(lfw / "pairsDevTrain.txt")) | people_in_pairs(
        read_lfw_pairs(lfw / "pairsDevTest.txt")
    )
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(lfw.iterdir()) if p.is_dir() and p.name not in calibration}
    rng = random.Random(SEED)
    enrolled = rng.sample(sorted(n for n, files in people.items() if len(files) >= 4), 20)
    strangers = rng.sample(sorted(n for n in people if n not in enrolled), 50)
    return people, enrolled, strangers


@pytest.fixture(scope="module")
def lfw_system(tmp_path_factory, lfw_people, embedder):
    from facesys.system import FaceSystem

    people, enrolled, _ = lfw_people
    system = FaceSystem(tmp_path_factory.mktemp("lfw") / "gallery", embedder=embedder)
    for name in enrolled:
        accepted = 0
        for photo in people[name][:-1]:
            accepted += system.enroll(name, [photo]).count("enrolled")
            if accepted == 3:
                break
    counts = dict(system.gallery.people())
    assert len(counts) == 20 and sum(counts.values()) >= 57, counts
    return system


def test_closed_and_open_set_identification(lfw_system, lfw_people):
    people, enrolled, _ = lfw_people
    rank1 = named = 0
    for name in enrolled:
        results = lfw_system.identify(people[name][-1], top_k=5)
        face = centre_face(results)
        rank1 += face.candidates[0].name == name
        named += face.name == name
    assert rank1 / len(enrolled) >= 0.95, f"closed-set rank-1 {rank1}/20"
    assert named / len(enrolled) >= 0.85, f"open-set named correctly {named}/20"


def test_strangers_are_unknown(lfw_system, lfw_people):
    people, _, strangers = lfw_people
    unknown = 0
    for name in strangers:
        results = lfw_system.identify(people[name][0])
        unknown += not results or centre_face(results).name is None
    assert unknown / len(strangers) >= 0.90, f"{unknown}/50 strangers answered unknown"


def test_open_set_threshold_is_stricter_than_verify(lfw_system):
    faces = sum(count for _, count in lfw_system.gallery.people())
    threshold = lfw_system.policy().identify(faces, lfw_system.gallery.calibration())
    assert threshold.value < lfw_system.embedder.spec.threshold and threshold.source in ("model table", "gallery's own strangers")


def test_verify_on_lfw_pairs(embedder):
    from facesys.system import FaceSystem

    pairs = read_lfw_pairs(data_path("lfw", "pairs.txt"))
    rng = random.Random(SEED)
    chosen = rng.sample([p for p in pairs if p.same], 100) + rng.sample([p for p in pairs if not p.same], 100)
    system = FaceSystem(gallery=data_path("lfw") / "no-gallery-here", embedder=embedder)
    correct = 0
    for pair in chosen:
        with contextlib.suppress(NoFaceError):  # a photo without a face counts as an error
            correct += system.verify(pair.a, pair.b).verification.same == pair.same
    assert correct >= 194, f"{correct}/200 pairs decided correctly"


@pytest.fixture()
def small_system(tmp_path, embedder):
    from facesys.system import FaceSystem

    system = FaceSystem(tmp_path / "gallery", embedder=embedder)
    return system


def obama_biden(system):
    fr = data_path("face_recognition")
    system.enroll("Barack Obama", [fr / "barack_obama" / "obama.jpg", fr / "barack_obama" / "obama2.jpg"])
    system.enroll("Joe Biden", sorted((fr / "joe_biden").glob("*.jpg")))


def test_group_photos_name_both(small_system):
    obama_biden(small_system)
    multi = data_path("face_recognition", "_multi_face")
    for photo in ("two_people.jpg", "obama_and_biden.jpg"):
        names = [r.name for r in small_system.identify(multi / photo)]
        assert {"Barack Obama", "Joe Biden"} <= set(names), (photo, names)
    six = small_system.identify(data_path("facenet_pytorch", "_multi_face", "multiface.jpg"))
    assert len(six) == 6
    areas = [(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) for r in six]
    assert areas == sorted(areas, reverse=True)


def test_gallery_survives_restart_removal_and_reenrollment(small_system, embedder):
    from facesys.system import FaceSystem

    obama_biden(small_system)
    photo = data_path("face_recognition", "_multi_face", "two_people.jpg")
    reopened = FaceSystem(small_system.gallery, embedder=embedder)
    assert dict(reopened.gallery.people()) == {"Barack Obama": 2, "Joe Biden": 2}
    assert reopened.gallery.remove("Joe Biden") == 2
    assert [r.name for r in reopened.identify(photo)].count("Joe Biden") == 0
    again = reopened.enroll("Joe Biden", sorted(data_path("face_recognition", "joe_biden").glob("*.jpg")))
    assert again.count("enrolled") == 2
    assert "Joe Biden" in [r.name for r in reopened.identify(photo)]
    duplicate = reopened.enroll("Joe Biden", sorted(data_path("face_recognition", "joe_biden").glob("*.jpg")))
    assert duplicate.count("duplicate") == 2 and dict(reopened.gallery.people())["Joe Biden"] == 2
    other_name = reopened.enroll("Somebody Else", [data_path("face_recognition", "joe_biden") / "biden.jpg"])
    assert other_name.results[0].status == "rejected" and "already enrolled as 'Joe Biden'" in other_name.results[0].reason


def test_enrollment_rejections_have_reasons(small_system):
    bad = data_path("bad_inputs")
    report = small_system.enroll(
        "Test Person",
        [
            bad / "no_face" / "coffee.png",
            data_path("facenet_pytorch", "_multi_face", "multiface.jpg"),
            bad / "odd_format" / "truncated.jpg",
        ],
    )
    outcome = {r.source.rsplit("/", 1)[-1]: (r.status, r.reason) for r in report.results}
    assert outcome["coffee.png"] == ("rejected", "no face found")
    assert outcome["multiface.jpg"][0] == "rejected" and "faces of similar size" in outcome["multiface.jpg"][1]
    assert outcome["truncated.jpg"][0] == "error" and "truncated.jpg" in outcome["truncated.jpg"][1]
    assert small_system.gallery.people() == []


def test_confusing_enrollment_photo_warns(small_system):
    obama_biden(small_system)
    report = small_system.enroll("Not Obama", [data_path("face_recognition", "barack_obama") / "obama_small.jpg"])
    assert report.results[0].status == "enrolled"
    assert "looks more like 'Barack Obama'" in report.results[0].warning


def test_identify_many_answers_as_identify_one_by_one(small_system):
    from facesys.vision.images import load_image

    obama_biden(small_system)
    photos = [
        data_path("face_recognition", "_multi_face", "two_people.jpg"),
        data_path("bad_inputs", "no_face", "coffee.png"),
        data_path("face_recognition", "barack_obama", "obama3.jpg"),
    ]
    together = small_system.identify_many([load_image(p) for p in photos])
    alone = [small_system.identify(p) for p in photos]
    assert [len(faces) for faces in together] == [2, 0, 1]
    for many, one in zip(together, alone, strict=True):
        # the same answers; floats to the last bits only when the thread count is the same (it adapts to
        # the machine's load per batch, and sums then run in another order)
        assert [f.name for f in many] == [f.name for f in one]
        np.testing.assert_allclose([f.box for f in many], [f.box for f in one], atol=1e-3)
        np.testing.assert_allclose([f.distance for f in many], [f.distance for f in one], atol=1e-5)


def test_forcing_the_index_kind_applies_at_once(small_system):
    obama_biden(small_system)
    photo = data_path("face_recognition", "_multi_face", "two_people.jpg")
    assert small_system.gallery.index_info()["kind"] == "flat"
    assert small_system.gallery.index_info("hnsw")["kind"] == "hnsw"
    assert {f.name for f in small_system.identify(photo)} == {"Barack Obama", "Joe Biden"}
    assert small_system.gallery.index_info("auto")["kind"] == "flat"


def test_confusion_warning_sees_faces_enrolled_earlier_in_the_same_call(small_system):
    obama = data_path("face_recognition", "barack_obama")
    report = small_system.enroll_many([("Barack Obama", obama / "obama.jpg"), ("Not Obama", obama / "obama_small.jpg")])
    assert [r.status for r in report.results] == ["enrolled", "enrolled"]
    assert report.results[0].warning is None
    assert "looks more like 'Barack Obama'" in report.results[1].warning


def test_calibrated_gallery_threshold_changes_verify(small_system):
    obama_biden(small_system)
    fr = data_path("face_recognition")
    a, b = fr / "barack_obama" / "obama.jpg", fr / "barack_obama" / "obama3.jpg"
    before = small_system.verify(a, b).verification
    assert before.same and before.threshold_source == "model default"
    small_system.set_threshold("verify", before.distance * 0.5)
    after = small_system.verify(a, b).verification
    assert not after.same and after.threshold_source == "gallery"


def test_another_model_is_refused_with_the_reindex_hint(small_system, tmp_path):
    import torch

    InceptionResnetV1 = facenet_pytorch().InceptionResnetV1

    from facesys.system import FaceSystem

    obama_biden(small_system)
    weights = tmp_path / "random-facenet.pt"
    torch.save(InceptionResnetV1(classify=False, num_classes=8631).state_dict(), weights)
    other = FaceSystem(small_system.gallery, model="facenet-vggface2", weights=str(weights))
    with pytest.raises(
        GalleryError, match="built with dlib-resnet@.*not facenet-vggface2.*use model .dlib-resnet.*gallery reindex"
    ):
        other.identify(data_path("face_recognition", "_multi_face", "two_people.jpg"))


def test_bad_files_change_nothing(small_system):
    obama_biden(small_system)
    before = small_system.gallery.stats()
    for bad in (
        data_path("bad_inputs", "odd_format", "truncated.jpg"),
        data_path("bad_inputs", "odd_format", "multipage_rgb.tif"),
    ):
        with pytest.raises(ImageError, match=bad.name):
            small_system.identify(bad)
        with pytest.raises(ImageError, match=bad.name):
            small_system.verify(bad, bad)
        assert small_system.enroll("Barack Obama", [bad]).results[0].status == "error"
    after = small_system.gallery.stats()
    assert {k: v for k, v in after.items() if k != "database_bytes"} == {k: v for k, v in before.items() if k != "database_bytes"}


def test_odd_formats_of_a_real_face_verify_as_the_same_person(small_system, tmp_path):
    from PIL import Image

    original = data_path("lfw", "Colin_Powell", "Colin_Powell_0001.jpg")
    rgb = Image.open(original).convert("RGB")
    variants = {
        "gray16.png": Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257),
        "palette.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        "rgba.png": rgb.convert("RGBA"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "gray.png": rgb.convert("L"),
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned; displayed upright after a 90-degree turn
    rgb.rotate(-90, expand=True).save(tmp_path / "exif.jpg", exif=exif, quality=95)
    for name in [*variants, "exif.jpg"]:
        result = small_system.verify(original, tmp_path / name)
        assert result.verification.same, (name, result.verification.distance)


def test_reindex_switches_model_from_stored_crops(small_system, tmp_path):
    import torch

    InceptionResnetV1 = facenet_pytorch().InceptionResnetV1

    from facesys.system import FaceSystem

    obama_biden(small_system)
    photo = data_path("face_recognition", "_multi_face", "two_people.jpg")
    before = sorted(r.name for r in small_system.identify(photo))
    weights = tmp_path / "random-facenet.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(classify=False, num_classes=8631).state_dict(), weights)
    other = FaceSystem(small_system.gallery, weights=str(weights))
    assert other.reindex("facenet-vggface2") == Reembedded(faces=4, library_faces=0)
    assert other.gallery.stats()["model_id"].startswith("facenet-vggface2@") and other.gallery.stats()["dim"] == 512
    back = FaceSystem(small_system.gallery)
    assert back.reindex("dlib-resnet") == Reembedded(faces=4, library_faces=0)
    assert sorted(r.name for r in back.identify(photo)) == before


def test_a_first_enrollment_without_usable_photo_creates_no_gallery(small_system):
    report = small_system.enroll("Nobody", [data_path("bad_inputs", "no_face", "coffee.png")])
    assert report.count("rejected") == 1
    assert not small_system.gallery.location.exists()
