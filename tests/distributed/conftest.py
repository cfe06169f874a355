"""Ray fixtures (tests/distributed/cluster.py): a local Ray and a two-node cluster, loopback only;
tests skip where Ray is not installed (pip install "facesys[ray]")."""

from __future__ import annotations

import pytest


@pytest.fixture()
def local_ray():
    """A one-node Ray (``num_cpus=2``) on loopback for one test (a process holds one Ray connection
    at a time, so it cannot outlive the test next to a ``two_nodes`` one); yields its address."""
    pytest.importorskip("ray", reason='Ray not installed (pip install "facesys[ray]")')
    from tests.distributed.cluster import local_ray

    with local_ray(num_cpus=2) as address:
        yield address


@pytest.fixture()
def two_nodes():
    """A head and a worker node (1 CPU each) on loopback, the driver connected; the test may kill
    the worker (``two_nodes.kill_worker()``). Failed nodes are declared dead within ~2 s."""
    pytest.importorskip("ray", reason='Ray not installed (pip install "facesys[ray]")')
    from tests.distributed.cluster import FAST_FAILURE_CONFIG, two_node_cluster

    with two_node_cluster(system_config=FAST_FAILURE_CONFIG) as nodes:
        yield nodes
