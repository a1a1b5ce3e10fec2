"""Retrieval metrics: Recall@K, Precision@1, R-Precision and MAP@R.

Definitions follow Musgrave, Belongie and Lim, "A Metric Learning Reality Check"
(ECCV 2020). Every query is compared with a set of references; its neighbours are the
references sorted by increasing distance (ties broken by the lower reference index).
For a query `q` with label `y_q`, let `R` be the number of references with label `y_q`
(in the leave-one-out form, the *other* items of the query's class) and let
`rel(i) = 1` when the `i`-th nearest reference has label `y_q`:

- `recall@K`: 1 if at least one of the `K` nearest references has label `y_q`
  (the definition used in the metric-learning literature, not the information-retrieval
  recall); averaged over queries.
- `precision@1`: `rel(1)`; equal to `recall@1`.
- `r_precision`: `(1 / R) * sum_{i <= R} rel(i)`.
- `map@r`: `(1 / R) * sum_{i <= R} rel(i) * P(i)` with `P(i) = (1 / i) * sum_{j <= i} rel(j)`.

Queries with `R = 0` (no other item of their class) have no correct answer and are
excluded from every average; `num_queries` in the result counts the queries that were
kept, `num_skipped_queries` those that were excluded.

This is evaluation code: it runs in NumPy (float64), independently of the Keras backend,
and never builds the full query × reference distance matrix: queries are processed by
chunks, and each chunk keeps only its `k = max(max(ks), max R)` nearest references.
"""

import numpy as np

from keras_triplet._validation import check_embedding_array, check_label_array
from keras_triplet.metrics.distances import check_metric, pairwise_distances_numpy

# Default working-set size: a chunk of queries × all references holds at most this many
# float64 distances (2**23 * 8 bytes = 64 MiB).
_CHUNK_ELEMENTS = 2**23


def _label_codes(query_labels, reference_labels):
    """Maps both label arrays to shared integer codes (works for ints and strings)."""
    try:
        both = np.concatenate([query_labels, reference_labels])
    except TypeError:
        both = np.concatenate([query_labels.astype(str), reference_labels.astype(str)])
    _, codes = np.unique(both, return_inverse=True)
    codes = codes.reshape(-1)
    return codes[: len(query_labels)], codes[len(query_labels) :]


def _top_k(d, k):
    """Indices `[C, k]` of the `k` smallest entries per row, ordered by (distance, index)."""
    n = d.shape[1]
    if k >= n:
        cand = np.broadcast_to(np.arange(n), d.shape).copy()
    else:
        cand = np.argpartition(d, k - 1, axis=1)[:, :k]
        cand.sort(axis=1)
        cand_d = np.take_along_axis(d, cand, axis=1)
        # argpartition picks an arbitrary subset of the values tied with the k-th one;
        # redo the (rare) rows where a lower-index tied reference was left out.
        kth = cand_d.max(axis=1, keepdims=True)
        n_tied_all = np.sum(d == kth, axis=1)
        n_tied_kept = np.sum(cand_d == kth, axis=1)
        for row in np.nonzero(n_tied_all != n_tied_kept)[0]:
            cand[row] = np.sort(np.argsort(d[row], kind="stable")[:k])
    cand_d = np.take_along_axis(d, cand, axis=1)
    # `cand` is sorted by index, so a stable sort on distance breaks ties by index.
    order = np.argsort(cand_d, axis=1, kind="stable")
    return np.take_along_axis(cand, order, axis=1)


def retrieval_metrics(
    embeddings,
    labels,
    ks=(1, 5),
    metric="euclidean",
    chunk_size=None,
    references=None,
    reference_labels=None,
):
    """Recall@K, Precision@1, R-Precision and MAP@R of a set of embeddings.

    By default every item queries all the *other* items (leave-one-out). Give
    `references` and `reference_labels` to query `embeddings` against a separate
    reference (gallery) set instead; then `R` counts every reference of the query's class
    and nothing is left out.

    Definitions (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020), with
    `rel(i) = 1` when the `i`-th nearest reference shares the query's label and `R` the
    number of references of the query's class:

    - `recall@K = 1[sum_{i<=K} rel(i) > 0]`,
    - `precision@1 = rel(1)`,
    - `r_precision = (1/R) sum_{i<=R} rel(i)`,
    - `map@r = (1/R) sum_{i<=R} rel(i) * (1/i) sum_{j<=i} rel(j)`,

    each averaged over queries. **Queries with `R = 0` are excluded** (they have no
    correct answer); the result counts the kept ones in `num_queries` and the excluded
    ones in `num_skipped_queries`. Neighbours at equal distance are ordered by reference
    index. When `K` is larger than the number of references, `recall@K` uses them all.

    Memory: queries are processed `chunk_size` at a time against all references, and each
    chunk keeps only its `max(max(ks), max R)` nearest neighbours, so the full distance
    matrix is never built. The default `chunk_size` keeps a chunk's distance block under
    64 MiB (83 queries per chunk for 100 000 references).

    Args:
        embeddings: `[N, D]` query embeddings (NumPy or anything `np.asarray` accepts).
        labels: `[N]` integer (or string) class labels of `embeddings`.
        ks: the `K` values of `recall@K`.
        metric: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or `"angular"` (as in
            `keras_triplet.distances`).
        chunk_size: queries per chunk; `None` picks one from the number of references.
        references: optional `[M, D]` reference embeddings.
        reference_labels: `[M]` labels of `references` (required with `references`).

    Returns:
        A dict of Python floats: `recall@K` for each `K` in `ks`, `precision@1`,
        `r_precision`, `map@r`, and the counts `num_queries` and `num_skipped_queries`
        (ints). The metrics are `nan` when no query has a correct answer.

    Example:

    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> y = np.array([0, 0, 1, 1])
    >>> m = retrieval_metrics(x, y, ks=(1,))
    >>> m["recall@1"], m["map@r"], m["num_queries"]
    (1.0, 1.0, 4)
    """
    ks = tuple(int(k) for k in np.atleast_1d(ks))
    if not ks or min(ks) < 1:
        raise ValueError(f"`ks` must be positive integers; got {ks}.")
    check_metric(metric)
    queries = check_embedding_array(embeddings, "`embeddings`")
    query_labels = check_label_array(labels, len(queries))
    leave_one_out = references is None
    if leave_one_out:
        if reference_labels is not None:
            raise ValueError("`reference_labels` was given without `references`.")
        refs, ref_labels = queries, query_labels
    else:
        if reference_labels is None:
            raise ValueError("`references` needs `reference_labels` (one label per reference).")
        refs = check_embedding_array(references, "`references`")
        ref_labels = check_label_array(
            reference_labels, len(refs), name="`reference_labels`", items="`references`"
        )
        if refs.shape[1] != queries.shape[1]:
            raise ValueError(
                f"`embeddings` have dimension {queries.shape[1]} but `references` have "
                f"dimension {refs.shape[1]}; both must come from the same embedder."
            )
    num_q, num_r = len(queries), len(refs)
    if num_q == 0 or num_r == 0:
        raise ValueError("`embeddings` and `references` must not be empty.")
    q_codes, r_codes = _label_codes(query_labels, ref_labels)
    class_sizes = np.bincount(r_codes, minlength=max(q_codes.max(), r_codes.max()) + 1)
    r_counts = class_sizes[q_codes] - (1 if leave_one_out else 0)
    available = num_r - 1 if leave_one_out else num_r
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // num_r)
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1; got {chunk_size}.")

    # Per-query values, averaged once at the end: the result does not depend on chunking.
    hits = {k: [] for k in ks}
    p_at_1, r_prec, map_r = [], [], []
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        r = r_counts[start:stop]
        valid = r > 0
        if not np.any(valid):
            continue
        rows = np.nonzero(valid)[0]
        d = pairwise_distances_numpy(queries[start:stop][rows], refs, metric)
        if leave_one_out:
            d[np.arange(len(rows)), start + rows] = np.inf
        r = r[rows]
        k = min(max(max(ks), int(r.max())), available)
        nn = _top_k(d, k)
        rel = (r_codes[nn] == q_codes[start:stop][rows][:, None]).astype(np.float64)
        for kk in ks:
            hits[kk].append(np.any(rel[:, :kk] > 0, axis=1).astype(np.float64))
        p_at_1.append(rel[:, 0])
        rel_r = rel * (np.arange(1, k + 1)[None, :] <= r[:, None])
        r_prec.append(np.sum(rel_r, axis=1) / r)
        precision_at_i = np.cumsum(rel_r, axis=1) / np.arange(1, k + 1)[None, :]
        map_r.append(np.sum(precision_at_i * rel_r, axis=1) / r)
    kept = int(sum(len(v) for v in p_at_1))

    def mean(parts):
        return float(np.mean(np.concatenate(parts))) if kept else float("nan")

    result = {f"recall@{k}": mean(hits[k]) for k in ks}
    result["precision@1"] = mean(p_at_1)
    result["r_precision"] = mean(r_prec)
    result["map@r"] = mean(map_r)
    result["num_queries"] = int(kept)
    result["num_skipped_queries"] = int(num_q - kept)
    return result
