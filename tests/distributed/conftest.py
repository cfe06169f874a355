"""Fixtures of the Ray tests (skipped where Ray is not installed: in the facesys checkout, pip install -e ".[ray]"), every
process on 127.0.0.1, no dashboard: ``scan_ray``, facesys's own local Ray for a module of scan
tests; ``local_ray`` and ``two_nodes`` (tests/distributed/cluster.py), a one-node Ray and a
two-node cluster for one test each (built on facesys's own start: one place sets Ray's environment
and arguments); and a small folder of real LFW photos."""

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


@pytest.fixture(scope="module")
def scan_ray():
    """The ray module, joined to a local Ray of 2 CPUs for a whole test module (facesys's own start:
    loopback only; module-scoped so that it never overlaps the per-test Rays below: a process holds
    one Ray connection at a time)."""
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


@pytest.fixture()
def local_ray():
    """A one-node Ray (``num_cpus=2``) on loopback for one test (a process holds one Ray connection
    at a time, so it cannot outlive the test next to a ``two_nodes`` one); yields its address."""
    pytest.importorskip("ray", reason='Ray not installed (in the facesys checkout, pip install -e ".[ray]")')
    from tests.distributed.cluster import local_ray

    with local_ray(num_cpus=2) as address:
        yield address


@pytest.fixture()
def two_nodes():
    """A head and a worker node (1 CPU each) on loopback, the driver connected; the test may kill
    the worker (``two_nodes.kill_worker()``). Failed nodes are declared dead within ~2 s."""
    pytest.importorskip("ray", reason='Ray not installed (in the facesys checkout, pip install -e ".[ray]")')
    from tests.distributed.cluster import FAST_FAILURE_CONFIG, two_node_cluster

    with two_node_cluster(system_config=FAST_FAILURE_CONFIG) as nodes:
        yield nodes
