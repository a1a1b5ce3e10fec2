"""`backend="faiss"`: search in a faiss flat index, distances in our metric definitions.

`IndexFlatL2` for the Euclidean metrics; for `cosine` / `angular`, `IndexFlatIP` on
L2-normalised vectors. faiss computes in float32, so distances agree with the exact
search to about 1e-5 (cosine) or 1e-4 (Euclidean), and near-ties may swap.
"""

import numpy as np

from keras_triplet.metrics.distances import unit_rows

_COSINE = ("cosine", "angular")


def require_faiss():
    """Imports faiss, or raises an `ImportError` saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "backend='faiss' needs the faiss package: `pip install faiss-cpu` (or use backend='exact')."
        ) from None
    return faiss


class FaissSearch:
    """A faiss flat index over `refs` `[N, D]`, built once; `search(queries, k)`.

    >>> search = FaissSearch(np.array([[0.0, 1.0], [1.0, 0.0]]), "cosine")
    >>> d, pos = search.search(np.array([[2.0, 0.1]]), 1)
    >>> pos.tolist()
    [[1]]
    """

    def __init__(self, refs, metric):
        faiss = require_faiss()
        self.metric = metric
        refs = np.asarray(refs, dtype=np.float64)
        if metric in _COSINE:
            self._index = faiss.IndexFlatIP(refs.shape[1])
            refs = unit_rows(refs)
        else:
            self._index = faiss.IndexFlatL2(refs.shape[1])
        self._index.add(np.ascontiguousarray(refs, dtype=np.float32))

    def search(self, queries, k):
        """`(distances, positions)`: float64 and int64 `[Q, k]`, nearest first."""
        q = np.asarray(queries, dtype=np.float64)
        if self.metric in _COSINE:
            q = unit_rows(q)
        scores, pos = self._index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        scores = scores.astype(np.float64)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(scores, 0.0))
        elif self.metric == "squared_euclidean":
            dist = np.maximum(scores, 0.0)
        else:
            dist = 1.0 - scores
            if self.metric == "angular":
                dist = np.maximum(dist, 0.0)
        return dist, pos.astype(np.int64)
