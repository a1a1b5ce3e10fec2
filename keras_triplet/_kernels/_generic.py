"""`keras.ops` row primitives (TensorFlow, JAX, and any other backend)."""

from keras import ops

INDEX_DTYPE = "int32"


def argsort_rows(x):
    return ops.argsort(x, axis=1)


def take_along_rows(x, index):
    # A gather from the flattened array at `row · width + index`: `[B, M]` int32 indices,
    # where `take_along_axis` builds `[B, M, 2]` ones (and XLA constant-folds an iota of
    # that size at compile time).
    rows, width = ops.shape(x)[0], ops.shape(x)[1]
    offsets = ops.expand_dims(ops.arange(rows, dtype=index.dtype) * ops.cast(width, index.dtype), 1)
    return ops.take(ops.reshape(x, (-1,)), index + offsets, axis=0)


def compact_columns(mask):
    # Compiled graphs need static shapes: every column is searched.
    return None


def scatter_rows(values, index, width):
    raise NotImplementedError("compact_columns never compacts on this backend")
