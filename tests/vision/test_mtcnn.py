"""BatchedMTCNN against facenet-pytorch's MTCNN on real photos, plus its crop resampling and Min-NMS
against the operations they reproduce.

On the same machine the two detectors run the same float32 operations on the same values, so results
agree to the bit; the tolerances below only leave room for last-bit rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facesys.datasets import people_in
from facesys.vision.images import load_image
from facesys.vision.mtcnn import BatchedMTCNN, _min_nms, _resample_crops, _summed_area_table
from tests.conftest import data_path, facenet_pytorch

BOX_PX = 1e-3
LANDMARK_PX = 1e-3
SCORE = 1e-5
PHOTOS = [  # (set, *path): group photos, a crowd, a false face in the background, larger sizes
    ("face_recognition", "_multi_face", "two_people.jpg"),
    ("face_recognition", "_multi_face", "kit_with_rose.jpg"),
    ("facenet_pytorch", "_multi_face", "multiface.jpg"),
    ("bad_inputs", "multi_face", "retinaface_crowd_test.jpg"),
    ("face_recognition", "barack_obama", "obama.jpg"),
]


@pytest.fixture(scope="module")
def detectors():
    MTCNN = facenet_pytorch().MTCNN

    reference = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7])
    return reference, BatchedMTCNN()


def _reference_faces(reference, batch: np.ndarray):
    boxes, scores, points = reference.detect(batch, landmarks=True)
    faces = []
    for b, s, p in zip(boxes, scores, points, strict=True):
        if b is None:
            faces.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)))
        else:
            faces.append((np.asarray(b, np.float32), np.asarray(s, np.float32), np.asarray(p, np.float32)))
    return faces


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, 4) x (M, 4) boxes -> (K, M) intersection over union."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _assert_same_faces(ours, theirs, name: str) -> int:
    """Every face matched one to one by IoU, with boxes, scores and landmarks within tolerance."""
    (boxes, scores, points), (ref_boxes, ref_scores, ref_points) = ours, theirs
    assert (scores >= 0.9).sum() == (ref_scores >= 0.9).sum(), name
    assert len(boxes) == len(ref_boxes), name
    if not len(boxes):
        return 0
    match = _iou(ref_boxes, boxes).argmax(1)
    assert sorted(match.tolist()) == list(range(len(boxes))), f"{name}: faces do not pair up"
    np.testing.assert_allclose(boxes[match], ref_boxes, rtol=0, atol=BOX_PX, err_msg=name)
    np.testing.assert_allclose(scores[match], ref_scores, rtol=0, atol=SCORE, err_msg=name)
    np.testing.assert_allclose(points[match], ref_points, rtol=0, atol=LANDMARK_PX, err_msg=name)
    assert np.array_equal(match, np.arange(len(boxes))), f"{name}: not in facenet-pytorch's order (largest first)"
    return len(boxes)


def test_matches_facenet_pytorch_on_lfw_batches(detectors):
    # Two batches of 16 from the 200 photos of benchmarks/mtcnn_cpu_check.py (one per person, every 28th
    # person); photos 11 and 98 have two overlapping ONet boxes with exactly equal scores, where the tie
    # decides which box is kept.
    photos = [ps[0] for ps in people_in(data_path("lfw")).values()][::28]
    files = photos[:16] + photos[96:112]
    images = np.stack([load_image(f) for f in files])
    reference, ours = detectors
    faces = 0
    for start in range(0, len(images), 16):
        batch = images[start : start + 16]
        for f, mine, theirs in zip(files[start:], ours.detect(batch), _reference_faces(reference, batch), strict=False):
            faces += _assert_same_faces(mine, theirs, f.name)
    assert faces >= 32  # one face or more in every photo


@pytest.mark.parametrize("parts", PHOTOS, ids=[p[-1] for p in PHOTOS])
def test_matches_facenet_pytorch_on_group_and_large_photos(detectors, parts):
    image = load_image(data_path(*parts))
    reference, ours = detectors
    (mine,), (theirs,) = ours.detect(image[None]), _reference_faces(reference, image[None])
    assert _assert_same_faces(mine, theirs, parts[-1]) >= 2


def test_no_faces_and_tiny_images_give_empty_arrays(detectors):
    _, ours = detectors
    for image in (np.zeros((2, 120, 90, 3), np.uint8), np.full((1, 11, 40, 3), 200, np.uint8)):  # 11 px: no pyramid
        for boxes, scores, points in ours.detect(image):
            assert boxes.shape == (0, 4) and scores.shape == (0,) and points.shape == (0, 5, 2)
    sums = _summed_area_table(torch.zeros(1, 50, 50, 3, dtype=torch.uint8))
    outside = torch.tensor([[60.0, 10.0, 80.0, 30.0], [10.0, -40.0, 30.0, -20.0]])  # no pixel of the image to crop
    boxes, owner, scores, shift, points = ours._score(ours.onet, sums, outside, torch.zeros(2, dtype=torch.long), 48, 0.0)
    assert boxes.shape == (0, 4) and owner.shape == scores.shape == (0,) and shift.shape == (0, 4) and points.shape == (0, 10)


def test_crop_resampling_is_area_interpolation_to_the_bit():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 90, 70, 3), dtype=torch.uint8, generator=generator)
    sums = _summed_area_table(images)
    corners = torch.randint(0, 60, (40, 2), generator=generator)
    x0, y0 = corners[:, 0] % 60, corners[:, 1]
    x1 = x0 + 1 + torch.randint(0, 10, (40,), generator=generator)  # some crops narrower than the output
    y1 = torch.minimum(y0 + 1 + torch.randint(0, 60, (40,), generator=generator), torch.tensor(90))
    owner = torch.arange(40) % 2
    for size in (24, 48):
        crops = _resample_crops(sums, owner, x0, y0, x1, y1, size)
        for k in range(40):
            crop = images[owner[k], y0[k] : y1[k], x0[k] : x1[k]].permute(2, 0, 1)[None].float()
            assert torch.equal(crops[k], F.interpolate(crop, size=(size, size), mode="area")[0]), k


def test_min_nms_matches_facenet_pytorch_greedy_loop():
    batched_nms_numpy = facenet_pytorch().models.utils.detect_face.batched_nms_numpy

    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        count = 60
        corner = torch.rand(count, 2, generator=generator) * 100
        boxes = torch.cat([corner, corner + 5 + torch.rand(count, 2, generator=generator) * 40], 1)
        scores = torch.rand(count, generator=generator)
        groups = torch.randint(0, 3, (count,), generator=generator)
        expected = batched_nms_numpy(boxes, scores, groups, 0.7, "Min")
        kept = _min_nms(boxes, scores, groups, 0.7)
        assert torch.equal(kept, expected)
        assert len(kept) < count  # something was suppressed


@pytest.mark.parametrize("policy", [None, 1], ids=["auto-on-a-busy-machine", "fixed-1"])
def test_a_direct_call_runs_the_nets_on_the_policys_count_set_once(detectors, monkeypatch, policy):
    # Issue 25: called outside the photo workers and the Embedder's pipeline, the driver ran on torch's
    # default (a thread per core) whatever the policy said; with the automatic count those threads spin
    # while waiting for each other, 5-10x slower beside other programs.
    from facesys import threads

    _, ours = detectors
    monkeypatch.setattr(threads, "_configured", policy)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "running_elsewhere", lambda: 3)  # other programs keep both cores busy
    seen, changes = [], []
    set_num_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda count: (changes.append(count), set_num_threads(count)))
    hooks = [net.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads())) for net in (ours.pnet, ours.onet)]
    before = torch.get_num_threads()
    set_num_threads(2)
    try:
        for _ in range(3):
            ours.detect(load_image(data_path("face_recognition", "barack_obama", "obama.jpg"))[None])
    finally:
        for hook in hooks:
            hook.remove()
        set_num_threads(before)
    assert seen and set(seen) == {1}
    assert changes == [1]  # set once, not again on every call
