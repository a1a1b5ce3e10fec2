"""Distances in NumPy (float64): the one copy used by the metrics, the index and the apps.

The same definitions as `keras_triplet.distances` (which computes them in `keras.ops`
for training):

- `"euclidean"`: `‖x − y‖₂`,
- `"squared_euclidean"`: `‖x − y‖₂²`,
- `"cosine"`: `1 − cos(x, y)`, a zero vector having similarity 0 with everything,
- `"angular"`: `max(1 − cos(x, y), 0)`.

`pairwise_distances_numpy(x, y)` gives the `[N, M]` matrix, `paired_distances_numpy(a, b)`
the `[N]` distances of matching rows. Neither checks for NaN (the callers validate their
inputs once, with `keras_triplet._validation.check_embedding_array`); both check the
metric and the shapes.
"""

import numpy as np

# The metrics this NumPy code computes; the definitions match `keras_triplet.distances`.
METRICS = ("euclidean", "squared_euclidean", "cosine", "angular")


def check_metric(metric):
    """Raises a `ValueError` naming the known metrics unless `metric` is one of them."""
    if metric not in METRICS:
        raise ValueError(
            f"Unknown metric {metric!r}. Expected one of {METRICS} "
            "(the same definitions as keras_triplet.distances)."
        )
    return metric


def unit_rows(x):
    """The rows of `x` divided by their L2 norms; a zero row stays zero.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
    # A zero vector stays zero: its cosine similarity with everything is 0.
    return x / np.where(norms > 0, norms, 1.0)


def _as_rows(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array [n, dim]; got shape {x.shape}.")
    return x


def _check_widths(x, y):
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` has dimension {x.shape[1]} but `y` has dimension {y.shape[1]}; both must "
            "come from the same embedder."
        )


def pairwise_distances_numpy(x, y, metric="euclidean"):
    """Distance matrix `[N, M]` between the rows of `x` `[N, D]` and `y` `[M, D]`, float64.

    Same definitions as `keras_triplet.distances.pairwise_distances`:
    `"euclidean"` `‖x − y‖₂`, `"squared_euclidean"` `‖x − y‖₂²`, `"cosine"`
    `1 − cos(x, y)` (a zero vector has similarity 0 with everything) and `"angular"`
    `max(1 − cos(x, y), 0)`. Used by the evaluation code and `EmbeddingIndex`; training
    code uses the Keras version.

    Example:

    >>> import numpy as np
    >>> pairwise_distances_numpy(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))
    array([[5.]])
    """
    check_metric(metric)
    x, y = _as_rows(x, "x"), _as_rows(y, "y")
    _check_widths(x, y)
    if metric in ("cosine", "angular"):
        d = 1.0 - unit_rows(x) @ unit_rows(y).T
        return np.maximum(d, 0.0) if metric == "angular" else d
    sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * (x @ y.T)
    sq = np.maximum(sq, 0.0)
    return np.sqrt(sq) if metric == "euclidean" else sq


def paired_distances_numpy(a, b, metric="euclidean"):
    """Distances `[N]` between row `i` of `a` and row `i` of `b` (both `[N, D]`), float64.

    The diagonal of `pairwise_distances_numpy(a, b, metric)`, without the `N × N` matrix
    (and computed from the differences, so exact for nearby rows).

    Example:

    >>> import numpy as np
    >>> paired_distances_numpy(np.array([[0.0, 0.0], [1.0, 0.0]]),
    ...                        np.array([[3.0, 4.0], [0.0, 2.0]]), "squared_euclidean")
    array([25.,  5.])
    """
    check_metric(metric)
    a, b = _as_rows(a, "a"), _as_rows(b, "b")
    _check_widths(a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"`a` has {a.shape[0]} rows but `b` has {b.shape[0]}; pair them row by row.")
    if metric in ("cosine", "angular"):
        d = 1.0 - np.sum(unit_rows(a) * unit_rows(b), axis=1)
        return np.maximum(d, 0.0) if metric == "angular" else d
    sq = np.sum((a - b) ** 2, axis=1)
    return np.sqrt(sq) if metric == "euclidean" else sq
