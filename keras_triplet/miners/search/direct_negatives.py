"""The direct search: each anchor's few positives, one at a time, compared with all its
negatives; no sort.

For P×K batches an anchor has M = K − 1 positives. The search takes the `[B, M]`
positive distances as thresholds, one column `m` at a time, and compares each with the
`[B, R]` negative distances: a selection is a masked minimum over the row (semi-hard),
a band a masked count and sum (batch-all, the statistics). M passes over `[B, R]`
arrays: no `[B, M, R]` array exists, so memory stays O(B·R) at any batch size and eager
PyTorch runs a few `[B, R]` operations per positive. Every comparison is made with
gradients stopped (selections are piecewise constant in the distances); gradients reach
the distances through one gather of the chosen negatives (semi-hard) or the band's
masked sums (batch-all). `choice.py` caps M.
"""

from keras import ops

from keras_triplet._backend import INDEX_DTYPE, take_along_rows
from keras_triplet.miners.search.anchor_negatives import AnchorNegatives


class DirectNegatives(AnchorNegatives):
    """Each anchor's `M` positive columns compared with all its negatives, no sort.

    Args:
        distances: `[B, R]`; negative_mask, positive_mask: `[B, R]` booleans.
        width: `M`, at least the largest number of positives of an anchor (positives
            beyond it are dropped: `with_negatives` checks this).

    Builds on `AnchorNegatives`. The positives are compacted to `[B, M]` with one `top_k`
    of the mask; each question compares the thresholds of one column `m` at a time with
    the `[B, R]` negative distances (a static loop over M). Distances are read with
    gradients stopped, except those returned: a band's sum and the chosen negatives.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> from keras_triplet.miners import pair_masks
    >>> d = ops.convert_to_tensor(np.array(
    ...     [[0, 1, 2, 4], [1, 0, 3, 1], [2, 3, 0, 5], [4, 1, 5, 0]], "float32"))
    >>> positive, negative = pair_masks(ops.convert_to_tensor(np.array([0, 0, 1, 1])))
    >>> count, total = DirectNegatives(d, negative, positive, width=1).band(2.0)
    >>> ops.convert_to_numpy(count).ravel().tolist()  # negatives below d(a, p) + 2
    [1, 1, 2, 2]
    """

    def __init__(self, distances, negative_mask, positive_mask, width):
        super().__init__(distances, negative_mask, positive_mask)
        # top_k of a 0/1 mask: the positive columns first (k ≥ each row's count).
        scores = ops.cast(positive_mask, "float32")
        references = distances.shape[1]
        if references is None or references < width:
            # A graph whose batch may be narrower than M (a last, partial batch): pad the
            # mask with M non-positive columns so that top_k is always defined. Picks of
            # padding are clamped to the last real column; the query mask, read from the
            # padded mask, stays False for them.
            scores = ops.concatenate([scores, ops.zeros((ops.shape(scores)[0], width), scores.dtype)], axis=1)
        columns = ops.cast(ops.top_k(scores, width, sorted=False)[1], INDEX_DTYPE)
        self._compact(
            ops.minimum(columns, ops.cast(ops.shape(distances)[1] - 1, INDEX_DTYPE)),
            query_mask=take_along_rows(scores > 0, columns),
        )
        self._width = width
        self._thresholds = ops.stop_gradient(self.query_distances)
        # Non-negatives at +inf: never below a (finite) threshold, never the closest.
        self._negatives = ops.where(negative_mask, ops.stop_gradient(distances), float("inf"))

    def _count_below(self, thresholds, inclusive):
        # A sum of the cast mask, not `count_nonzero`: Keras 3.15's PyTorch version
        # transposes its result.
        return self._per_column(
            lambda m: ops.sum(ops.cast(_compare(self._negatives, thresholds[:, m : m + 1], inclusive), INDEX_DTYPE), axis=1)
        )

    def _per_column(self, fn):
        """`[B, M]`: `fn(m)`, a `[B]` array, for each query column `m` in turn."""
        return ops.stack([fn(m) for m in range(self._width)], axis=1)

    def _shifted(self, offset):
        return self._thresholds + offset if offset else self._thresholds

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None). Per column, one `[B, R]` band mask gives the
        count and the sum; the sum's gradient recomputes the masks (`_band_sums`)."""
        stop = self._shifted(stop_offset)
        start = None if start_offset is None else self._shifted(start_offset)
        count, total = _band_sums(self.distances, self._negatives, stop, start, stop_inclusive)
        if start_offset is None:  # the same count as `count_within`'s: share it
            self._counts.setdefault((float(stop_offset), bool(stop_inclusive)), count)
        return count, total

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless.

        Minima, not argmins (XLA reduces a minimum in vectorised passes, an argmin one
        pair at a time), with gradients stopped; `_picked` gives them their gradient. On
        an exact tie the gradient is shared among the tied negatives."""
        beyond = [
            ops.min(ops.where(self._negatives > self._thresholds[:, m : m + 1], self._negatives, _INF), axis=1)
            for m in range(self._width)
        ]
        closest = ops.stack(beyond, axis=1)
        found = closest < _INF
        if or_farthest:
            farthest = ops.max(ops.where(self.negative_mask, self._negatives, -_INF), axis=1)
            closest = ops.where(found, closest, ops.expand_dims(farthest, 1))
        return _picked(self.distances, self._negatives, closest), found


_INF = float("inf")


def _upstream(args, upstream):
    # keras.ops.custom_gradient passes it positionally (TensorFlow, JAX) or as a keyword (PyTorch).
    return args[0] if upstream is None else upstream


@ops.custom_gradient
def _picked(distances, negatives, targets):
    """`targets` (`[B, M]`, each a negative distance of its row or ±inf), differentiable in
    `distances` as the entries they were read from: the gradient of `targets[a, m]` goes
    to the negatives of row `a` equal to it (shared on ties); ±inf reads as 0, without
    gradient. The backward pass compares again, one `[B, R]` pass per column: autodiff
    of a masked minimum would keep `[B, R]` masks per column, or `[B, M, R]`."""
    width = targets.shape[1]
    ties = [
        ops.sum(ops.cast(negatives == targets[:, m : m + 1], distances.dtype), axis=1, keepdims=True)
        for m in range(width)
    ]

    def grad(*args, upstream=None):
        g = _upstream(args, upstream)
        total = None
        for m in range(width):
            share = ops.where(negatives == targets[:, m : m + 1], g[:, m : m + 1] / ops.maximum(ties[m], 1.0), 0.0)
            total = share if total is None else total + share
        return total, None, None

    return ops.where(ops.abs(targets) < _INF, targets, 0.0), grad


def _band_sums(distances, negatives, stop, start, stop_inclusive):
    """`(count, sum)`, `[B, M]`: per row `a` and column `m`, the negatives of `negatives`
    (`[B, R]`, +inf elsewhere) with `start[a, m] < d < stop[a, m]` (`≤` at the top if
    `stop_inclusive`; no lower bound when `start` is None), and the sum of their
    `distances` (differentiable)."""

    def inside(m):
        below = _compare(negatives, stop[:, m : m + 1], stop_inclusive)
        return below if start is None else ops.logical_and(below, negatives > start[:, m : m + 1])

    width = stop.shape[1]
    masks = [inside(m) for m in range(width)]
    count = ops.stack([ops.sum(ops.cast(mask, INDEX_DTYPE), axis=1) for mask in masks], axis=1)

    @ops.custom_gradient
    def sums(distances):
        values = ops.stop_gradient(distances)
        total = ops.stack([ops.sum(ops.where(mask, values, 0.0), axis=1) for mask in masks], axis=1)

        def grad(*args, upstream=None):
            # The masks again, not kept from the forward pass: O(B·R) memory for any M.
            g = _upstream(args, upstream)
            result = None
            for m in range(width):
                share = ops.where(inside(m), g[:, m : m + 1], 0.0)
                result = share if result is None else result + share
            return result

        return total, grad

    return count, sums(distances)


def _compare(negatives, thresholds, inclusive):
    """`negatives < thresholds` (`≤` if inclusive), broadcast."""
    return negatives <= thresholds if inclusive else negatives < thresholds
