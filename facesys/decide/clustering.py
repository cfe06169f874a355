"""Face clustering: group unit embeddings by person over a thresholded k-nearest-neighbour graph.

Each face is linked to those of its ``NEIGHBOURS`` nearest faces that lie closer than the threshold
(FAISS: exact search up to ``EXACT_PAIRS`` comparisons, about 20,000 faces; above, an IVF index;
never an N x N matrix), and Chinese whispers cuts the graph into clusters. Memory is O(N k); time
is the k-NN search (N x N/cells x probes x D) plus a few passes over the edges.

Incremental runs (``previous``): when at most ``INCREMENTAL_SHARE`` of the faces are new, only the
new faces are placed: their neighbours among all faces vote, existing faces with their fixed ids,
so a new face joins the existing cluster most of its linked neighbours are in, or forms a new
cluster with other new faces; existing ids never change. With more new faces everything is
re-clustered and each previous id goes to the new cluster that shares the most faces with it.

Cannot-link (``groups``): faces that share a group key (one photo, one video frame) are different
people, so no cluster ever holds two faces of one group, in every path (``separate``): a cluster that
does keeps, of each group, the face with the most links into it (ties: the first face) and each
other face moves to the cluster most of its linked neighbours are in that holds no face of its
group, or becomes a cluster of its own. Faces with a previous id keep it in the incremental path
(only new faces move); a previous cluster that broke the rule (stored before it existed) keeps the
face of each group nearest its mean and the others are placed again as new faces. A cluster with no
such pair loses no face (it may gain one pushed out of another), so without groups, or when no
cluster holds two faces of one group, the ids are exactly those without the rule. The rule only
moves faces: a cluster that merged two people by chaining stays merged, less the faces it must give up.

How the method and threshold were chosen (``python benchmarks/cluster_vs_dlib.py``): every method
in METHODS over thresholds 0.26-0.50, tuned on development data only: AT&T (400 photos) and the
9,377 LFW photos of people whose names start with A-M; the score is the mean BCubed F1 of the
two. Best threshold and score per method:

    chinese-whispers (dlib's algorithm: uniform votes)   0.33   0.969  (AT&T 1.000, LFW A-M 0.939)
    connected-components                                 0.31   0.963  (0.998, 0.927)
    average-linkage (mean distance of linked pairs)      0.35   0.957  (0.996, 0.918)
    chinese-whispers, votes weighted 1 - d/t             0.33   0.945  (0.950, 0.940)
    dlib's chinese_whispers_clustering, for reference    0.46   0.962  (0.994, 0.930)

Chinese whispers wins; connected components is a little faster (both well under a second on 9,377
faces) but chains: one link above its best threshold merges people (LFW A-M pairwise F1 0.90 at
0.31, 0.17 at 0.34) while Chinese whispers degrades slowly. The threshold sits well below the
verification threshold (0.417): with N faces each face has about N x FAR(t) impostors closer than
t, and a cluster needs precision against all of them. Full-set results: README and
benchmarks/results/cluster_vs_dlib.json.
"""

from __future__ import annotations

import heapq

import numpy as np

from facesys.decide.match import threshold_at_far
from facesys.errors import FacesysError

DEFAULT_CLUSTER_THRESHOLD = 0.33  # Euclidean distance between unit dlib-resnet embeddings (see above)
DLIB_VERIFY_THRESHOLD = 0.417  # dlib-resnet's verification threshold, which DEFAULT_CLUSTER_THRESHOLD was measured beside
# The false-accept rate per comparison of DEFAULT_CLUSTER_THRESHOLD in dlib-resnet's table (0.33 lies between
# 1e-4 at 0.3396 and 1e-5 at 0.3063; log-interpolated, 5.1e-5); other models cluster at this rate.
CLUSTER_FAR = 10 ** (-4 - (0.3396 - DEFAULT_CLUSTER_THRESHOLD) / (0.3396 - 0.3063))
NEIGHBOURS = 32  # k of the k-NN graph
EXACT_PAIRS = 400_000_000  # query x base pairs up to which neighbours are searched exactly (20,000 faces)
IVF_PROBES = 32  # cells scanned per query by the IVF index of large sets
INCREMENTAL_SHARE = 0.2  # at most this share of new faces: place them; more: re-cluster everything
ITERATIONS = 30  # Chinese whispers passes at most (it stops earlier once no label changes)
SEED = 0  # Chinese whispers visits nodes in this seeded random order: the same input, the same clusters


class Graph:
    """Undirected weighted graph in CSR form over N nodes: the neighbours of node i are
    ``indices[indptr[i]:indptr[i + 1]]`` at ``distances`` (float32, Euclidean) of the same slice."""

    def __init__(self, nodes: int, src: np.ndarray, dst: np.ndarray, distances: np.ndarray):
        """From directed edges (src -> dst, distance); each edge is stored in both directions, once."""
        src, dst = np.concatenate([src, dst]).astype(np.int64), np.concatenate([dst, src]).astype(np.int64)
        distances = np.concatenate([distances, distances]).astype(np.float32)
        keep = src != dst
        src, dst, distances = src[keep], dst[keep], distances[keep]
        key = src * max(nodes, 1) + dst
        key, first = np.unique(key, return_index=True)  # sorted by (src, dst); duplicates dropped
        self.nodes = nodes
        self.src, self.indices, self.distances = src[first], dst[first], distances[first]
        self.indptr = np.zeros(nodes + 1, np.int64)
        np.cumsum(np.bincount(self.src, minlength=nodes), out=self.indptr[1:])

    @property
    def edges(self) -> int:
        """Undirected edges."""
        return len(self.indices) // 2

    def edges_of(self, nodes: np.ndarray) -> np.ndarray:
        """Positions (in ``src``/``indices``/``distances``) of the edges leaving ``nodes``."""
        starts, counts = self.indptr[nodes], self.indptr[nodes + 1] - self.indptr[nodes]
        return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())

    def linked(self, node: int) -> np.ndarray:
        """The neighbours of ``node``."""
        return self.indices[self.indptr[node] : self.indptr[node + 1]]

    def below(self, threshold: float) -> Graph:
        """The graph of the edges shorter than ``threshold``."""
        keep = self.distances < threshold
        return Graph(self.nodes, self.src[keep], self.indices[keep], self.distances[keep])


def neighbours(base: np.ndarray, queries: np.ndarray, k: int, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) Euclidean distances and (Q, k) indices into ``base`` of each query's k nearest faces
    (index -1, distance inf where there are fewer). Exact (inner product) when ``exact`` or when
    Q x N is at most ``EXACT_PAIRS``; otherwise an IVF index (about 4 sqrt(N) cells, ``IVF_PROBES``
    probed). Both (., D) float32 unit vectors."""
    import faiss

    from facesys import threads

    base = np.ascontiguousarray(base, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    k = max(1, min(k, len(base)))
    if exact is None:
        exact = len(base) * len(queries) <= EXACT_PAIRS
    threads.adapt()
    dim = base.shape[1]
    if exact:
        index = faiss.IndexFlatIP(dim)
    else:
        cells = int(2 ** round(np.log2(4 * np.sqrt(len(base)))))
        cells = max(1, min(cells, len(base) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(SEED).choice(len(base), min(len(base), 40 * cells), replace=False)
        index.train(base[np.sort(sample)])
        index.nprobe = min(cells, IVF_PROBES)
    index.add(base)
    similarity = np.empty((len(queries), k), np.float32)
    found = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), 4096):
        similarity[start : start + 4096], found[start : start + 4096] = index.search(queries[start : start + 4096], k)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))
    distances[found < 0] = np.inf
    return distances, found


def knn_graph(vectors: np.ndarray, threshold: float, k: int = NEIGHBOURS, exact: bool | None = None) -> Graph:
    """Each of the (N, D) unit ``vectors`` linked to its k nearest others closer than ``threshold``."""
    n = len(vectors)
    if n < 2:
        return Graph(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    distances, found = neighbours(vectors, vectors, k + 1, exact)
    src = np.repeat(np.arange(n), found.shape[1])
    keep = (distances.ravel() < threshold) & (found.ravel() >= 0)
    return Graph(n, src[keep], found.ravel()[keep], distances.ravel()[keep])


def first_seen_ids(labels: np.ndarray, start: int = 0) -> np.ndarray:
    """Labels renumbered ``start``, ``start + 1``, ... in the order of each label's first face."""
    if len(labels) == 0:
        return np.zeros(0, np.int64)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return start + rank[inverse.ravel()]


def connected_components(graph: Graph) -> np.ndarray:
    """(N,) component labels (each the smallest node of its component): hooking and pointer jumping."""
    parent = np.arange(graph.nodes)
    src, dst = graph.src, graph.indices
    while True:
        a, b = parent[src], parent[dst]
        if np.array_equal(a, b):
            return parent
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def edge_weights(distances: np.ndarray, threshold: float, weighting: str) -> np.ndarray:
    """Vote weights of edges: ``uniform`` 1 (dlib's), ``linear`` 1 - d / threshold (closer votes more)."""
    if weighting == "uniform":
        return np.ones(len(distances), np.float64)
    if weighting != "linear":
        raise FacesysError(f"weighting={weighting!r}: choose from uniform, linear", parameter="weighting")
    return np.clip(1.0 - distances.astype(np.float64) / threshold, 1e-3, None)


def chinese_whispers(
    graph: Graph,
    weights: np.ndarray,
    labels: np.ndarray | None = None,
    movable: np.ndarray | None = None,
    iterations: int = ITERATIONS,
    seed: int = SEED,
    chunks: int = 8,
    self_weight: float = 1.0,
) -> np.ndarray:
    """Chinese whispers (Biemann 2006, dlib's ``chinese_whispers``): in a random order, each node
    takes the label with the largest summed edge weight among its neighbours and itself (weight
    ``self_weight``; ties: the smallest label). Vectorised: each pass visits the ``movable`` nodes (default all)
    in a seeded random order, ``chunks`` groups at a time. ``labels``: the starting (N,) labels
    (default: each node its own). Stops when a pass changes nothing."""
    labels = np.arange(graph.nodes) if labels is None else labels.copy()
    degree = np.diff(graph.indptr)
    nodes = np.flatnonzero(degree > 0) if movable is None else movable[degree[movable] > 0]
    rng = np.random.default_rng(seed)
    span = int(labels.max()) + 1 if len(labels) else 1
    for _ in range(iterations):
        changed = 0
        for group in np.array_split(rng.permutation(nodes), min(chunks, len(nodes))) if len(nodes) else []:
            edges = graph.edges_of(group)
            node = np.concatenate([graph.src[edges], group])
            label = np.concatenate([labels[graph.indices[edges]], labels[group]])
            weight = np.concatenate([weights[edges], np.full(len(group), self_weight)])
            key, inverse = np.unique(node * span + label, return_inverse=True)
            total = np.bincount(inverse.ravel(), weight)
            node_of, label_of = key // span, key % span
            order = np.lexsort((label_of, -total, node_of))  # per node: heaviest, then smallest label
            best = order[np.r_[True, node_of[order][1:] != node_of[order][:-1]]]
            new = label_of[best]
            changed += int(np.count_nonzero(labels[node_of[best]] != new))
            labels[node_of[best]] = new
        if not changed:
            break
    return labels


def average_linkage(graph: Graph, threshold: float) -> np.ndarray:
    """Agglomerative clustering over the graph's edges: repeatedly merge the two linked clusters
    whose linked face pairs have the smallest mean distance, while it is under ``threshold``."""
    size = [1] * graph.nodes
    links: list[dict[int, list[float]]] = [{} for _ in range(graph.nodes)]
    heap = []
    for a, b, d in zip(graph.src.tolist(), graph.indices.tolist(), graph.distances.tolist(), strict=True):
        links[a][b] = [d, 1]
        if a < b:
            heap.append((d, a, b))
    heapq.heapify(heap)
    parent = list(range(graph.nodes))
    while heap:
        mean, a, b = heapq.heappop(heap)
        if mean >= threshold:
            break
        if parent[a] != a or parent[b] != b or b not in links[a]:
            continue
        total, count = links[a][b]
        if total / count != mean:
            continue  # stale entry
        if len(links[a]) < len(links[b]):
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        del links[a][b]
        merged, links[b] = links[b], {}
        for c, (total, count) in merged.items():
            if c == a:
                continue
            del links[c][b]
            entry = links[a].setdefault(c, [0.0, 0])
            entry[0] += total
            entry[1] += count
            links[c][a] = entry
            heapq.heappush(heap, (entry[0] / entry[1], min(a, c), max(a, c)))
    roots = np.array(parent)
    while True:
        grand = roots[roots]
        if np.array_equal(grand, roots):
            return roots
        roots = grand


METHODS = ("chinese-whispers", "connected-components", "average-linkage")


def cluster_graph(
    graph: Graph, threshold: float, method: str = "chinese-whispers", weighting: str = "uniform", groups: np.ndarray | None = None
) -> np.ndarray:
    """(N,) int64 cluster ids 0, 1, ... (in order of each cluster's first face) by ``method`` (one of
    METHODS) at ``threshold``: over the edges shorter than it, or (average linkage) all of the graph's
    edges, merging while the mean linked distance is under it. ``groups``: (N,) cannot-link keys
    (``separate``; None or -1: no constraint)."""
    if method == "average-linkage":
        labels = average_linkage(graph, threshold)
        graph = graph.below(threshold)
    else:
        graph = graph.below(threshold)
        if method == "connected-components":
            labels = connected_components(graph)
        elif method == "chinese-whispers":
            weights = edge_weights(graph.distances, threshold, weighting)
            labels = chinese_whispers(graph, weights, self_weight=1.0 if weighting == "uniform" else 0.0)
        else:
            raise FacesysError(f"method={method!r}: choose from {', '.join(METHODS)}", parameter="method")
    if groups is not None:
        labels = separate(graph, first_seen_ids(labels), groups)
    return first_seen_ids(labels)


def conflicts(labels: np.ndarray, groups: np.ndarray) -> list[tuple[int, int]]:
    """The (cluster, group) pairs that hold two or more faces (groups -1: no constraint), sorted."""
    keyed = groups >= 0
    if keyed.sum() < 2:
        return []
    pairs, counts = np.unique(np.stack([labels[keyed], groups[keyed]]), axis=1, return_counts=True)
    return [tuple(pair) for pair in pairs[:, counts > 1].T.tolist()]


def separate(graph: Graph, labels: np.ndarray, groups: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """(N,) ``labels`` in which no cluster holds two faces of one group (``groups``: (N,) int keys, -1:
    none). In a cluster that does, each group keeps one face: a ``fixed`` face (a boolean mask of faces
    that never move; at most one per group and cluster), else the one with the most ``graph`` links
    into the cluster (ties: the first); each other face, in face order, joins the cluster that most of
    its linked neighbours (those already placed) are in among those with no face of its group (ties:
    the smallest label), or a new cluster numbered above every label. Clusters without a conflict lose
    no face."""
    found = conflicts(labels, groups)
    if not found:
        return labels
    labels = labels.copy()
    fixed = np.zeros(len(labels), bool) if fixed is None else fixed
    wanted = set(found)
    members: dict[tuple[int, int], list[int]] = {}
    for face, key in enumerate(zip(labels.tolist(), groups.tolist(), strict=True)):
        if key in wanted:
            members.setdefault(key, []).append(face)
    evicted: list[int] = []
    for (cluster, _), faces in members.items():
        faces = np.array(faces)
        pinned = faces[fixed[faces]]
        if len(pinned):
            keep = int(pinned[0])
        else:
            links = [int(np.count_nonzero(labels[graph.linked(f)] == cluster)) for f in faces]
            keep = int(faces[int(np.argmax(links))])
        evicted += [int(f) for f in faces if f != keep]
    pending = set(evicted)
    held: dict[int, set[int]] = {}  # group -> the clusters holding a face of it
    for face in np.flatnonzero(groups >= 0).tolist():
        if face not in pending:
            held.setdefault(int(groups[face]), set()).add(int(labels[face]))
    top = int(labels.max()) + 1
    for face in sorted(evicted):
        pending.discard(face)
        taken = held.setdefault(int(groups[face]), set())
        votes: dict[int, int] = {}
        for other in graph.linked(face).tolist():
            label = int(labels[other])
            if other not in pending and label not in taken:  # faces still to place do not vote
                votes[label] = votes.get(label, 0) + 1
        if votes:
            best = min(votes, key=lambda label: (-votes[label], label))
        else:
            best, top = top, top + 1
        labels[face] = best
        taken.add(best)
    return labels


def cluster_threshold(spec) -> float:
    """The default clustering threshold for a model's embeddings (``spec``: its ModelSpec): measured for
    dlib-resnet (DEFAULT_CLUSTER_THRESHOLD); another model gets the distance at the same false-accept
    rate per comparison (CLUSTER_FAR) in its own table, or without a table the same fraction of its
    verification threshold."""
    if spec.far_table:
        return threshold_at_far(spec.far_table, CLUSTER_FAR)
    return DEFAULT_CLUSTER_THRESHOLD * float(spec.threshold) / DLIB_VERIFY_THRESHOLD


def _checked(
    vectors: np.ndarray, previous: np.ndarray | None, threshold: float | None, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.issubdtype(vectors.dtype, np.number):
        raise FacesysError(f"vectors: expected an (N, D) array of numbers, got shape {vectors.shape}", parameter="vectors")
    if not np.isfinite(vectors).all():
        raise FacesysError("vectors: not all finite (NaN or infinity)", parameter="vectors")
    n = len(vectors)
    if previous is None:
        previous = np.full(n, -1, np.int64)
    previous = np.asarray(previous)
    if previous.shape != (n,) or not np.issubdtype(previous.dtype, np.integer):
        raise FacesysError(
            f"previous: expected ({n},) integer cluster ids, got {previous.dtype} {previous.shape}", parameter="previous"
        )
    if threshold is None:
        threshold = DEFAULT_CLUSTER_THRESHOLD
    if not 0 < threshold <= 2:
        raise FacesysError(f"threshold {threshold}: a distance between unit vectors is in (0, 2]", parameter="threshold")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
            raise FacesysError(f"groups: expected ({n},) integer keys, got {groups.dtype} {groups.shape}", parameter="groups")
        groups = groups.astype(np.int64) if (groups >= 0).any() else None
    return np.ascontiguousarray(vectors, np.float32), previous.astype(np.int64), float(threshold), groups


def cluster_faces(
    vectors: np.ndarray, previous: np.ndarray | None = None, threshold: float | None = None, groups: np.ndarray | None = None
) -> np.ndarray:
    """(N, D) float32 unit embeddings; previous: (N,) int64 cluster id of each face from the last run,
    -1 for faces never clustered (None = all new). Returns (N,) int64 cluster ids >= 0 (a face alone is a
    cluster of one). Faces of a previous cluster keep its id where the cluster persists; new faces join
    existing clusters or get fresh ids above every previous id. When few faces are new, only they are
    placed (cost ~ new faces, existing ids untouched); otherwise all are re-clustered and ids carried over
    by overlap. threshold: the distance under which two faces are linked (None: the default, documented).
    groups: (N,) integer keys, faces sharing one (one photo, one video frame) never share a cluster
    (-1 or None: no constraint; how, in the module's docstring)."""
    vectors, previous, threshold, groups = _checked(vectors, previous, threshold, groups)
    if groups is not None:
        previous = unpin_conflicts(vectors, previous, groups)
    new = previous < 0
    if len(vectors) and not new.any():
        return previous.copy()
    if len(vectors) and not new.all() and new.sum() <= INCREMENTAL_SHARE * len(vectors):
        return place_new_faces(vectors, previous, threshold, groups=groups)
    labels = cluster_graph(knn_graph(vectors, threshold), threshold, groups=groups)
    return carry_ids(labels, previous)


def unpin_conflicts(vectors: np.ndarray, previous: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``previous`` with -1 (to be placed again) for each face of a previous cluster that holds another
    face of its group: of each such group the face nearest the cluster's mean keeps the id."""
    previous = previous.copy()
    for cluster, group in conflicts(previous, np.where(previous >= 0, groups, -1)):
        members = np.flatnonzero(previous == cluster)
        faces = members[groups[members] == group]
        centre = vectors[members].mean(axis=0)
        keep = faces[int(np.argmin(np.linalg.norm(vectors[faces] - centre, axis=1)))]
        previous[faces[faces != keep]] = -1
    return previous


def carry_ids(labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Fresh cluster ``labels`` renamed after ``previous`` ids: greedily by overlap (most shared faces
    first), each previous id to at most one cluster; the other clusters get ids above every previous one."""
    old = previous >= 0
    if not old.any():
        return labels
    pairs, shared = np.unique(np.stack([labels[old], previous[old]]), axis=1, return_counts=True)
    order = np.lexsort((pairs[1], pairs[0], -shared))
    name: dict[int, int] = {}
    taken: set[int] = set()
    for label, prior in pairs[:, order].T.tolist():
        if label not in name and prior not in taken:
            name[label] = prior
            taken.add(prior)
    ids = np.array([name.get(label, -1) for label in range(labels.max() + 1)], np.int64)
    fresh = ids < 0
    ids[fresh] = previous.max() + 1 + np.arange(fresh.sum())
    return ids[labels]


def place_new_faces(
    vectors: np.ndarray, previous: np.ndarray, threshold: float, k: int = NEIGHBOURS, groups: np.ndarray | None = None
) -> np.ndarray:
    """Cluster ids when only the faces with ``previous`` -1 are new: each new face's k nearest faces
    (all faces searched, closer than ``threshold``) vote, existing faces with their fixed ids, new faces
    with the labels they take (Chinese whispers over the new faces only); new faces that end with no
    existing id form new clusters, numbered above every previous id in order of their first face.
    ``groups``: cannot-link keys (``separate``; existing faces never move)."""
    new = np.flatnonzero(previous < 0)
    distances, found = neighbours(vectors, vectors[new], k + 1)
    src = np.repeat(new, found.shape[1])
    keep = (distances.ravel() < threshold) & (found.ravel() >= 0)
    graph = Graph(len(vectors), src[keep], found.ravel()[keep], distances.ravel()[keep])
    top = int(previous.max()) + 1
    labels = previous.copy()
    labels[new] = top + np.arange(len(new))
    labels = chinese_whispers(graph, edge_weights(graph.distances, threshold, "uniform"), labels, movable=new)
    if groups is not None:
        labels = separate(graph, labels, groups, fixed=previous >= 0)
    out = labels.copy()
    made = labels[new] >= top
    out[new[made]] = first_seen_ids(labels[new[made]], top)
    return out
