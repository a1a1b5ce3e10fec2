"""Reductions shared by the log-sum-exp losses: a numerically safe log-sum-exp over the
masked entries of each row, and the two batch averages pytorch-metric-learning's reducers
define (`MeanReducer`: over every term; `AvgNonZeroReducer`: over the terms > 0)."""

import keras
from keras import ops

from keras_triplet._backend import count_true


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
