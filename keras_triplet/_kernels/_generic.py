"""`keras.ops` row primitives (TensorFlow, JAX, and any other backend)."""

from keras import ops

INDEX_DTYPE = "int32"


def argsort_rows(x):
    return ops.argsort(x, axis=1)


def take_along_rows(x, index):
    return ops.take_along_axis(x, index, axis=1)


def compact_columns(mask):
    # Compiled graphs need static shapes: every column is searched.
    return None


def scatter_rows(values, index, width):
    raise NotImplementedError("compact_columns never compacts on this backend")
