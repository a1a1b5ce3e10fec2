"""The sorted search: each anchor's negatives sorted once, then binary-searched.

The idea that keeps semi-hard and batch-all mining quadratic for any labels: with each
anchor's negative distances in ascending order,

* "the closest negative farther than t" is the entry at index `count(negatives ≤ t)`;
* "the sum over negatives of max(t + margin − d(a, n), 0)" is
  `k · (t + margin) − prefix_sum[k]` with `k = count(negatives < t + margin)`.

Counts come from a vectorised binary search (`count_below`): exact `<` / `≤`
comparisons, O(log R) gathers of `[B, M]`, and no reliance on a stable sort. O(B·R log R)
time, O(B·R) memory. Gradients reach the chosen distances through row gathers; nothing
of size B³ exists. Where the backend writes them out (`_backend.sort_masked_rows`: eager
PyTorch), the sorted values carry none and each pick and each run's sum carries its own
(`_backend.pick_sorted`, `_backend.sum_sorted_runs`): one `[B, R]` gradient per answer,
where autodiff walks back through the prefix sums, the sort's gather and the mask.
"""

import math

from keras import ops

from keras_triplet._backend import (
    INDEX_DTYPE,
    compact_columns,
    fori_loop,
    pick_sorted,
    search_rows,
    sort_masked_rows,
    sum_sorted_runs,
    take_along_rows,
)
from keras_triplet.miners.search.anchor_negatives import AnchorNegatives


class SortedNegatives(AnchorNegatives):
    """Each anchor's negative distances in ascending order, and searches in them.

    Builds on `AnchorNegatives`. The query columns are compacted to each anchor's
    positives on eager PyTorch only (`_backend.compact_columns`: M the largest number of
    positives of an anchor); compiled graphs keep all `R` (static shapes).

    Attributes (beyond `AnchorNegatives`'):
        values: `[B, R]`; row `a` holds the distances to `a`'s negatives sorted ascending,
            then a large finite filler for the non-negative columns (differentiable, or
            not where `_backend.sort_masked_rows` leaves the gradients to `take` and
            `range_sum`).
        order: `[B, R]`; the column of `distances` each entry of `values` was read from.
    """

    def __init__(self, distances, negative_mask, positive_mask, filler=None):
        super().__init__(distances, negative_mask, positive_mask)
        if filler is None:  # `filler`: given by a search of the matrix's rows in blocks
            filler = ops.max(ops.stop_gradient(distances)) + 1.0
        self._filler = filler
        self.values, self.order = sort_masked_rows(distances, negative_mask, filler)
        columns = compact_columns(positive_mask)
        if columns is not None:
            self._compact(columns)
        self._prefix = None

    def _count_below(self, thresholds, inclusive):
        # The filler sorts after every negative but may still lie below a large threshold.
        return count_below(self.values, thresholds, inclusive=inclusive, limit=self._count_column())

    def _count_column(self):
        """`[B, 1]`: each anchor's number of negatives, computed once."""
        if getattr(self, "_column_count", None) is None:
            self._column_count = ops.expand_dims(self.count, 1)
        return self._column_count

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None). A run of the sorted row: two searches."""
        stop = self.count_within(stop_offset, inclusive=stop_inclusive)
        if start_offset is None:  # from the closest negative
            return stop, self.range_sum(None, stop)
        start = self.count_within(start_offset, inclusive=True)
        stop = ops.maximum(stop, start)
        return stop - start, self.range_sum(start, stop)

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless."""
        first_farther = self.count_within(0.0, inclusive=True)
        n_negative = self._count_column()
        found = first_farther < n_negative
        # `first_farther ≤ n_negative`: where none is farther, the last negative.
        index = ops.minimum(first_farther, n_negative - 1) if or_farthest else first_farther
        return self.take(index), found

    def take(self, index):
        """`[B, M]` distances of the negatives at sorted positions `index` (`[B, M]`)."""
        last = ops.maximum(ops.shape(self.values)[1] - 1, 0)
        index = ops.clip(ops.cast(index, INDEX_DTYPE), 0, last)
        return pick_sorted(self.values, self.order, index, self.count, self.distances)

    def range_sum(self, start, stop):
        """`[B, M]` sums of the sorted negatives at positions `[start, stop)` (`start=None`:
        from position 0).

        Uses prefix sums of the distances centred on each row's mean, which keeps the
        difference of two prefix sums accurate in float32 for large batches.
        """
        if self._prefix is None:
            # Each row's mean negative distance, from the row sum minus its fillers (no
            # [B, R] temporary). Positions past `count` hold fillers; no sum reads them.
            width = ops.cast(ops.shape(self.values)[1], self.values.dtype)
            count = ops.cast(self.count, self.values.dtype)
            total = ops.sum(ops.stop_gradient(self.values), axis=1) - (width - count) * self._filler
            self._center = ops.expand_dims(total / ops.maximum(count, 1.0), 1)
            # Inclusive prefix sums: _prefix[:, k] = Σ_{i ≤ k}; the sum of the first k is
            # _prefix[:, k − 1] (0 for k = 0), read by `_first`.
            self._prefix = ops.cumsum(self.values - self._center, axis=1)
        stop = ops.cast(stop, INDEX_DTYPE)
        if start is None:  # from the first negative: one gather fewer
            total = self._first(stop) + ops.cast(stop, self._prefix.dtype) * self._center
        else:
            start = ops.cast(start, INDEX_DTYPE)
            total = self._first(stop) - self._first(start)
            total = total + ops.cast(stop - start, total.dtype) * self._center
        return sum_sorted_runs(total, self.order, start, stop, self.distances)

    def _first(self, k):
        """Σ of the first `k` centred sorted negatives of each row (`k`: `[B, M]`)."""
        found = take_along_rows(self._prefix, ops.maximum(k - 1, 0))
        return ops.where(k > 0, found, 0.0)


# Rows per block of the search: about 2^21 thresholds (16 MB of int64 state) at a time.
# Working on blocks keeps the search's temporaries small: under the allocator's
# threshold for returning memory to the system (32 MB in glibc), PyTorch reuses them
# instead of page-faulting fresh buffers on every step, and compiled graphs hold one
# block's buffers at a time.
SEARCH_BLOCK = 2**21


def count_below(sorted_rows, thresholds, inclusive=False, limit=None):
    """Batched `searchsorted`: per row `r`, the number of entries of `sorted_rows[r]`
    (ascending) that are `< thresholds[r, j]` (`≤` when `inclusive`).

    A binary search by halving steps: `pos` grows by `2^k, …, 2, 1` while the entry at
    `pos + stride − 1` still satisfies the comparison. Probes past the end read the last
    entry; if even that one satisfies the comparison every entry does, `pos` overshoots
    and the final clamp to the row length gives the right count. One `[B, M]` state and
    one gather per step, inside `fori_loop` so that compiled code reuses its buffers:
    O(B·M·log R) time, O(B·M) memory, and exact comparisons (no stable sort needed).
    Large inputs are searched by blocks of rows (`SEARCH_BLOCK`). Where the backend has
    a batched search of its own (`_backend.search_rows`: PyTorch's `searchsorted`, the
    same counts), that one call replaces the loop. `limit` (`[B, 1]`, optional): the
    counts are clamped to it.
    """
    sorted_rows = ops.stop_gradient(sorted_rows)
    thresholds = ops.stop_gradient(thresholds)
    found = search_rows(sorted_rows, thresholds, inclusive, limit)
    if found is not None:  # the backend's own batched search (PyTorch)
        return found
    if limit is not None:
        return ops.minimum(count_below(sorted_rows, thresholds, inclusive), limit)
    rows, width = thresholds.shape[0], thresholds.shape[1]
    if isinstance(rows, int) and isinstance(width, int) and rows * width > SEARCH_BLOCK:
        block = max(1, SEARCH_BLOCK // max(width, 1))
        return ops.concatenate(
            [
                _search(sorted_rows[start : start + block], thresholds[start : start + block], inclusive)
                for start in range(0, rows, block)
            ],
            axis=0,
        )
    return _search(sorted_rows, thresholds, inclusive)


def _search(sorted_rows, thresholds, inclusive):
    n = ops.shape(sorted_rows)[1]
    if isinstance(n, int):
        levels = max(1, math.ceil(math.log2(n + 1)))
    else:  # a TF graph with a dynamic batch size
        levels = ops.cast(ops.ceil(ops.log(ops.cast(n + 1, "float32")) / math.log(2.0)), "int32")
    n = ops.cast(n, INDEX_DTYPE)
    last = ops.maximum(n - 1, 0)
    pos = ops.zeros(ops.shape(thresholds), dtype=INDEX_DTYPE)
    stride = ops.cast(2 ** (levels - 1) if isinstance(levels, int) else ops.power(2, levels - 1), INDEX_DTYPE)
    step = _step_at_most if inclusive else _step_below
    pos = fori_loop(0, levels, step, (pos, stride, sorted_rows, thresholds, last))[0]
    return ops.minimum(pos, n)


# The loop bodies are module-level functions that receive every array through the loop
# state (no closure): eager JAX then reuses one compiled loop for equal shapes instead
# of compiling a new one per call.


def _step_below(i, state):
    return _step(state, inclusive=False)


def _step_at_most(i, state):
    return _step(state, inclusive=True)


def _step(state, inclusive):
    pos, stride, sorted_rows, thresholds, last = state
    probe = take_along_rows(sorted_rows, ops.minimum(pos + (stride - 1), last))
    below = (probe <= thresholds) if inclusive else (probe < thresholds)
    # `cast · stride` rather than `where`: the same in compiled graphs, 2× faster eager.
    return pos + ops.cast(below, INDEX_DTYPE) * stride, stride // 2, sorted_rows, thresholds, last
