"""Every Ray process of the test clusters listens on the loopback address only (issue 27: no test
sends traffic anywhere but 127.0.0.1)."""

from __future__ import annotations

from tests.distributed.cluster import listeners, non_loopback_listeners


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
