"""Reductions shared by the log-sum-exp losses: a numerically safe log-sum-exp over the
masked entries of each row, and the two batch averages pytorch-metric-learning's reducers
define (`MeanReducer`: over every term; `AvgNonZeroReducer`: over the terms > 0)."""

from keras import ops


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
    blocked = ops.stop_gradient(values)
    # Fill the masked-out entries with the smallest value: each row's maximum is then its
    # largest masked value (or, for an empty row, some value that is not used).
    c = ops.max(ops.where(mask, blocked, ops.min(blocked)), axis=axis, keepdims=True)
    terms = ops.where(mask, ops.exp(ops.where(mask, values - c, 0.0)), 0.0)
    total = ops.sum(terms, axis=axis)
    found = ops.any(mask, axis=axis)
    c = ops.squeeze(c, axis=axis)
    return ops.where(found, c + ops.log(ops.where(found, total, 1.0)), 0.0)


def mean_over(values, counted):
    """`Σ values / (number of counted terms)`, 0 when none is counted (`MeanReducer` over
    the counted terms; `values` is 0 where not counted)."""
    count = ops.sum(ops.cast(counted, values.dtype))
    return ops.sum(values) / ops.maximum(count, 1.0)


def mean_of_nonzero(values):
    """The mean of the entries > 0, 0 if none (`AvgNonZeroReducer`)."""
    return mean_over(ops.where(values > 0, values, 0.0), values > 0)
