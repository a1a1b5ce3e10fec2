"""Exact k-nearest-neighbour search in NumPy, in bounded memory.

Queries are compared with the stored embeddings by chunks of queries and blocks of
stored embeddings (float64), keeping a running top-`k` per query, so no
queries × index matrix is ever built. Equal distances are ordered by position
(insertion order).
"""

import numpy as np

from keras_triplet.metrics.distances import pairwise_distances_numpy

# A query chunk × a block of stored embeddings holds at most this many float64 values.
_BLOCK_ELEMENTS = 2**22


def exact_search(refs, queries, k, metric, chunk_size):
    """The `k` nearest rows of `refs` `[N, D]` for each row of `queries` `[Q, D]`.

    Returns `(distances, positions)`: float64 `[Q, k]` (increasing along each row) and
    int64 `[Q, k]` row numbers of `refs`; `k <= N`.

    >>> d, pos = exact_search(np.array([[0.0], [3.0], [1.0]]), np.array([[0.9]]), 2,
    ...                       "euclidean", chunk_size=256)
    >>> pos.tolist(), d.round(3).tolist()
    ([[2, 0]], [[0.1, 0.9]])
    """
    n = refs.shape[0]
    q = np.asarray(queries, dtype=np.float64)
    chunk = min(chunk_size, q.shape[0]) or 1
    block = max(k, _BLOCK_ELEMENTS // chunk)
    out_d = np.empty((q.shape[0], k))
    out_p = np.empty((q.shape[0], k), dtype=np.int64)
    for r0 in range(0, n, block):
        r = refs[r0 : r0 + block].astype(np.float64)
        for q0 in range(0, q.shape[0], chunk):
            d = pairwise_distances_numpy(q[q0 : q0 + chunk], r, metric)
            pos = np.broadcast_to(np.arange(r0, r0 + r.shape[0]), d.shape)
            kk = min(k, d.shape[1])
            if kk < d.shape[1]:
                part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
                # Keep every value tied with the k-th one so ties resolve by position.
                kth = np.take_along_axis(d, part, axis=1).max(axis=1, keepdims=True)
                keep = d <= kth
                if np.all(keep.sum(axis=1) == kk):
                    d = np.take_along_axis(d, part, axis=1)
                    pos = np.take_along_axis(pos, part, axis=1)
                # else: rare ties at the boundary, merge the whole block below.
            if r0 > 0:
                d = np.concatenate([out_d[q0 : q0 + chunk], d], axis=1)
                pos = np.concatenate([out_p[q0 : q0 + chunk], pos], axis=1)
            order = np.lexsort((pos, d), axis=-1)[:, :k]
            out_d[q0 : q0 + chunk] = np.take_along_axis(d, order, axis=1)
            out_p[q0 : q0 + chunk] = np.take_along_axis(pos, order, axis=1)
    return out_d, out_p
