"""Open-set answers: person scores, the gallery's own calibration, the photo behind each name, and
probes too poor to name anyone."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facesys.decide.calibration import MIN_PEOPLE, Calibration, fit
from facesys.decide.match import OpenSetThreshold, ThresholdPolicy
from facesys.decide.scoring import person_score, score_candidates, template
from facesys.vision.quality import ProbeRules, face_geometry, probe_problem
from tests.conftest import data_path

TABLE = ((1e-1, 0.50), (1e-2, 0.45), (1e-3, 0.40), (1e-4, 0.35), (1e-5, 0.30))


def unit(*rows) -> np.ndarray:
    v = np.asarray(rows, np.float64)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_person_scores_over_several_photos():
    photos = unit([1, 0, 0], [0, 1, 0])
    probe = unit([1, 1, 0.2])[0]
    expected_template = unit([1, 1, 0])[0]
    assert np.allclose(template(photos), expected_template)
    assert person_score(probe, photos, "template") == pytest.approx(np.linalg.norm(probe - expected_template))
    nearest = np.sort(np.linalg.norm(photos - probe, axis=1))
    assert person_score(probe, photos, "nearest") == pytest.approx(nearest[0])
    assert person_score(probe, photos, "nearest-2") == pytest.approx(nearest.mean())


def test_candidates_come_from_the_search_and_are_rescored():
    people = {"ann": (np.array([1, 2]), unit([1, 0, 0], [0.9, 0.1, 0])), "bob": (np.array([3]), unit([0.8, 0.6, 0]))}
    owner = {1: "ann", 2: "ann", 3: "bob"}
    probe = unit([1, 0.05, 0])[0]
    ranked = score_candidates(probe, np.array([1, 3, 2, -1]), owner, people.__getitem__)
    assert [name for name, _, _ in ranked] == ["ann", "bob"]
    _, score, evidence = ranked[0]
    assert score == pytest.approx(person_score(probe, people["ann"][1]))
    assert [e.face_id for e in evidence] == [1, 2] and evidence[0].distance <= evidence[1].distance
    assert [n for n, _, _ in score_candidates(probe, np.array([1, 3]), owner, people.__getitem__, exclude="ann")] == ["bob"]
    assert len(score_candidates(probe, np.array([1, 3]), owner, people.__getitem__, limit=1)) == 1
    gone = {"ann": (np.zeros(0, np.int64), np.zeros((0, 3), np.float32)), "bob": people["bob"]}
    assert [n for n, _, _ in score_candidates(probe, np.array([1, 3]), owner, gone.__getitem__)] == ["bob"]


def test_calibration_needs_enough_people_and_fits_the_strangers():
    scores = np.array([0.40, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52, 0.54, 0.56, 0.58, np.inf])
    assert fit(scores, MIN_PEOPLE - 1) is None
    assert fit(scores[:5], 20) is None
    calibration = fit(scores, 20)
    assert calibration.samples == 10 and calibration.mean == pytest.approx(0.49)
    assert calibration.threshold(0.01) < calibration.threshold(0.1) < calibration.mean
    assert calibration.expected_fpir(calibration.threshold(0.01)) == pytest.approx(0.01)


def test_the_stricter_of_the_model_table_and_the_gallery_wins():
    policy = ThresholdPolicy(None, {}, 0.6, TABLE)
    assert policy.identify(10) == OpenSetThreshold(pytest.approx(0.40), "model table", 0.01)
    loose, strict = Calibration(0.6, 0.02, 50, 25), Calibration(0.40, 0.03, 50, 25)
    assert policy.identify(10, loose) == OpenSetThreshold(pytest.approx(0.40), "model table", 0.01)
    own = policy.identify(10, strict)
    assert own.source == "gallery's own strangers" and own.value == pytest.approx(strict.threshold(0.01)) and own.value < 0.40
    assert own.expected_fpir == pytest.approx(0.01)
    assert ThresholdPolicy(0.33, {}, 0.6, TABLE).identify(10, strict) == OpenSetThreshold(0.33, "argument")
    assert ThresholdPolicy(None, {"identify": 0.31}, 0.6, TABLE).identify(10, strict) == OpenSetThreshold(0.31, "gallery setting")
    # capped at verify's threshold, the table's target no longer says how many strangers are named
    assert ThresholdPolicy(None, {"verify": 0.38}, 0.6, TABLE).identify(10) == OpenSetThreshold(0.38, "model table")


def test_gallery_stats_shows_the_policy_answer(tmp_path):
    from click.testing import CliRunner

    from facesys.cli import main
    from facesys.config import DEFAULT_TARGET_FPIR
    from facesys.gallery import Gallery
    from facesys.models import ModelInfo, get_model_spec
    from tests.gallery.conftest import face

    gallery = Gallery(tmp_path / "g")
    gallery.add_faces([(f"p{i}", face(i, 128)) for i in range(4)], ModelInfo("dlib-resnet@0", "dlib-resnet", "0" * 64, 128))

    def stats() -> dict:
        return json.loads(CliRunner().invoke(main, ["--gallery", str(tmp_path / "g"), "gallery", "stats", "--json"]).output)

    table = stats()
    assert table["open_set_threshold_source"] == "model table" and table["self_calibration"].startswith("gallery too small")
    assert table["open_set_threshold"] < get_model_spec("dlib-resnet").threshold
    assert table["expected_false_identification_rate"] == DEFAULT_TARGET_FPIR
    gallery.set_threshold("verify", 0.2)  # caps the table's threshold: its target no longer holds
    capped = stats()
    assert capped["open_set_threshold"] == 0.2 and capped["open_set_threshold_source"] == "model table"
    assert capped["expected_false_identification_rate"] is None


def _enrolled(tmp_path, embedder, folder: str, people: int, photos: int):
    from facesys.datasets import people_in
    from facesys.system import FaceSystem

    found = people_in(data_path(folder))
    system = FaceSystem(tmp_path / folder, embedder=embedder)
    system.enroll_many([(name, p) for name in sorted(found)[:people] for p in sorted(found[name])[:photos]])
    assert len(system.gallery.people()) == people
    return system


def test_a_gallery_of_look_alike_photos_tightens_its_own_threshold(tmp_path, embedder):
    system = _enrolled(tmp_path, embedder, "yalefaces", 15, 2)  # grayscale lab photos: strangers come close
    faces = sum(count for _, count in system.gallery.people())
    calibration = system.gallery.calibration()
    table = system.policy().identify(faces)
    own = system.policy().identify(faces, calibration)
    assert calibration is not None and calibration.people == 15
    assert own.source == "gallery's own strangers" and own.value < table.value - 0.03


def test_a_gallery_too_small_to_calibrate_uses_the_model_table(tmp_path, embedder):
    system = _enrolled(tmp_path, embedder, "face_recognition", MIN_PEOPLE - 1, 2)
    assert system.gallery.calibration() is None
    probe = data_path("face_recognition", "barack_obama", "obama3.jpg")
    (answer,) = system.identify(probe)
    assert answer.threshold_source == "model table"


def test_identify_json_names_the_deciding_photo(tmp_path):
    fr = data_path("face_recognition")
    gallery = tmp_path / "g"
    run = [sys.executable, "-m", "facesys.cli", "-q", "--gallery", str(gallery)]
    for name, photos in (("obama", ["obama.jpg", "obama2.jpg"]), ("biden", ["biden.jpg"])):
        folder = "barack_obama" if name == "obama" else "joe_biden"
        enrolled = subprocess.run([*run, "enroll", "--name", name, *(str(fr / folder / p) for p in photos)], capture_output=True)
        assert enrolled.returncode == 0, enrolled.stderr
    answer = subprocess.run([*run, "identify", "--json", str(fr / "barack_obama" / "obama3.jpg")], capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr
    (face,) = json.loads(answer.stdout.splitlines()[0])["faces"]
    assert face["name"] == "obama" and face["quality"] is None and face["threshold_source"] == "model table"
    best = face["candidates"][0]
    assert face["matched"] == {"face_id": best["faces"][0]["face_id"], "source": best["faces"][0]["source"]}
    assert face["matched"]["source"] in {str(fr / "barack_obama" / p) for p in ("obama.jpg", "obama2.jpg")}
    assert [p["distance"] for p in best["faces"]] == sorted(p["distance"] for p in best["faces"])
    text = subprocess.run(
        [*run, "identify", "--explain", str(fr / "barack_obama" / "obama3.jpg")], capture_output=True, text=True
    )
    assert f"nearest enrolled photo: face #{face['matched']['face_id']} {face['matched']['source']}" in text.stdout
    assert "    biden: score" in text.stdout  # --explain lists the other candidates and their photos


def test_poor_probes_are_unknown_low_quality_even_for_enrolled_people(tmp_path, embedder):
    from facesys.vision.images import load_image

    system = _enrolled(tmp_path, embedder, "face_recognition", 6, 3)
    photo = load_image(data_path("face_recognition", "joe_biden", "biden.jpg"))
    (clear,) = system.identify(photo)
    assert clear.name == "joe_biden" and clear.quality is None
    blurred = cv2.GaussianBlur(photo, (0, 0), 6)
    small = cv2.resize(photo, None, fx=0.08, fy=0.08, interpolation=cv2.INTER_AREA)  # a face of ~22 px
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    for image, reason in ((blurred, "too blurred"), (canvas, "face too small")):
        faces = system.identify(image)
        assert faces and all(f.name is None for f in faces)
        assert reason in faces[0].quality, faces[0].quality


def test_pose_and_shape_rules_on_landmarks():
    rules = ProbeRules()
    box, frontal = np.array([0, 0, 100, 100.0]), np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80.0]])
    assert face_geometry(frontal) == (pytest.approx(0.0), pytest.approx(1.0))
    assert probe_problem(box, 0.99, frontal, 50.0, rules) is None
    profile = frontal.copy()
    profile[2, 0] = 80  # the nose beyond the right eye
    assert "extreme pose" in probe_problem(box, 0.99, profile, 50.0, rules)
    squashed = frontal * [0.5, 1.0]
    assert "distorted face shape" in probe_problem(box, 0.99, squashed, 50.0, rules)
    assert "uncertain detection" in probe_problem(box, 0.5, frontal, 50.0, rules)


def test_anamorphic_video_frames_are_shown_with_square_pixels():
    from facesys.vision.media import _pixel_aspect, square_pixels

    frame = np.zeros((108, 144, 3), np.uint8)
    assert square_pixels(frame, 4 / 3).shape == (108, 192, 3)  # 1440x1080 HDV shown as 1920x1080
    assert square_pixels(frame, 0.5).shape == (216, 144, 3)
    assert square_pixels(frame, 1.0) is frame
    assert _pixel_aspect(0, 0) == 1.0 and _pixel_aspect(4, 3) == pytest.approx(4 / 3)
