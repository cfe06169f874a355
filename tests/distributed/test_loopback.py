"""Every Ray process of the test clusters listens on the loopback address only (issue 27: no test
sends traffic anywhere but 127.0.0.1)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.distributed.cluster import listeners, non_loopback_listeners, ray_processes


def test_local_ray_listens_on_loopback_only(local_ray):
    import ray

    assert ray.get(ray.remote(lambda: 1).remote()) == 1  # workers up: their servers are listening too
    assert listeners(), "no Ray listener found: the check would pass vacuously"
    assert non_loopback_listeners() == []
    assert local_ray.startswith("127.0.0.1:")


def test_two_node_cluster_listens_on_loopback_only(two_nodes):
    import ray

    on_worker = ray.remote(resources={"worker": 1})(lambda: ray.get_runtime_context().get_node_id())
    assert ray.get(on_worker.remote()) == two_nodes.worker_node_id
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    assert len(listeners()) >= 4  # GCS, two raylets, a worker: the check is not vacuous
    assert non_loopback_listeners() == []


# What a user's environment holds before facesys starts a Ray (the test fixtures set some of them).
RAY_VARIABLES = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def test_a_local_ray_started_by_facesys_is_loopback_only_private_and_leaves_nothing(tmp_path, monkeypatch):
    """``scan --ray`` on a laptop: the guarantees of the test clusters, in a user's environment
    (none of Ray's variables set, a home of its own); every fact at once, so a failure names all."""
    pytest.importorskip("ray", reason='Ray not installed (in the facesys checkout, pip install -e ".[ray]")')
    import psutil

    from facesys.distributed.cluster import LOCAL_OBJECT_STORE_BYTES, connected

    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a cluster of the user's, elsewhere: not joined
    with connected("local", cpus=2) as ray:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker up: its servers listen too
        found, outside = listeners(), non_loopback_listeners()
        session = Path(ray._private.worker._global_node.get_session_dir_path())
        environments = {}
        for process in ray_processes()[1:]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                environments[f"{process.name()}[{process.pid}]"] = process.environ()
        store = ray.cluster_resources()["object_store_memory"]
    assert found, "no Ray listener found: the check would pass vacuously"
    readable = {name: env for name, env in environments.items() if env}  # a retitled process shows none
    assert len(readable) >= 3  # GCS, raylet, a worker at least
    folder = session.parent
    facts = {
        "non-loopback listeners": outside,
        "processes with usage statistics on": [n for n, env in readable.items() if env.get("RAY_USAGE_STATS_ENABLED") != "0"],
        "~/.ray created (auth_token)": (tmp_path / "home" / ".ray").exists(),
        "session folder": (folder.parent == Path("/tmp") and folder.name.startswith("fray-")) or str(session),
        "session folder left after": folder.exists(),
        "object store bytes": store,
        "user's Ray variables after": {name: os.environ[name] for name in RAY_VARIABLES if name in os.environ},
    }
    assert facts == {
        "non-loopback listeners": [],
        "processes with usage statistics on": [],
        "~/.ray created (auth_token)": False,
        "session folder": True,  # a fresh /tmp/fray-*, not the shared /tmp/ray
        "session folder left after": False,
        "object store bytes": LOCAL_OBJECT_STORE_BYTES,
        "user's Ray variables after": {},
    }
