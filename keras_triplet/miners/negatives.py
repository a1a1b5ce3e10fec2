"""Each anchor's negatives, searched at its positive pairs: two implementations, one choice.

The band and semi-hard miners and the mining statistics ask the same few questions of
every positive pair `(a, p)`, about the negatives `n` of the anchor `a`:

* `count_within(offset, inclusive)`: how many have `d(a, n) < d(a, p) + offset` (`≤`);
* `band(stop_offset, stop_inclusive, start_offset)`: how many, and the sum of their
  distances (differentiable), lie in `(d(a, p) + start_offset, d(a, p) + stop_offset)`;
* `closest_beyond(or_farthest)`: the closest one with `d(a, n) > d(a, p)`, and whether
  there is one (semi-hard); optionally the farthest negative where there is none.

Two subclasses of `rows.AnchorNegatives` answer them (which holds what they share: the
masks, `count`, the query layout, `count_within` computed once per question):

* `rows.SortedNegatives`: sorts each anchor's negatives once and binary-searches them.
  O(B·R log R) time, O(B·R) memory, any labels.
* `DirectNegatives`: compacts each anchor's positives to `M` columns and compares them
  with its negatives, no sort of the negatives. On compiled backends that is `[B, M, R]`
  comparisons, fused by XLA into a few passes: several times faster than the sort for
  P×K batches (M = K − 1; XLA's CPU sort of a 256 × 256 matrix alone takes ~10 ms),
  but only while M is small. On PyTorch the thresholds are sorted instead and each
  negative ranked among them (`_kernels/_torch.py`): O(B·R log M), any M.

`with_negatives(distances, negative_mask, positive_mask, fn)` evaluates `fn(negatives)`
with one of them: on PyTorch always the direct one; on compiled backends the direct one
when every anchor has at most `DIRECT_MAX_POSITIVES` positives and the comparisons fit
in `DIRECT_MAX_ENTRIES`, else the sorted one. Eagerly it decides in Python from the data
(and sizes M by it); in a compiled function it is an `ops.cond` on the data, whose two
branches both compile (once).
"""

import contextlib

from keras import ops

from keras_triplet._kernels import (
    DIRECT_COST_PER_THRESHOLD, INDEX_DTYPE, closest_negative_above, count_negatives_below, negative_sum,
    take_along_rows,
)
from keras_triplet.miners.rows import AnchorNegatives, SortedNegatives, gather_rows, masked_argmax

# Compiled graphs need a static M: compare at most this many positives per anchor (P×K
# batches with K ≤ 17); more take the sorted path.
DIRECT_MAX_POSITIVES = 16
# Largest B·M·R for `[B, M, R]` comparisons (16 M booleans: B = 1024 with M = 16). Beyond
# it, the sorted path: O(B²) memory at B = 4096.
DIRECT_MAX_ENTRIES = 2**24

_preferred = None


@contextlib.contextmanager
def prefer(kind):
    """Within the block, eager calls of `with_negatives` use `"direct"` or `"sorted"`
    negatives instead of choosing (for tests and benchmarks); None restores the choice."""
    global _preferred
    if kind not in ("direct", "sorted", None):
        raise ValueError(f"kind must be 'direct', 'sorted' or None; got {kind!r}")
    previous, _preferred = _preferred, kind
    try:
        yield
    finally:
        _preferred = previous


def with_negatives(distances, negative_mask, positive_mask, fn):
    """`fn(negatives)` with a `DirectNegatives` or a `SortedNegatives` of this matrix
    (see the module docstring); `fn` returns a nest of tensors, the same for both."""

    def sorted_path():
        return fn(SortedNegatives(distances, negative_mask, positive_mask))

    def direct_path(width):
        return fn(DirectNegatives(distances, negative_mask, positive_mask, width))

    rows, width = distances.shape[0], distances.shape[1]
    capped = DIRECT_COST_PER_THRESHOLD and _preferred != "direct"
    cap = DIRECT_MAX_POSITIVES if width is None else min(DIRECT_MAX_POSITIVES, width)
    if width == 0 or _preferred == "sorted":
        return sorted_path()
    most = ops.max(ops.sum(ops.cast(positive_mask, "int32"), axis=1)) if rows != 0 else 0
    eager = _python_int(most)
    if eager is not None:  # decide on the data, M sized by it
        m = max(eager, 1)
        if capped and (m > cap or _too_large(rows, m, width)):
            return sorted_path()
        return direct_path(m)
    if not DIRECT_COST_PER_THRESHOLD:
        # Traced PyTorch (torch.compile): M = R, static.
        return direct_path(width) if width is not None else sorted_path()
    if _too_large(rows, cap, width):
        return sorted_path()
    fits = most <= cap
    if rows is None or width is None:  # a graph with a dynamic batch size
        size = ops.shape(distances)
        fits = ops.logical_and(fits, size[0] * cap * size[1] <= DIRECT_MAX_ENTRIES)
    return ops.cond(fits, lambda: direct_path(cap), sorted_path)


def _too_large(rows, m, width):
    return rows is not None and width is not None and rows * m * width > DIRECT_MAX_ENTRIES


def _python_int(value):
    """The value of a scalar tensor as a Python int, or None while tracing a compiled
    function (jax.jit, tf.function), where it has no value yet."""
    if isinstance(value, int):
        return value
    try:
        return int(ops.convert_to_numpy(value))
    except Exception:  # a tracer or a symbolic tensor: each backend raises its own error
        return None


class DirectNegatives(AnchorNegatives):
    """Each anchor's `M` positive columns compared with all its negatives, no sort.

    Args:
        distances: `[B, R]`; negative_mask, positive_mask: `[B, R]` booleans.
        width: `M`, at least the largest number of positives of an anchor (positives
            beyond it are dropped: `with_negatives` checks this).

    Builds on `rows.AnchorNegatives`. The positives are compacted to `[B, M]` with one
    `top_k` of the mask; each question compares the `[B, M]` thresholds with the `[B, R]`
    negative distances (`_kernels`: `[B, M, R]` comparisons on compiled backends, ranks
    among the sorted thresholds on PyTorch). Distances are read with gradients stopped,
    except those returned: a band's sum and the chosen negatives.
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
        return count_negatives_below(self._negatives, thresholds, inclusive)

    def _shifted(self, offset):
        return self._thresholds + offset if offset else self._thresholds

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None). The count from `count_within` (shared with
        the statistics), the sum by the `_kernels`."""
        count = self.count_within(stop_offset, inclusive=stop_inclusive)
        start = None
        if start_offset is not None:
            count = ops.maximum(count - self.count_within(start_offset, inclusive=True), 0)
            start = self._shifted(start_offset)
        total = negative_sum(self._negatives, self.distances, self._shifted(stop_offset), stop_inclusive, start)
        return count, ops.where(count > 0, total, 0.0)

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless."""
        value, found = closest_negative_above(self._negative_distances, self._thresholds)
        if or_farthest:
            farthest = gather_rows(self.distances, masked_argmax(self.distances, self.negative_mask)[0])
            value = ops.where(found, value, ops.expand_dims(farthest, 1))
        return value, found
