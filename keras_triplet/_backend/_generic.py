"""Row primitives in `keras.ops` (TensorFlow, JAX, and any other backend)."""

from keras import ops

INDEX_DTYPE = "int32"

# XLA fuses a broadcast comparison and its reduction: the direct search pays off.
FUSES_BROADCAST_COMPARISONS = True


def argsort_rows(x):
    return ops.argsort(x, axis=1)


def take_along_rows(x, index):
    # A gather from the flattened array at `row · width + index`: `[B, M]` int32 indices,
    # where `take_along_axis` builds `[B, M, 2]` ones (and XLA constant-folds an iota of
    # that size at compile time).
    return ops.take(ops.reshape(x, (-1,)), _flat(index, ops.shape(x)[1]), axis=0)


def compact_columns(mask):
    # Compiled graphs need static shapes: every column is searched.
    return None


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


def argmin_rows(x):
    # XLA's CPU argmin reduces (value, index) pairs one element at a time; a minimum, then
    # the smallest column holding it, are two vectorised reductions (the same first index).
    return _first_column_equal(x, ops.min(x, axis=1, keepdims=True))


def argmax_rows(x):
    return _first_column_equal(x, ops.max(x, axis=1, keepdims=True))


def argmin_above(values, thresholds):
    # All M minima first (one reduction over `[B, R]` per column), then every column's
    # index in one fused `[B, M, R]` comparison: chaining each minimum's index right after
    # it ran several times slower under XLA.
    closest = ops.stack(
        [
            ops.min(ops.where(values > thresholds[:, m : m + 1], values, float("inf")), axis=1)
            for m in range(thresholds.shape[1])
        ],
        axis=1,
    )
    return closest, _first_column_equal(ops.expand_dims(values, 1), ops.expand_dims(closest, 2))


def _first_column_equal(x, target):
    """The first column of the last axis of `x` equal to `target` (the last column if none)."""
    width = ops.shape(x)[-1]
    columns = ops.arange(width, dtype=INDEX_DTYPE)
    return ops.min(ops.where(x == target, columns, ops.cast(width - 1, INDEX_DTYPE)), axis=-1)
