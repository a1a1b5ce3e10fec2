"""Row primitives in `keras.ops` (TensorFlow, JAX, and any other backend)."""

import math

from keras import ops

INDEX_DTYPE = "int32"

# XLA fuses elementwise steps and their reduction: row blocks would only cut its fusions apart.
FUSES_ELEMENTWISE_STEPS = True
# The largest `[B, M, R]` a direct search compares at once in a step XLA does not compile
# (a TensorFlow graph without XLA: `miners.search.DirectNegatives(broadcast=True)`): 16 MB
# of float32, B ≤ 512 at M = 16.
BROADCAST_ENTRIES = 2**22


def host_value(x):
    # Compiled steps (XLA, TensorFlow graphs) trace their tensors: no value to read.
    return None


def memoized_result(metric, compute):
    # Traced steps compute a metric's result once per trace; nothing to save.
    return compute()


def fori_loop(lower, upper, body, state):
    return ops.fori_loop(lower, upper, body, state)


def argsort_rows(x):
    return ops.argsort(x, axis=1)


def take_along_rows(x, index):
    # A gather from the flattened array at `row · width + index`: `[B, M]` int32 indices,
    # where `take_along_axis` builds `[B, M, 2]` ones (and XLA constant-folds an iota of
    # that size at compile time).
    return ops.take(ops.reshape(x, (-1,)), _flat(index, ops.shape(x)[1]), axis=0)


def without_diagonal(mask):
    rows = ops.expand_dims(ops.arange(ops.shape(mask)[0]), 1)
    cols = ops.expand_dims(ops.arange(ops.shape(mask)[1]), 0)
    return ops.logical_and(mask, rows != cols)


def self_euclidean(x):
    # `distances._self_euclidean` (keras.ops, a custom gradient) is the way: XLA fuses
    # its elementwise steps.
    return None


def sort_masked_rows(x, mask, filler):
    # Differentiable values: autodiff carries the gradients of the picks and sums read
    # from them (XLA fuses the backward pass's gathers and prefix sums).
    masked = ops.where(mask, x, filler)
    order = argsort_rows(ops.stop_gradient(masked))
    return take_along_rows(masked, order), order


def pick_sorted(values, order, index, count, distances):
    # `values` carry the gradient (`sort_masked_rows`).
    return take_along_rows(values, index)


def sum_sorted_runs(total, order, start, stop, distances):
    # `total` carries the gradient, through the prefix sums of `sort_masked_rows`' values.
    return total


def compact_columns(mask):
    # Compiled graphs need static shapes: every column is searched.
    return None


def compact_rows(mask):
    # Compiled graphs need static shapes: rows are masked, never compacted.
    return None


def search_rows(sorted_rows, thresholds, inclusive, limit=None):
    # XLA fuses each step of `miners.search.sorted_negatives.count_below`'s binary search:
    # the caller runs it.
    return None


def add_where(total, mask, values):
    return total + ops.where(mask, values, 0.0)


# Masks of this many static entries are counted in float32 (from B = 512 to 1024 at
# R = B: faster); others in int32: smaller ones (B = 256: the statistics of a training step
# took longer in float32) and larger ones, the blocks of the searches that run by blocks
# included (B = 4096: float32 counts were slower and held more memory; BENCHMARKS.md).
FLOAT_COUNT_ENTRIES = (2**18, 2**20)


def _entries(x):
    shape = x.shape
    if any(not isinstance(n, int) for n in shape):
        return None
    return math.prod(shape)


def count_true(mask, axis=None):
    if axis is None:
        return ops.count_nonzero(mask)
    entries = _entries(mask)
    if entries is not None and FLOAT_COUNT_ENTRIES[0] <= entries <= FLOAT_COUNT_ENTRIES[1]:
        # XLA's CPU kernels vectorise a float32 conversion and sum, not the int32 ones;
        # float32 counts are exact below 2^24.
        return ops.cast(ops.sum(ops.cast(mask, "float32"), axis=axis), "int32")
    return ops.sum(ops.cast(mask, "int32"), axis=axis)


def scatter_rows(values, index, width):
    # The inverse of `take_along_rows` for distinct indices per row (the direct
    # search's positive columns): a scatter into the flattened `[B, width]` array.
    rows = ops.shape(values)[0]
    flat = ops.scatter(ops.reshape(_flat(index, width), (-1, 1)), ops.reshape(values, (-1,)), (rows * width,))
    return ops.reshape(flat, (rows, width))


def _flat(index, width):
    """`[B, M]` column indices as indices into the flattened `[B, width]` array."""
    rows = ops.shape(index)[0]
    return index + ops.expand_dims(ops.arange(rows, dtype=index.dtype) * ops.cast(width, index.dtype), 1)


def margin_cross_entropy(logits, labels, target):
    # The own entries replaced by one scatter (its gradient zeroes them), then Keras's
    # sparse cross-entropy from logits.
    rows = ops.arange(ops.shape(labels)[0], dtype=labels.dtype)
    logits = ops.scatter_update(logits, ops.stack([rows, labels], axis=1), target)
    return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def switch_with_own_gradients(index, branches, x):
    # JAX and TensorFlow alone (`_jax.py`, `_tensorflow.py`); elsewhere the caller keeps
    # its `ops.cond`s.
    return None


# No switch here: nothing to ask for.
SWITCH_BAND_SEARCHES = False
SWITCH_MIN_ENTRIES = None
