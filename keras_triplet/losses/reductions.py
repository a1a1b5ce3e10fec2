"""Reductions shared by the log-sum-exp losses: a numerically safe log-sum-exp over the
masked entries of each row, and the two batch averages pytorch-metric-learning's reducers
define (`MeanReducer`: over every term; `AvgNonZeroReducer`: over the terms > 0)."""

import keras
from keras import ops

from keras_triplet._backend import FUSES_ELEMENTWISE_STEPS, count_true
from keras_triplet.distances import _upstream


def masked_logsumexp(values, mask, axis=1):
    """`log Σ_{j: mask} exp(values_j)` along `axis`, and 0 where the mask is empty.

    (0 for an empty row is pytorch-metric-learning's convention, `lmu.logsumexp`, and what
    its losses add up.) Each row's largest masked value `c` is subtracted before `exp`, so
    exponents as large as a temperature of 0.07 or a scale of 80 give (e^{x/0.07}, e^{80 x})
    never overflow: every factor lies in (0, 1] and the sum in [1, R]. `c` carries no
    gradient: the result does not depend on it, so the gradient (the masked softmax) is
    exact. Masked-out entries get neither value nor gradient, whatever they hold.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> values = np.array([[1000.0, 1000.0, -5.0], [1.0, 2.0, 3.0]], "float32")
    >>> mask = np.array([[True, True, False], [False, False, False]])
    >>> [round(float(v), 3) for v in ops.convert_to_numpy(masked_logsumexp(values, mask))]
    [1000.693, 0.0]
    """
    values = ops.convert_to_tensor(values)
    mask = ops.convert_to_tensor(mask)
    # Masked-out entries become the lowest finite value: each row's maximum is then its
    # largest masked value, and exp(lowest − c) is exactly 0 (value and gradient), so the
    # entries need no second mask after `exp`. (Three [B, R] steps and two for the
    # gradient: on eager PyTorch each is a pass over memory, and autograd keeps its input.)
    shifted = ops.where(mask, values, lowest(values.dtype))
    c = ops.stop_gradient(ops.max(shifted, axis=axis, keepdims=True))
    total = ops.sum(ops.exp(shifted - c), axis=axis)
    found = ops.any(mask, axis=axis)
    c = ops.squeeze(c, axis=axis)
    return ops.where(found, c + ops.log(ops.where(found, total, 1.0)), 0.0)


def lowest(dtype):
    """The most negative finite value of a float dtype (a stand-in for −inf whose
    differences with finite numbers are never NaN)."""
    return _LOWEST[keras.backend.standardize_dtype(dtype)]


_LOWEST = {
    "float16": -65504.0,
    "bfloat16": -3.3895313892515355e38,
    "float32": -3.4028234663852886e38,
    "float64": -1.7976931348623157e308,
}


def mean_over(values, counted):
    """`Σ values / (number of counted terms)`, 0 when none is counted (`MeanReducer` over
    the counted terms; `values` is 0 where not counted)."""
    count = ops.cast(count_true(counted), values.dtype)  # no [B, R] float (or int64) copy
    return ops.sum(values) / ops.maximum(count, 1.0)


def mean_of_nonzero(values):
    """The mean of the entries > 0, 0 if none (`AvgNonZeroReducer`)."""
    return mean_over(ops.where(values > 0, values, 0.0), values > 0)


# --------------------------------------------------------------------------- hand-written gradients
#
# The pair and log-sum-exp losses are smooth functions of the [B, R] distance matrix whose
# derivative with respect to that matrix has a closed form (the softmax weights of each
# masked log-sum-exp, times per-row factors). Autodiff keeps every [B, R] step of the
# forward pass alive for the backward pass (about ten of them per loss: 64 MB each at
# B = 4096); `loss_with_matrix_gradient` computes the value and that derivative in the
# forward pass and keeps only the derivative, so a loss's backward pass is one product.


def loss_with_matrix_gradient(value_and_gradient, matrix, *masks):
    """`value_and_gradient(matrix, *masks)[0]`, a scalar whose gradient with respect to
    `matrix` is `gradient · scale` (times the upstream gradient), where
    `value_and_gradient(matrix, *masks)` returns `(value, gradient)` or
    `(value, gradient, scale)`.

    `value_and_gradient` runs without autodiff and returns the scalar and its `[B, R]`
    derivative (with a scalar factor apart, applied in the backward pass, where it costs
    nothing); only those are kept for the backward pass. The tensors it reads besides
    `matrix` (the boolean pair masks) must come in `masks`, not from its closure: JAX's
    custom gradients cannot close over traced values (they leak out of a compiled step).
    The result supports reverse-mode gradients only (as `distances.pairwise_distances(x)`).
    """

    @ops.custom_gradient
    def loss(matrix, *masks):
        value, gradient, *scale = value_and_gradient(matrix, *masks)

        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            return (gradient * (upstream * scale[0] if scale else upstream),) + (None,) * len(masks)

        return value, grad

    return loss(matrix, *masks)


# Entries of a row block: its [rows, R] steps are 8 MB in float32. Above this, the losses
# run in row blocks where each elementwise step is an array of its own (eager PyTorch), so
# that the peak holds a few blocks and not a few [B, R] arrays. XLA (TensorFlow, JAX)
# fuses the steps of the whole matrix already: there, blocks only cut its fusions apart
# (more memory, not less: BENCHMARKS.md, issue 16) and unroll the program into a larger one
# to compile.
BLOCK_ENTRIES = 2**21


def by_row_blocks(fn, *matrices):
    """`fn(*matrices)`, computed on blocks of rows of the `[B, R]` `matrices` (at most
    `BLOCK_ENTRIES` entries each) and concatenated along the first axis.

    `fn` maps row blocks to a tuple of arrays whose first axis is the block's rows (row
    statistics `[b]`, gradient blocks `[b, R]`); each row's result must depend on its own
    rows only. The blocks are a Python loop (unrolled when compiled) over static shapes;
    with a dynamic shape, `B · R` within one block, or where the backend fuses elementwise
    steps (XLA), `fn` runs once on the whole.
    """
    b, r = matrices[0].shape[0], matrices[0].shape[1]
    static = isinstance(b, int) and isinstance(r, int)
    if FUSES_ELEMENTWISE_STEPS or not static or b * r <= BLOCK_ENTRIES:
        return fn(*matrices)
    rows = max(1, BLOCK_ENTRIES // r)
    blocks = [fn(*(m[start : start + rows] for m in matrices)) for start in range(0, b, rows)]
    return tuple(ops.concatenate(list(parts), axis=0) for parts in zip(*blocks))


def masked_softmax(values, masks, with_zero=False):
    """Per-row log-sum-exps of `values` over each of the disjoint boolean `masks`, and their
    softmax weights in one `[B, R]` matrix: `(lses, weights)`.

    `lses[k]` is `masked_logsumexp(values, masks[k])` (the same float operations, so the
    same bits), or with `with_zero=True` `log(1 + Σ_{masks[k]} exp(values))` (an extra
    logit 0 in each row, 0 for an empty row). `weights` holds, on the entries of
    `masks[k]`, the derivative of `lses[k]` with respect to `values`
    (`exp(values − lses[k])`, computed as the max-shifted exponential over its row sum),
    and 0 elsewhere: masks are disjoint, so one matrix holds them all.
    """
    union = masks[0]
    for mask in masks[1:]:
        union = ops.logical_or(union, mask)
    floor = lowest(values.dtype)
    # (Each step rebinds or deletes what it no longer needs: on eager PyTorch every [B, R]
    # step is a new array, and the peak is the number alive at once.)
    shifted = ops.where(union, values, floor)
    # Each mask's row maximum; an entry is shifted by that of its mask (by the last one's
    # outside every mask, where it is at `floor` and exp gives 0 unless the row is empty).
    if len(masks) == 1:
        maxima = [ops.max(shifted, axis=1, keepdims=True)]
    else:
        maxima = [ops.max(ops.where(mask, shifted, floor), axis=1, keepdims=True) for mask in masks]
    if with_zero:
        maxima = [ops.maximum(c, 0.0) for c in maxima]
    shift = maxima[-1]
    for mask, c in zip(masks[:-1], maxima[:-1]):
        shift = ops.where(mask, c, shift)
    shifted = shifted - shift
    del shift
    exps = ops.exp(shifted)
    del shifted
    if len(masks) == 1:
        totals = [ops.sum(exps, axis=1, keepdims=True)]
    else:
        totals = [ops.sum(ops.where(mask, exps, 0.0), axis=1, keepdims=True) for mask in masks]
    if with_zero:
        totals = [ops.exp(-c) + total for c, total in zip(maxima, totals)]
    lses = []
    for mask, c, total in zip(masks, maxima, totals):
        c, total = ops.squeeze(c, 1), ops.squeeze(total, 1)
        if with_zero:
            lses.append(c + ops.log(total))
        else:
            found = ops.any(mask, axis=1)
            lses.append(ops.where(found, c + ops.log(ops.where(found, total, 1.0)), 0.0))
    total = totals[-1]
    for mask, row_total in zip(masks[:-1], totals[:-1]):
        total = ops.where(mask, row_total, total)
    exps = exps / total
    del total
    # An empty row's entries are exp(floor − floor) = 1 over a total of 0 or R: not weights.
    return lses, ops.where(union, exps, 0.0)
