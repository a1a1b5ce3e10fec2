"""The direct search: each anchor's few positives compared with all its negatives, no sort.

For P×K batches an anchor has M = K − 1 positives: comparing their `[B, M]` thresholds
`d(a, p) + offset` with the `[B, R]` negative distances is `[B, M, R]` comparisons, which
XLA fuses into a few passes with the reductions that follow (counts, sums, minima). On
TensorFlow and JAX that is several times faster than sorting (XLA's CPU sort of a
256 × 256 matrix alone takes ~10 ms), but only while M is small: `choice.py` caps it.
"""

from keras import ops

from keras_triplet._backend import INDEX_DTYPE, take_along_rows
from keras_triplet.miners.masked_extremes import gather_rows, masked_argmax
from keras_triplet.miners.search.anchor_negatives import AnchorNegatives


class DirectNegatives(AnchorNegatives):
    """Each anchor's `M` positive columns compared with all its negatives, no sort.

    Args:
        distances: `[B, R]`; negative_mask, positive_mask: `[B, R]` booleans.
        width: `M`, at least the largest number of positives of an anchor (positives
            beyond it are dropped: `with_negatives` checks this).

    Builds on `AnchorNegatives`. The positives are compacted to `[B, M]` with one `top_k`
    of the mask; each question compares the `[B, M]` thresholds with the `[B, R]` negative
    distances. Distances are read with gradients stopped, except those returned: a
    band's sum and the chosen negatives.

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
        self._thresholds = ops.stop_gradient(self.query_distances)
        # Non-negatives at +inf: never below a (finite) threshold, never the closest.
        self._negative_distances = ops.where(negative_mask, distances, float("inf"))
        self._negatives = ops.stop_gradient(self._negative_distances)

    def _count_below(self, thresholds, inclusive):
        # A sum of the cast mask, not `count_nonzero`: Keras 3.15's PyTorch version
        # transposes its result.
        return ops.sum(ops.cast(_compare(self._negatives, thresholds, inclusive), INDEX_DTYPE), axis=2)

    def _shifted(self, offset):
        return self._thresholds + offset if offset else self._thresholds

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None). The count from `count_within` (shared with
        the statistics); the sum a product of the band's `[B, M, R]` mask with the
        distances."""
        count = self.count_within(stop_offset, inclusive=stop_inclusive)
        inside = _compare(self._negatives, self._shifted(stop_offset), stop_inclusive)
        if start_offset is not None:
            count = ops.maximum(count - self.count_within(start_offset, inclusive=True), 0)
            above = ops.expand_dims(self._negatives, 1) > ops.expand_dims(self._shifted(start_offset), 2)
            inside = ops.logical_and(inside, above)
        total = ops.matmul(ops.cast(inside, self.distances.dtype), ops.expand_dims(self.distances, 2))[
            :, :, 0
        ]
        return count, ops.where(count > 0, total, 0.0)

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless.

        A minimum rather than an argmin and a gather: XLA reduces a minimum in a few
        vectorised passes, an argmin (a reduction over pairs) an element at a time. On an
        exact tie the gradient is shared among the tied negatives."""
        rows = ops.expand_dims(self._negative_distances, 1)
        beyond = ops.stop_gradient(rows) > ops.expand_dims(self._thresholds, 2)
        closest = ops.min(ops.where(beyond, rows, float("inf")), axis=2)
        found = closest < float("inf")
        value = ops.where(found, closest, 0.0)
        if or_farthest:
            farthest = gather_rows(self.distances, masked_argmax(self.distances, self.negative_mask)[0])
            value = ops.where(found, value, ops.expand_dims(farthest, 1))
        return value, found


def _compare(negatives, thresholds, inclusive):
    """`[B, M, R]`: negative `r` of row `a` lies below threshold `m` (`<`, `≤` if inclusive)."""
    rows, limits = ops.expand_dims(negatives, 1), ops.expand_dims(thresholds, 2)
    return rows <= limits if inclusive else rows < limits
