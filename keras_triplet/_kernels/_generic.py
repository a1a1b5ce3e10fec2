"""`keras.ops` row primitives (TensorFlow, JAX, and any other backend)."""

from keras import ops

INDEX_DTYPE = "int32"


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
    # negatives' positive columns): a scatter into the flattened `[B, width]` array.
    rows = ops.shape(values)[0]
    flat = ops.scatter(ops.reshape(_flat(index, width), (-1, 1)), ops.reshape(values, (-1,)), (rows * width,))
    return ops.reshape(flat, (rows, width))


def _flat(index, width):
    """`[B, M]` column indices as indices into the flattened `[B, width]` array."""
    rows = ops.shape(index)[0]
    return index + ops.expand_dims(ops.arange(rows, dtype=index.dtype) * ops.cast(width, index.dtype), 1)


# Questions about each anchor's negatives at `[B, M]` thresholds (the positive distances
# plus an offset), asked by `miners.negatives.DirectNegatives`. `negatives` is `[B, R]`
# with +inf where a column is not a negative (gradients stopped). Here by direct
# comparison, `[B, M, R]`: fused into a few passes in compiled graphs.
DIRECT_COST_PER_THRESHOLD = True  # the comparisons grow with M: `with_negatives` caps M


def _compare(negatives, thresholds, inclusive):
    rows, limits = ops.expand_dims(negatives, 1), ops.expand_dims(thresholds, 2)
    return rows <= limits if inclusive else rows < limits


def count_negatives_below(negatives, thresholds, inclusive=False):
    """`[B, M]`: how many negatives are `< thresholds` (`≤` if inclusive)."""
    return ops.cast(ops.count_nonzero(_compare(negatives, thresholds, inclusive), axis=2), INDEX_DTYPE)


def negative_sum(negatives, distances, stop, stop_inclusive=False, start=None):
    """`[B, M]` sums of `distances` (`[B, R]`, differentiable) over the negatives `> start`
    (no lower bound if None) and `< stop` (`≤` if `stop_inclusive`)."""
    inside = _compare(negatives, stop, stop_inclusive)
    if start is not None:
        inside = ops.logical_and(inside, ops.expand_dims(negatives, 1) > ops.expand_dims(start, 2))
    return ops.matmul(ops.cast(inside, distances.dtype), ops.expand_dims(distances, 2))[:, :, 0]


def closest_negative_above(negative_distances, thresholds):
    """`(distance, found)`, `[B, M]` each: the smallest negative `> thresholds` (its
    distance, differentiable in `negative_distances`, the `[B, R]` distances with +inf
    where a column is not a negative; 0 where there is none) and whether there is one.
    A minimum rather than an argmin and a gather: XLA reduces a minimum in a few
    vectorised passes, an argmin (a reduction over pairs) an element at a time. On an
    exact tie the gradient is shared among the tied negatives."""
    rows = ops.expand_dims(negative_distances, 1)
    beyond = ops.stop_gradient(rows) > ops.expand_dims(thresholds, 2)
    closest = ops.min(ops.where(beyond, rows, float("inf")), axis=2)
    found = closest < float("inf")
    return ops.where(found, closest, 0.0), found
