"""Fresh ``facesys scan`` processes started together into galleries with someone enrolled: while the
photo workers read the second batch, the main thread searches the gallery with the first batch's
faces, the first use of faiss; none may crash (issue 23: 1 of 8 fresh scans died with
``partially initialized module 'faiss' has no attribute 'omp_get_max_threads'``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import data_path

SCANS = 6  # processes started at once
PHOTOS = 20  # LFW photos each: two batches (PHOTO_BATCH is 16), so that workers run while faiss is imported
THREADS = "3"  # photo workers per process, so that worker threads exist


@pytest.mark.slow
def test_fresh_scans_in_parallel_never_crash(tmp_path):
    lfw = data_path("lfw")
    photos = sorted(lfw.glob("*/*_0001.jpg"))[: SCANS * PHOTOS]
    env = {**os.environ, "FACESYS_THREADS": THREADS}
    enrolled = tmp_path / "enrolled"
    known = sorted(lfw.glob("*/*_0002.jpg"))[0]
    command = [sys.executable, "-m", "facesys.cli", "--gallery", str(enrolled), "enroll", "--name", "Someone", str(known)]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    runs = []
    for number in range(SCANS):
        folder = tmp_path / f"photos{number}"
        folder.mkdir()
        for photo in photos[number * PHOTOS : (number + 1) * PHOTOS]:
            shutil.copy(photo, folder / photo.name)
        shutil.copytree(enrolled, tmp_path / f"g{number}")
        command = [sys.executable, "-m", "facesys.cli", "--gallery", str(tmp_path / f"g{number}"), "scan", str(folder)]
        runs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for process in runs:
        try:
            out, err = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for other in runs:
                other.kill()
            raise
        outputs.append((process.returncode, out, err))
    for code, out, err in outputs:
        assert code == 0 and "Traceback" not in err, err[-3000:]
        assert f"read {PHOTOS} files ({PHOTOS} new, 0 changed)" in out, out + err
