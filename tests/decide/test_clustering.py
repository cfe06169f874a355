"""facesys.decide.clustering (k-NN graph, methods, incremental ids) and facesys.evaluate.clustering (metrics),
on synthetic unit vectors: no model, no images."""

from __future__ import annotations

import numpy as np
import pytest

import facesys.decide.clustering as clustering
from facesys.decide.clustering import Graph, cluster_faces, cluster_graph, connected_components, first_seen_ids, knn_graph
from facesys.errors import FacesysError
from facesys.evaluate.clustering import cluster_metrics


def people(count: int, per: int, seed: int = 0, spread: float = 0.2, dim: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(count * per, dim) unit vectors, ``per`` around each of ``count`` random centres (faces of one
    person about ``spread * sqrt(2)`` apart, of different people about 1.4), and their (N,) person."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, per, 0) + spread / np.sqrt(dim) * rng.standard_normal((count * per, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(count), per)


def test_well_separated_people_are_recovered_exactly_and_deterministically():
    x, person = people(60, 5)
    ids = cluster_faces(x)
    assert ids.dtype == np.int64 and ids.shape == (300,)
    assert np.array_equal(ids, first_seen_ids(person))  # one cluster per person, numbered in order of first face
    assert np.array_equal(cluster_faces(x), ids)
    for method in clustering.METHODS:
        assert np.array_equal(cluster_graph(knn_graph(x, 0.4), 0.4, method), ids), method


def test_a_face_alone_is_a_cluster_of_one_and_the_threshold_decides_links():
    x, _ = people(3, 4)
    loner = -x[:1]  # as far from person 0 as a unit vector can be
    ids = cluster_faces(np.concatenate([x, loner]))
    assert len(set(ids.tolist())) == 4 and np.sum(ids == ids[-1]) == 1
    assert len(set(cluster_faces(x, threshold=0.05).tolist())) == 12  # nothing that close: all alone
    assert len(set(cluster_faces(x, threshold=2.0).tolist())) <= 3


def test_zero_and_one_face():
    empty = cluster_faces(np.zeros((0, 128), np.float32))
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert cluster_faces(np.zeros((0, 128), np.float32), previous=np.zeros(0, np.int64)).shape == (0,)
    x, _ = people(1, 1)
    assert cluster_faces(x).tolist() == [0]
    assert cluster_faces(x, previous=np.array([-1])).tolist() == [0]
    assert cluster_faces(x, previous=np.array([17])).tolist() == [17]


def test_rerun_with_previous_keeps_the_ids():
    x, _ = people(40, 5)
    named = cluster_faces(x) * 7 + 3  # whatever ids the last run stored
    assert np.array_equal(cluster_faces(x, previous=named), named)


def test_new_faces_join_their_person_and_strangers_get_fresh_ids_above_previous():
    known, person = people(30, 6, seed=1)
    previous = cluster_faces(known) + 100
    more, more_person = people(30, 7, seed=1)  # same centres (same seed), one more face each: take it
    extra = more[6::7][:5]  # one new face of persons 0..4
    strangers, _ = people(2, 2, seed=9)  # two new people, two faces each
    vectors = np.concatenate([known, extra, strangers])
    before = np.concatenate([previous, np.full(9, -1)])
    assert len(known) * clustering.INCREMENTAL_SHARE >= 9  # the incremental path
    ids = cluster_faces(vectors, previous=before)
    assert np.array_equal(ids[:180], previous)  # existing ids untouched
    for i in range(5):
        assert ids[180 + i] == previous[person == more_person[6::7][i]][0]
    fresh = ids[185:]
    assert (fresh > previous.max()).all() and fresh[0] == fresh[1] and fresh[2] == fresh[3] and fresh[0] != fresh[2]


def test_many_new_faces_recluster_everything_and_carry_ids_by_overlap():
    x, person = people(20, 5)
    half = person < 10  # the first 50 faces were clustered before
    previous = np.full(len(x), -1)
    previous[half] = cluster_faces(x[half]) + 50
    assert (~half).sum() > clustering.INCREMENTAL_SHARE * len(x)  # the re-clustering path
    ids = cluster_faces(x, previous=previous)
    assert np.array_equal(ids[half], previous[half])
    assert (ids[~half] > previous.max()).all() and len(set(ids[~half].tolist())) == 10


def test_carry_ids_gives_each_previous_id_to_the_cluster_sharing_most_faces():
    labels = np.array([0, 0, 0, 1, 1, 2])
    previous = np.array([5, 5, 9, 9, 9, -1])  # cluster 1 shares 2 faces with 9, cluster 0 only 1
    assert clustering.carry_ids(labels, previous).tolist() == [5, 5, 5, 9, 9, 10]


def test_ivf_neighbours_give_the_same_clusters_as_exact_search(monkeypatch):
    x, _ = people(1000, 4, seed=3, spread=0.3)  # some faces of a person further apart than 0.45
    exact = cluster_graph(knn_graph(x, 0.45, exact=True), 0.45)
    approximate = cluster_graph(knn_graph(x, 0.45, exact=False), 0.45)
    assert np.array_equal(approximate, exact) and 1000 < len(set(exact.tolist())) < 1100
    monkeypatch.setattr(clustering, "EXACT_PAIRS", 1000)  # what cluster_faces does for large N
    assert np.array_equal(cluster_faces(x, threshold=0.45), exact)


def test_connected_components_matches_a_plain_union_find():
    rng = np.random.default_rng(4)
    src, dst = rng.integers(0, 300, 250), rng.integers(0, 300, 250)
    parent = list(range(300))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        parent[root(a)] = root(b)
    expected = first_seen_ids(np.array([root(i) for i in range(300)]))
    found = connected_components(Graph(300, src, dst, np.zeros(250, np.float32)))
    assert np.array_equal(first_seen_ids(found), expected)


def test_bad_input_names_the_parameter():
    x, _ = people(2, 2)
    with pytest.raises(FacesysError, match="vectors") as err:
        cluster_faces(x[0])
    assert err.value.parameter == "vectors"
    with pytest.raises(FacesysError, match="vectors: not all finite"):
        cluster_faces(np.full((2, 4), np.nan, np.float32))
    with pytest.raises(FacesysError, match=r"previous: expected \(4,\)"):
        cluster_faces(x, previous=np.zeros(3, np.int64))
    with pytest.raises(FacesysError, match="threshold 0") as err:
        cluster_faces(x, threshold=0)
    assert err.value.parameter == "threshold"


def test_pairwise_and_bcubed_on_bagga_and_baldwins_example():
    # Bagga & Baldwin (1998): people {1-5}, {6, 7}, {8-12}; the answer merges the last two.
    truth = np.array([0] * 5 + [1] * 2 + [2] * 5)
    predicted = np.array([0] * 5 + [1] * 7)
    m = cluster_metrics(truth, predicted)
    assert m["bcubed_precision"] == pytest.approx((5 + 2 * 2 / 7 + 5 * 5 / 7) / 12)  # = 16/21
    assert m["bcubed_precision"] == pytest.approx(16 / 21) and m["bcubed_recall"] == 1.0
    assert m["pairwise_precision"] == pytest.approx(21 / 31) and m["pairwise_recall"] == 1.0  # 10+1+10 of 10+21 pairs
    assert m["bcubed_f1"] == pytest.approx(2 * (16 / 21) / (16 / 21 + 1))
    assert (m["faces"], m["people"], m["clusters"]) == (12, 3, 2)


def test_metrics_of_splits_singletons_and_label_names():
    truth = np.array(["a", "a", "a", "a", "b", "b"])
    split = np.array([7, 7, 8, 8, 9, 9])  # person a cut in two halves
    m = cluster_metrics(truth, split)
    assert m["bcubed_precision"] == 1.0 and m["bcubed_recall"] == pytest.approx((4 * 0.5 + 2 * 1.0) / 6)
    assert m["pairwise_precision"] == 1.0 and m["pairwise_recall"] == pytest.approx(3 / 7)  # (1+1+1) of (6+1)
    alone = cluster_metrics(truth, np.arange(6))
    assert alone["pairwise_precision"] == 1.0 and alone["pairwise_recall"] == 0.0 and alone["pairwise_f1"] == 0.0
    assert alone["bcubed_precision"] == 1.0 and alone["bcubed_recall"] == pytest.approx((4 * 0.25 + 2 * 0.5) / 6)
    together = cluster_metrics(truth, np.zeros(6, int))
    assert together["bcubed_recall"] == 1.0 and together["bcubed_precision"] == pytest.approx((4 * 4 / 6 + 2 * 2 / 6) / 6)
    assert cluster_metrics(truth, split)["bcubed_f1"] == cluster_metrics(truth, split * 3 + 1)["bcubed_f1"]


def test_faces_too_poor_to_judge_stay_out_of_clusters():
    from types import SimpleNamespace

    from facesys.library.clusters import good_enough

    frontal = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]
    clear = SimpleNamespace(box=[0, 0, 100, 100], score=0.99, landmarks=frontal)
    assert good_enough(clear)
    assert not good_enough(SimpleNamespace(box=[0, 0, 20, 20], score=0.99, landmarks=frontal))  # tiny
    assert not good_enough(SimpleNamespace(box=[0, 0, 100, 100], score=0.75, landmarks=frontal))  # unsure
    profile = [p[:] for p in frontal]
    profile[2][0] = 80
    assert not good_enough(SimpleNamespace(box=[0, 0, 100, 100], score=0.99, landmarks=profile))


# -- cannot-link: two faces of one photo (one video frame) are two people ------------------------------


def twins(n: int = 2, seed: int = 5) -> np.ndarray:
    """(n, 128) unit vectors of one face, almost identical (0.01 apart)."""
    x, _ = people(1, n, seed=seed, spread=0.01)
    return x


def test_two_faces_of_one_photo_never_share_a_cluster_in_a_full_run():
    x, person = people(10, 4, seed=2)
    pair = twins()
    vectors = np.concatenate([x, pair])
    groups = np.full(len(vectors), -1)
    groups[-2:] = 7  # the twins: one photo
    assert cluster_faces(vectors)[-1] == cluster_faces(vectors)[-2]  # without the rule: one cluster
    ids = cluster_faces(vectors, groups=groups)
    assert ids[-1] != ids[-2] and not clustering.conflicts(ids, groups)
    assert np.array_equal(ids[:40], first_seen_ids(person))  # the clusters without a conflict are as before
    groups[-2:] = [7, 8]  # different photos: they merge again
    assert np.array_equal(cluster_faces(vectors, groups=groups), cluster_faces(vectors))
    for method in clustering.METHODS:
        labels = cluster_graph(knn_graph(vectors, 0.4), 0.4, method, groups=np.r_[np.full(40, -1), 7, 7])
        assert labels[-1] != labels[-2] and np.array_equal(labels[:40], first_seen_ids(person)), method


def test_a_face_pushed_out_joins_its_nearest_allowed_cluster():
    same = twins(4)  # faces 0-3: one person; 0 and 1 in one photo, 2 and 3 in another
    groups = np.array([1, 1, 2, 2])
    ids = cluster_faces(same, groups=groups)
    assert not clustering.conflicts(ids, groups) and len(set(ids.tolist())) == 2  # two clusters, not four


def test_new_faces_of_one_photo_are_placed_apart_and_never_beside_their_photo_mates():
    known, _ = people(30, 6, seed=1)
    previous = cluster_faces(known) + 100
    more, _ = people(30, 7, seed=1)
    extra = more[6::7][:3]  # one new face of persons 0, 1, 2
    vectors = np.concatenate([known, extra, extra[:1]])  # and a second copy of person 0's new face
    groups = np.full(len(vectors), -1)
    groups[[0, 180]] = 3  # person 0's new face sits in one photo with an existing face of person 0
    groups[[181, 182]] = 4  # persons 1's and 2's new faces in one photo: no conflict
    groups[183] = 5
    before = np.concatenate([previous, np.full(4, -1)])
    plain = cluster_faces(vectors, previous=before)
    assert plain[180] == plain[183] == previous[0]  # without the rule both join person 0
    ids = cluster_faces(vectors, previous=before, groups=groups)
    assert np.array_equal(ids[:180], previous)  # existing ids untouched
    assert ids[180] != previous[0] and ids[180] > previous.max()  # not beside its photo mate
    assert ids[181] == plain[181] and ids[182] == plain[182] and ids[183] == previous[0]


def test_a_stored_cluster_that_breaks_the_rule_is_split_on_the_next_run():
    x, person = people(30, 6, seed=1)
    old = cluster_faces(x) + 10
    groups = np.full(len(x), -1)
    groups[[0, 1]] = 9  # two faces of person 0 turn out to share a photo (clustered before the rule)
    ids = cluster_faces(x, previous=old, groups=groups)
    assert ids[0] != ids[1] and not clustering.conflicts(ids, groups)
    assert np.sum(ids != old) == 1 and ids[(ids != old)][0] > old.max()  # one face moved, to a new cluster
    many = np.where(person < 20, -1, old)  # many new faces: the re-clustering path
    ids = cluster_faces(x, previous=many, groups=groups)
    assert ids[0] != ids[1] and not clustering.conflicts(ids, groups)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5])
def test_groups_that_never_conflict_change_nothing(share):
    """The same ids as the clustering without the rule (compared on the old code's own results: with
    no groups, or keys that link nothing), on noisy data where clusters do merge."""
    x, _ = people(100, 5, seed=6, spread=0.6, dim=32)
    rng = np.random.default_rng(7)
    previous = cluster_faces(x, threshold=0.7)
    previous[rng.random(len(x)) < share] = -1
    if share == 0.0:
        previous = None
    plain = cluster_faces(x, previous, threshold=0.7)
    for groups in (None, np.full(len(x), -1), np.arange(len(x))):
        assert np.array_equal(cluster_faces(x, previous, threshold=0.7, groups=groups), plain)
    random = rng.integers(-1, 60, len(x))
    assert not clustering.conflicts(cluster_faces(x, previous, threshold=0.7, groups=random), random)


def test_bad_groups_name_the_parameter():
    x, _ = people(2, 2)
    with pytest.raises(FacesysError, match=r"groups: expected \(4,\) integer keys") as err:
        cluster_faces(x, groups=np.zeros(3, np.int64))
    assert err.value.parameter == "groups"
    with pytest.raises(FacesysError, match="groups"):
        cluster_faces(x, groups=np.zeros(4, np.float32))


def test_each_model_clusters_at_the_false_accept_rate_measured_for_dlib():
    import math
    from types import SimpleNamespace

    from facesys.decide.clustering import CLUSTER_FAR, DEFAULT_CLUSTER_THRESHOLD, cluster_threshold
    from facesys.models import get_model_spec

    assert cluster_threshold(get_model_spec("dlib-resnet")) == pytest.approx(DEFAULT_CLUSTER_THRESHOLD, abs=1e-9)
    table = ((1e-3, 1.2), (1e-4, 1.1), (1e-5, 1.0))
    expected = 1.1 + (1.0 - 1.1) * (-4 - math.log10(CLUSTER_FAR))  # log-linear between 1e-4 and 1e-5
    assert cluster_threshold(SimpleNamespace(far_table=table, threshold=1.3)) == pytest.approx(expected)
    assert cluster_threshold(SimpleNamespace(far_table=(), threshold=0.834)) == pytest.approx(2 * DEFAULT_CLUSTER_THRESHOLD)
