"""The actor pool behind every ``--ray`` job: answers in order, a dead actor's batches re-sent to
the others, a batch's own error raised as it is (one line)."""

from __future__ import annotations

import numpy as np
import pytest

from facesys.errors import FacesysError, ImageError
from facesys.system import FaceSystem

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def files(photos) -> list:
    return sorted(photos.glob("*/*.jpg"))


def test_an_actor_killed_mid_job_leaves_every_answer_in_order(scan_ray, tmp_path, files):
    system = FaceSystem(tmp_path / "g")
    expected = system.embedder.faces(files, select="all", errors="collect", batch_size=2)
    with system.on_ray("local"):
        embedder = system.embedder
        batches = embedder.face_batches(((path, path) for path in files), select="all", errors="collect", batch_size=2)
        answers = list(next(batches))
        first, second = embedder.pool.actors
        scan_ray.kill(first, no_restart=True)  # as a worker process or node dying: its queued batches fail
        answers += [answer for batch in batches for answer in batch]
        assert embedder.pool.actors == [second]
    assert [path for path, _ in answers] == files
    for (_, result), mine in zip(answers, expected, strict=True):
        assert len(result.faces) == len(mine.faces) and result.error == mine.error
        for face, my_face in zip(result.faces, mine.faces, strict=True):
            np.testing.assert_allclose(face.embedding, my_face.embedding, atol=1e-4)
            assert face.crop is None and result.image is None


def test_a_batch_error_is_raised_as_it_is_and_every_actor_gone_is_one_line(scan_ray, tmp_path, files):
    system = FaceSystem(tmp_path / "g")
    with system.on_ray("local"):
        embedder = system.embedder
        with pytest.raises(ImageError, match="broken.jpg"):  # errors="raise": the photo's own error, here
            embedder.faces([files[0], files[0].parent.parent / "broken.jpg"], errors="raise")
        for actor in embedder.pool.actors:
            scan_ray.kill(actor, no_restart=True)
        with pytest.raises(FacesysError, match=r"^ray: the pipeline actors failed \(") as failure:
            embedder.faces(files[:4], batch_size=1)
        assert "\n" not in str(failure.value)
