"""Clustering metrics of embeddings: NMI and AMI of a k-means clustering against the labels.

As pytorch-metric-learning's `AccuracyCalculator` reports them: the embeddings are
clustered by k-means into as many clusters as there are classes, and the clusters are
compared with the labels by

- NMI, normalised mutual information: `I(Y; C) / mean(H(Y), H(C))`,
- AMI, adjusted mutual information (Vinh, Epps & Bailey, JMLR 2010):
  `(I(Y; C) − E[I]) / (mean(H(Y), H(C)) − E[I])`, where `E[I]` is the mutual information
  expected of two random labellings with the same cluster sizes (hypergeometric model),

both with the arithmetic mean (scikit-learn's default, which pytorch-metric-learning
uses), natural logarithms, and scikit-learn's conventions for degenerate cases: two
single-cluster labellings score 1; otherwise NMI is 0 when `I = 0` and AMI is 0 when
either labelling has one cluster. The scores are NumPy; k-means comes from
scikit-learn (`pip install scikit-learn`) or faiss (`pip install faiss-cpu`).

k-means depends on its initialisation: different implementations (pytorch-metric-learning
uses faiss') agree on well-separated classes, where any k-means finds the same clusters,
and may differ elsewhere.
"""

import numpy as np

from keras_triplet._validation import check_embedding_array, check_label_array

KMEANS_BACKENDS = ("auto", "sklearn", "faiss")


def _codes(values, name):
    values = np.asarray(values).reshape(-1)
    _, codes = np.unique(values, return_inverse=True)
    return codes.reshape(-1)


def _contingency(labels, clusters):
    a = _codes(labels, "labels")
    b = _codes(clusters, "clusters")
    if a.shape != b.shape:
        raise ValueError(
            f"`labels` has {a.size} entries but `clusters` has {b.size}; give one cluster per item."
        )
    table = np.zeros((a.max(initial=-1) + 1, b.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    return table


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _mutual_information(table):
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j].astype(np.float64)
    return float(np.sum(nij / n * (np.log(nij) + np.log(n) - np.log(rows[i]) - np.log(cols[j]))))


def _expected_mutual_information(table):
    """`E[I]` under the hypergeometric model of random labellings with these margins."""
    n = int(table.sum())
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    # log(k!) for k = 0..n, as a cumulative sum of logs.
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    total = 0.0
    for a in rows:
        # Every column at once: nij runs from max(1, a + b - n) to min(a, b).
        lo = np.maximum(1, a + cols - n)
        hi = np.minimum(a, cols)
        width = int((hi - lo).max(initial=-1)) + 1
        if width <= 0:
            continue
        nij = lo[:, None] + np.arange(width)[None, :]
        valid = nij <= hi[:, None]
        nij = np.where(valid, nij, 1)
        b = cols[:, None]
        log_p = (
            log_fact[a]
            + log_fact[b]
            + log_fact[n - a]
            + log_fact[n - b]
            - log_fact[n]
            - log_fact[nij]
            - log_fact[a - nij]
            - log_fact[b - nij]
            - log_fact[np.clip(n - a - b + nij, 0, None)]
        )
        term = nij / n * (np.log(n) + np.log(nij) - np.log(a) - np.log(b)) * np.exp(log_p)
        total += float(np.sum(np.where(valid, term, 0.0)))
    return total


def normalized_mutual_info(labels, clusters):
    """NMI of two labellings of the same items (arithmetic normalisation).

    Equal to `sklearn.metrics.normalized_mutual_info_score(labels, clusters)`.

    Example:

    >>> round(normalized_mutual_info([0, 0, 1, 1], [5, 5, 7, 7]), 6)
    1.0
    >>> round(normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]), 6)
    0.0
    """
    table = _contingency(labels, clusters)
    if table.shape[0] == table.shape[1] <= 1:
        return 1.0
    mi = _mutual_information(table)
    if mi == 0:
        return 0.0
    return mi / ((_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2)


def adjusted_mutual_info(labels, clusters):
    """AMI of two labellings of the same items (arithmetic normalisation).

    Equal to `sklearn.metrics.adjusted_mutual_info_score(labels, clusters)`.

    Example:

    >>> round(adjusted_mutual_info([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]), 6)
    1.0
    >>> round(adjusted_mutual_info([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 1, 2]), 4)
    0.1667
    """
    table = _contingency(labels, clusters)
    if table.shape[0] == table.shape[1] <= 1:
        return 1.0
    if table.shape[0] == 1 or table.shape[1] == 1:
        return 0.0
    mi = _mutual_information(table)
    emi = _expected_mutual_information(table)
    normaliser = (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2
    eps = np.finfo(np.float64).eps
    # Floating point can put E[I] a hair above the normaliser or I: keep the signs.
    denominator, numerator = normaliser - emi, mi - emi
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    numerator = min(numerator, -eps) if numerator < 0 else max(numerator, eps)
    return float(numerator / denominator)


def kmeans_clusters(embeddings, n_clusters, backend="auto", seed=0):
    """Cluster index `[N]` of each embedding, by k-means with `n_clusters` clusters.

    `backend`: `"sklearn"` (`sklearn.cluster.KMeans(n_init=10, random_state=seed)`),
    `"faiss"` (`faiss.Kmeans(niter=20)`, as pytorch-metric-learning clusters, but seeded
    with k-means++ and the best of 10 runs) or `"auto"` (scikit-learn when installed, else faiss).
    """
    if backend not in KMEANS_BACKENDS:
        raise ValueError(f"Unknown k-means backend {backend!r}; expected one of {KMEANS_BACKENDS}.")
    x = check_embedding_array(embeddings, "`embeddings`", dtype=np.float32)
    n_clusters = int(n_clusters)
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(
            f"`n_clusters` must be between 1 and the number of embeddings ({x.shape[0]}); got {n_clusters}."
        )
    if backend in ("auto", "sklearn"):
        try:
            from sklearn.cluster import KMeans
        except ImportError:
            if backend == "sklearn":
                raise ImportError(
                    "k-means with backend='sklearn' needs scikit-learn: `pip install scikit-learn`."
                ) from None
        else:
            return KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(x).astype(np.int64)
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "Clustering metrics need k-means from scikit-learn or faiss: `pip install scikit-learn` "
            "(or `pip install faiss-cpu`)."
        ) from None
    # faiss seeds k-means with k random items, which on well-separated classes often puts
    # two centroids in one class and none in another, for good: seed with k-means++
    # instead (as scikit-learn does), keeping the best of 10 runs.
    x = np.ascontiguousarray(x)
    rng = np.random.default_rng(seed)
    best, best_obj = None, np.inf
    for _ in range(10):
        kmeans = faiss.Kmeans(
            x.shape[1],
            n_clusters,
            niter=20,
            seed=int(rng.integers(2**31)),
            min_points_per_centroid=1,  # small sets are fine: no warning
            verbose=False,
        )
        kmeans.train(x, init_centroids=_kmeans_plus_plus(x, n_clusters, rng))
        if kmeans.obj[-1] < best_obj:
            best, best_obj = kmeans, kmeans.obj[-1]
    _, assigned = best.index.search(x, 1)
    return assigned[:, 0].astype(np.int64)


def _kmeans_plus_plus(x, k, rng):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each next centre drawn with
    probability proportional to the squared distance to the nearest centre so far."""
    centres = [x[rng.integers(x.shape[0])]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1, dtype=np.float64)
    for _ in range(1, k):
        total = d2.sum()
        i = rng.choice(x.shape[0], p=d2 / total) if total > 0 else rng.integers(x.shape[0])
        centres.append(x[i])
        d2 = np.minimum(d2, np.sum((x - x[i]) ** 2, axis=1, dtype=np.float64))
    return np.ascontiguousarray(np.stack(centres), dtype=np.float32)


def clustering_metrics(embeddings, labels, n_clusters=None, backend="auto", seed=0):
    """NMI and AMI of a k-means clustering of `embeddings` against `labels`.

    Args:
        embeddings: `[N, D]` array.
        labels: `[N]` integer or string labels.
        n_clusters: k-means' `k`; default the number of distinct labels (as
            pytorch-metric-learning's `AccuracyCalculator`).
        backend, seed: of `kmeans_clusters`.

    Returns a dict: `nmi`, `ami`, `num_clusters`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(3), 20)
    >>> x = 10.0 * np.eye(3)[labels] + rng.normal(size=(60, 3))
    >>> m = clustering_metrics(x, labels)
    >>> round(m["nmi"], 4), round(m["ami"], 4), m["num_clusters"]
    (1.0, 1.0, 3)
    """
    x = check_embedding_array(embeddings, "`embeddings`", dtype=np.float32)
    labels = check_label_array(labels, x.shape[0], name="`labels`", items="`embeddings`", strings=True)
    k = int(np.unique(labels).size) if n_clusters is None else int(n_clusters)
    clusters = kmeans_clusters(x, k, backend=backend, seed=seed)
    return {
        "nmi": float(normalized_mutual_info(labels, clusters)),
        "ami": float(adjusted_mutual_info(labels, clusters)),
        "num_clusters": k,
    }
