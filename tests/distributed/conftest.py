"""Fixtures of the Ray tests: one local Ray for the session (2 CPUs, every process on 127.0.0.1,
no dashboard; started once: a start costs seconds) and a small folder of real LFW photos. The
tests skip where Ray is not installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import data_path

# The photos scanned: four people, five photos each (Colin Powell's first photo is enrolled, not scanned).
PEOPLE = {
    "Colin_Powell": range(2, 7),
    "Tony_Blair": range(1, 6),
    "Donald_Rumsfeld": range(1, 6),
    "Gerhard_Schroeder": range(1, 6),
}
ENROLLED = "Colin Powell"


@pytest.fixture(scope="session")
def local_ray():
    """The ray module, joined to a local Ray of 2 CPUs for the whole session (facesys's own start:
    loopback only)."""
    pytest.importorskip("ray")
    from facesys.distributed.cluster import connected

    with connected("local", cpus=2) as ray:
        yield ray


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """~20 LFW photos in one folder (one sub-folder per person) and one file that is not a photo."""
    lfw = data_path("lfw")
    folder = tmp_path_factory.mktemp("ray-library") / "photos"
    for person, numbers in PEOPLE.items():
        (folder / person).mkdir(parents=True)
        for n in numbers:
            shutil.copy(lfw / person / f"{person}_{n:04d}.jpg", folder / person)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    return folder


@pytest.fixture(scope="session")
def enrolled_photo() -> Path:
    return data_path("lfw", "Colin_Powell", "Colin_Powell_0001.jpg")
