"""Per-anchor row operations on a `[B, R]` distance matrix, in O(B·R) memory.

The idea that keeps semi-hard and batch-all mining quadratic: sort each anchor's
negative distances once. Then

* "the closest negative farther than t" is the entry at index `count(negatives ≤ t)`;
* "the sum over negatives of max(t + margin − d(a, n), 0)" is
  `k · (t + margin) − prefix_sum[k]` with `k = count(negatives < t + margin)`.

Counts come from a vectorised binary search (`count_below`): exact `<`/`≤`
comparisons, O(log R) gathers of `[B, M]`, and no reliance on a stable sort. Gradients
reach the chosen distances through `take_along_axis` gathers; nothing of size B³ exists.
"""

import math

from keras import ops


def masked_argmin(values, mask):
    """Index of the smallest `values` entry where `mask` holds, per row, and whether any."""
    big = ops.max(ops.stop_gradient(values)) + 1.0
    return ops.argmin(ops.where(mask, ops.stop_gradient(values), big), axis=1), ops.any(mask, axis=1)


def masked_argmax(values, mask):
    """Index of the largest `values` entry where `mask` holds, per row, and whether any."""
    small = ops.min(ops.stop_gradient(values)) - 1.0
    return ops.argmax(ops.where(mask, ops.stop_gradient(values), small), axis=1), ops.any(mask, axis=1)


def gather_rows(values, index):
    """`values[a, index[a]]` for each row `a` (differentiable in `values`)."""
    return ops.take_along_axis(values, ops.expand_dims(ops.cast(index, "int32"), 1), axis=1)[:, 0]


class SortedNegatives:
    """Each anchor's negative distances in ascending order.

    Attributes:
        values: `[B, R]`; row `a` holds the distances to `a`'s negatives sorted ascending,
            then a large finite filler for the non-negative columns.
        count: `[B]` int32, the number of negatives of each anchor.
    """

    def __init__(self, distances, negative_mask):
        filler = ops.max(ops.stop_gradient(distances)) + 1.0
        masked = ops.where(negative_mask, distances, filler)
        order = ops.argsort(ops.stop_gradient(masked), axis=1)
        self.values = ops.take_along_axis(masked, order, axis=1)
        self.count = ops.cast(ops.sum(ops.cast(negative_mask, "int32"), axis=1), "int32")
        self._prefix = None

    def count_below(self, thresholds, inclusive=False):
        """`[B, M]` int32: per row, how many negatives are `< t` (`≤ t` if inclusive)."""
        found = count_below(self.values, thresholds, inclusive=inclusive)
        # The filler sorts after every negative but may still lie below a large threshold.
        return ops.minimum(found, ops.expand_dims(self.count, 1))

    def take(self, index):
        """`[B, M]` distances of the negatives at sorted positions `index` (`[B, M]`)."""
        last = ops.maximum(ops.shape(self.values)[1] - 1, 0)
        return ops.take_along_axis(self.values, ops.clip(ops.cast(index, "int32"), 0, last), axis=1)

    def range_sum(self, start, stop):
        """`[B, M]` sums of the sorted negatives at positions `[start, stop)`.

        Uses prefix sums of the distances centred on each row's mean, which keeps the
        difference of two prefix sums accurate in float32 for large batches.
        """
        if self._prefix is None:
            real = ops.expand_dims(ops.arange(ops.shape(self.values)[1]), 0) < ops.expand_dims(self.count, 1)
            n = ops.maximum(ops.cast(self.count, self.values.dtype), 1.0)
            center = ops.stop_gradient(
                ops.sum(ops.where(real, self.values, 0.0), axis=1, keepdims=True) / ops.expand_dims(n, 1)
            )
            centered = ops.where(real, self.values - center, 0.0)
            zeros = ops.zeros_like(centered[:, :1])
            self._prefix = ops.concatenate([zeros, ops.cumsum(centered, axis=1)], axis=1)
            self._center = center
        start = ops.cast(start, "int32")
        stop = ops.cast(stop, "int32")
        total = ops.take_along_axis(self._prefix, stop, axis=1) - ops.take_along_axis(self._prefix, start, axis=1)
        return total + ops.cast(stop - start, total.dtype) * self._center


def count_below(sorted_rows, thresholds, inclusive=False):
    """Batched `searchsorted`: per row `r`, the number of entries of `sorted_rows[r]`
    (ascending) that are `< thresholds[r, j]` (`≤` when `inclusive`).

    A binary search by halving steps: `pos` grows by `2^k, …, 2, 1` while the entry just
    below the candidate position still satisfies the comparison. One `[B, M]` state and
    one gather per step, inside `fori_loop` so that compiled code reuses its buffers:
    O(B·M·log R) time, O(B·M) memory, and exact comparisons (no stable sort needed).
    """
    sorted_rows = ops.stop_gradient(sorted_rows)
    thresholds = ops.stop_gradient(thresholds)
    n = ops.shape(sorted_rows)[1]
    if isinstance(n, int):
        levels = max(1, math.ceil(math.log2(n + 1)))
    else:  # a TF graph with a dynamic batch size
        levels = ops.cast(ops.ceil(ops.log(ops.cast(n + 1, "float32")) / math.log(2.0)), "int32")
    n = ops.cast(n, "int32")

    def step(i, state):
        pos, stride = state
        candidate = pos + stride
        probe = ops.take_along_axis(sorted_rows, ops.minimum(candidate, n) - 1, axis=1)
        below = (probe <= thresholds) if inclusive else (probe < thresholds)
        pos = ops.where(ops.logical_and(candidate <= n, below), candidate, pos)
        return pos, stride // 2

    pos = ops.zeros(ops.shape(thresholds), dtype="int32")
    stride = ops.cast(2 ** (levels - 1) if isinstance(levels, int) else ops.power(2, levels - 1), "int32")
    pos, _ = ops.fori_loop(0, levels, step, (pos, stride))
    return pos
