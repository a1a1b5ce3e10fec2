"""Pairwise distance matrices, written in `keras.ops` for every backend.

This module is the only place that knows how a distance is computed; miners and
losses ask it for a `[N, M]` matrix by name.

| metric                | d(x, y)                                                   |
|-----------------------|-----------------------------------------------------------|
| `"euclidean"`         | ‖x − y‖₂                                                  |
| `"squared_euclidean"` | ‖x − y‖₂²                                                 |
| `"cosine"`            | 1 − cos(x, y); a zero vector has similarity 0 with all    |
| `"angular"`           | max(1 − cos(x, y), 0), tensorflow-addons' "angular"       |
| `"minkowski"`         | (Σ_k |x_k − y_k|^p)^(1/p), p ≥ 1                          |

The Euclidean root (`safe_sqrt`) and the Minkowski root have gradient 0 (not NaN) where
the distance is 0: the classic NaN of `sqrt` at 0 hits the diagonal and every pair of
duplicate embeddings.

`pairwise_similarities` is apart from them: the dot product `x·y` (larger is closer, no
zero diagonal), for the losses defined on it (`losses.NPairsLoss(distance="dot")`); it is not a metric of
`METRICS`.
"""

from keras import ops

from keras_triplet._backend import self_euclidean
from keras_triplet._validation import check_choice, check_embeddings

METRICS = ("euclidean", "squared_euclidean", "cosine", "angular", "minkowski")

# tf.math.l2_normalize's epsilon (on the squared norm), so "angular" matches tensorflow-addons.
_NORM_EPSILON = 1e-12


def check_metric(metric, p=None):
    """Validates a metric name (and `p` for Minkowski); returns the name."""
    check_choice(metric, METRICS, "distance metric")
    if metric == "minkowski":
        if p is None or not float(p) >= 1.0:
            raise ValueError(f"The Minkowski distance needs `p >= 1` (p < 1 is not a metric); got p={p}.")
    elif p is not None:
        raise ValueError(f"`p` only applies to the 'minkowski' metric, not to {metric!r}.")
    return metric


_SQRT_FLOOR = 1e-30  # > 0 and a normal float32; sqrt(_SQRT_FLOOR) = 1e-15


def safe_sqrt(x):
    """`sqrt(max(x, 0))` with gradient 0 where `x <= 0` (instead of inf or NaN).

    (Below 1e-30, a squared distance far under float32 rounding, the value is 1e-15
    with gradient 0.)
    """
    # max(x, tiny) keeps sqrt's gradient finite and routes none of it to x <= tiny; the
    # `where` makes value and gradient exactly 0 where x <= 0. (One `where` and a boolean
    # mask: fewer and smaller full-size arrays than the two-`where` idiom, which
    # matters for memory and speed on eager PyTorch.)
    return ops.where(x > 0, ops.sqrt(ops.maximum(x, _SQRT_FLOOR)), 0.0)


def l2_normalize(x, axis=-1):
    """`x / ‖x‖`, leaving zero vectors at zero (finite gradient)."""
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, _NORM_EPSILON))


def _squared_euclidean(x, y, clip=True):
    # ‖x‖² + ‖y‖² − 2 x·y: one matmul, O(N·M) memory; clipped at 0 against rounding
    # (`clip=False` before `safe_sqrt`, which maps x ≤ 0 to 0 itself: one [N, M] array less).
    xx = ops.sum(ops.square(x), axis=1, keepdims=True)
    yy = ops.sum(ops.square(y), axis=1, keepdims=True)
    # The norms ride in the product, as in torch.cdist: [−2x, ‖x‖², 1] · [y, 1, ‖y‖²]ᵀ is
    # the whole sum, one [N, M] array where adding them after the product makes three
    # (eager backends run each addition as a pass over a new array). (−2x scales the
    # [N, D] input, not the product: exact, ×2 is.)
    ones = ops.ones_like(xx)
    left = ops.concatenate([-2.0 * x, xx, ones], axis=1)
    right = ops.concatenate([y, ops.ones_like(yy), yy], axis=1)
    squared = ops.matmul(left, ops.transpose(right))
    # `relu`, not `maximum(·, 0)`: the same values, and on eager PyTorch a one-pass
    # gradient (`maximum`'s splits ties and costs several [N, M] passes).
    return ops.relu(squared) if clip else squared


def _cosine(x, y):
    return 1.0 - ops.matmul(l2_normalize(x), ops.transpose(l2_normalize(y)))


# --------------------------------------------------------------------------- x against itself
#
# The square matrices every batch loss starts from have a hand-written gradient. Autodiff
# of the matmul expansion walks back through every [B, B] step of the forward pass (the
# masks of `safe_sqrt`, the `maximum`, the division of sqrt's derivative, the zeroed
# diagonal), keeping each step's input alive for it. For a matrix of x against itself, with
# G the upstream gradient and d symmetric, the derivative is two products and at most one
# [B, B] step:
#
#     ∂L/∂x_k = Σ_j (H_kj + H_jk) (x_k − x_j),  H = G / d where d > 0, else 0   (Euclidean)
#     ∂L/∂x̂_k = −Σ_{j ≠ k} (G_kj + G_jk) x̂_j                                  (cosine)
#
# the same derivative as autodiff's (to float32 rounding), with one [B, B] array kept for
# the backward pass (the distances) instead of about ten. `H + Hᵀ` is never formed: adding
# a transposed [B, B] array strides through memory and costs more than a second product,
# whose transpose the matrix product reads for free.
def _upstream(args, upstream):
    # keras.ops.custom_gradient passes it positionally (TensorFlow, JAX) or as a keyword (PyTorch).
    return args[0] if upstream is None else upstream


def _off_diagonal(n):
    idx = ops.arange(n)
    return ops.expand_dims(idx, 1) != ops.expand_dims(idx, 0)


@ops.custom_gradient
def _self_euclidean(x):
    squared = _squared_euclidean(x, x, clip=False)
    # safe_sqrt with the diagonal zeroed, in one `where`: the same values.
    kept = ops.logical_and(squared > 0, _off_diagonal(ops.shape(x)[0]))
    distances = ops.where(kept, ops.sqrt(ops.maximum(squared, _SQRT_FLOOR)), 0.0)
    # The backward pass reads the matrix through a detached alias (the same memory): on
    # PyTorch the returned tensor holds the backward node, and a closure over it would make
    # a reference cycle that keeps every step's [B, B] matrix alive until Python's garbage
    # collector runs.
    saved = ops.stop_gradient(distances)

    def grad(*args, upstream=None):
        g = _upstream(args, upstream)
        # safe_sqrt's gradient is 0 at and below its floor (d ≤ sqrt(_SQRT_FLOOR)), so on
        # the diagonal (d = 0) and between duplicates; the division is not taken there.
        h = ops.where(saved > _SQRT_FLOOR**0.5, g / saved, 0.0)
        weight = ops.sum(h, axis=1, keepdims=True) + ops.expand_dims(ops.sum(h, axis=0), 1)
        return x * weight - ops.matmul(h, x) - ops.matmul(ops.transpose(h), x)

    return distances, grad


@ops.custom_gradient
def _self_cosine(normalized):
    off_diagonal = _off_diagonal(ops.shape(normalized)[0])
    distances = ops.where(off_diagonal, 1.0 - ops.matmul(normalized, ops.transpose(normalized)), 0.0)

    def grad(*args, upstream=None):
        g = _upstream(args, upstream)
        # (G + Gᵀ) x̂ less its diagonal terms 2 G_kk x̂_k: the diagonal is constant (0).
        products = ops.matmul(g, normalized) + ops.matmul(ops.transpose(g), normalized)
        return 2.0 * ops.expand_dims(ops.diagonal(g), 1) * normalized - products

    return distances, grad


def _minkowski(x, y, p):
    if float(p) == 2.0:
        return safe_sqrt(_squared_euclidean(x, y, clip=False))
    # [N, M, D] intermediate: Minkowski has no matmul form (memory N·M·D, never N·M·M).
    diff = ops.abs(ops.expand_dims(x, 1) - ops.expand_dims(y, 0))
    total = ops.sum(diff if float(p) == 1.0 else ops.power(diff, float(p)), axis=-1)
    if float(p) == 1.0:
        return total
    positive = total > 0
    root = ops.power(ops.where(positive, total, ops.ones_like(total)), 1.0 / float(p))
    return ops.where(positive, root, 0.0)


def pairwise_distances(x, y=None, metric="euclidean", p=None):
    """Distance matrix between the rows of `x` and the rows of `y`.

    Args:
        x: `[N, D]` embeddings.
        y: `[M, D]` embeddings, or None for `x` against itself. With `y=None` the result is
            square and its diagonal is exactly 0 for every metric; its "euclidean" and
            "cosine" matrices then have a hand-written first derivative (see above), so
            they support reverse-mode gradients only (no second derivatives on PyTorch,
            no forward mode on JAX); pass `y=x` for plain autodiff.
        metric: one of `keras_triplet.distances.METRICS` (see the module docstring).
        p: the order of the `"minkowski"` metric (`p >= 1`).

    Returns:
        A `[N, M]` float tensor (float32 for float16/bfloat16 inputs).

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0]], "float32")
    >>> ops.convert_to_numpy(pairwise_distances(x)).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    check_metric(metric, p)
    square = y is None
    x, y = _check_pair(x, y)

    if square and metric == "euclidean":
        # Eager PyTorch: the same matrix and gradient, written in place (`_backend`).
        found = self_euclidean(x)
        return _self_euclidean(x) if found is None else found
    if square and metric == "cosine":
        return _self_cosine(l2_normalize(x))
    if metric == "euclidean":
        d = safe_sqrt(_squared_euclidean(x, y, clip=False))
    elif metric == "squared_euclidean":
        d = _squared_euclidean(x, y)
    elif metric == "cosine":
        d = _cosine(x, y)
    elif metric == "angular":
        d = ops.maximum(_cosine(x, y), 0.0)
    else:
        d = _minkowski(x, y, p)

    if square:
        # Rounding leaves small non-zero self-distances; self-pairs are exactly 0.
        d = ops.where(_off_diagonal(ops.shape(x)[0]), d, 0.0)
    return d


def pairwise_similarities(x, y=None):
    """Dot-product similarity matrix `x·yᵀ` between the rows of `x` and of `y`.

    Larger is closer, and the diagonal is `‖x_i‖²` (not 0): this is not one of the
    distances of `METRICS`. pytorch-metric-learning's
    `DotProductSimilarity(normalize_embeddings=False)` (its default normalises: the
    cosine similarity), which `losses.NPairsLoss(distance="dot")` uses.

    Args:
        x: `[N, D]` embeddings.
        y: `[M, D]` embeddings, or None for `x` against itself.

    Returns:
        A `[N, M]` float tensor (float32 for float16/bfloat16 inputs).

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> x = np.array([[1.0, 2.0], [3.0, 0.0]], "float32")
    >>> ops.convert_to_numpy(pairwise_similarities(x)).tolist()
    [[5.0, 3.0], [3.0, 9.0]]
    """
    x, y = _check_pair(x, y)
    return ops.matmul(x, ops.transpose(y))


def _check_pair(x, y):
    """`(x, y)` as float `[N, D]` and `[M, D]` tensors of x's dtype (`y` is `x` when
    None), or a ValueError that says which is wrong."""
    x = check_embeddings(x, name="x")
    if y is None:
        return x, x
    y = check_embeddings(y, name="y")
    if x.shape[1] is not None and y.shape[1] is not None and x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same embedding dimension; got {x.shape[1]} and {y.shape[1]}."
        )
    return x, ops.cast(y, x.dtype)
