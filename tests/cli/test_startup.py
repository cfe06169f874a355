"""Start-up: commands that run a network import torch and little else (no torchvision, no torch._dynamo)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import data_path, facenet_pytorch

HEAVY = ("torchvision", "torch._dynamo", "facenet_pytorch", "sympy")


def test_detecting_and_embedding_imports_no_torchvision_or_dynamo():
    photo = data_path("face_recognition", "barack_obama", "obama.jpg")
    code = (
        "import sys; from facesys.vision.embed import Embedder; "
        f"faces = Embedder().faces([{str(photo)!r}])[0].faces; assert len(faces) == 1, faces; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


def test_mtcnn_nets_compute_what_facenet_pytorchs_do():
    import torch

    mtcnn = facenet_pytorch().models.mtcnn

    from facesys.vision.mtcnn_nets import pretrained_nets

    generator = torch.Generator().manual_seed(0)
    for ours, theirs, size in zip(pretrained_nets(), (mtcnn.PNet(), mtcnn.RNet(), mtcnn.ONet()), (37, 24, 48), strict=True):
        x = torch.rand(3, 3, size, size, generator=generator) * 2 - 1
        with torch.inference_mode():
            for a, b in zip(ours(x), theirs.eval()(x), strict=True):
                assert torch.equal(a, b)


def test_nms_matches_torchvision_on_both_sides_of_its_one_call_limit():
    import torch

    reference = pytest.importorskip("torchvision.ops").batched_nms

    from facesys.vision.nms import batched_nms

    generator = torch.Generator().manual_seed(1)
    for count in (0, 1, 50, 900, 3000):  # 3000 boxes = 12,000 coordinates: the per-group loop
        corner = torch.rand(count, 2, generator=generator) * 400
        boxes = torch.cat([corner, corner + 5 + torch.rand(count, 2, generator=generator) * 60], 1)
        scores = torch.rand(count, generator=generator)
        groups = torch.randint(0, 7, (count,), generator=generator)
        assert torch.equal(batched_nms(boxes, scores, groups, 0.5), reference(boxes, scores, groups, 0.5))
