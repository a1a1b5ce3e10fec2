"""`with_negatives`: which search of the negatives a batch gets, decided once per step."""

import math

from keras import ops

from keras_triplet._backend import (
    FUSES_ELEMENTWISE_STEPS,
    SWITCH_MIN_ENTRIES,
    switch_with_own_gradients,
    traced_value,
)
from keras_triplet._validation import check_choice
from keras_triplet.miners.search.blocked_negatives import BlockedSortedNegatives, blocked, row_counts
from keras_triplet.miners.search.direct_negatives import DirectNegatives, broadcasts, positive_columns
from keras_triplet.miners.search.sorted_negatives import SortedNegatives

SEARCHES = ("auto", "direct", "sorted")
# Compiled graphs need a static M: compare at most this many positives per anchor (P×K
# batches with K ≤ 17); more take the sorted search.
DIRECT_MAX_POSITIVES = 16
# Static widths M tried in turn by a compiled step, the smallest that holds every anchor's
# positives first: P×K batches with K ≤ 5 (the usual) compare 4 thresholds per anchor, not
# 16, 4× less work for the same selections (the comparisons are exact).
DIRECT_WIDTHS = (4, DIRECT_MAX_POSITIVES)


def with_negatives(
    distances,
    negative_mask,
    positive_mask,
    fn,
    search="auto",
    *,
    fused=None,
    own_gradients=False,
    picks=False,
):
    """`fn(negatives)` with a `DirectNegatives` or a `SortedNegatives` of this matrix.

    Args:
        distances: `[B, R]`; negative_mask, positive_mask: `[B, R]` booleans
            (`miners.pair_masks`).
        fn: a function of the search object returning a nest of tensors, the same for
            both searches (a compiled step traces it once per search).
        search: `"auto"` (default): the direct search where every anchor has at most
            `DIRECT_MAX_POSITIVES` positives (compiled: at the narrowest of
            `DIRECT_WIDTHS` that holds them; its cost grows with M, its memory does not);
            the sorted search otherwise (by blocks of rows, `BlockedSortedNegatives`,
            for a compiled step's static matrix larger than one block).
            `"sorted"`: always the sorted search. `"direct"`: the direct search whenever it
            is exact, without the cap on M: eagerly always (M sized by the data); in a
            compiled function, where M must be static, a class larger than
            `DIRECT_MAX_POSITIVES + 1` still takes the sorted search. Both searches give
            the same numbers (up to float rounding of sums); `"direct"` and `"sorted"` are
            for benchmarks and tests.
        fused: whether the caller's step fuses chains of elementwise operations (XLA:
            TensorFlow `jit_compile=True`, JAX); None (default): whether the backend
            does (`_backend.FUSES_ELEMENTWISE_STEPS`: not eager PyTorch). Where they
            do not fuse, a small direct search compares all its columns at once
            (`DirectNegatives(broadcast=True)`, up to `BROADCAST_ENTRIES`), and eagerly
            that search is taken for any M up to the cap.
        own_gradients: whether a compiled step's choice over a large static matrix
            (beyond one block of rows; on JAX from `_backend.SWITCH_MIN_ENTRIES`
            entries) runs, where the backend can (JAX, TensorFlow), as one switch
            whose backward pass computes the chosen branch again inside it
            (`_backend.switch_with_own_gradients`): no branch's residuals are then held
            from the forward pass to the backward one (`ops.cond`s output the largest
            branch's, several `[B, R]` arrays, whichever branch runs), for the mining's
            forward pass run twice. Only for an `fn` differentiable in the search's own
            distances alone (`found.distances`, `found.query_distances`), never in an
            array it reads from outside (JAX raises; TensorFlow would drop that gradient).
            Arrays without gradients (labels, masks, distances under `stop_gradient`)
            may be read.
        picks: whether `fn` asks mostly for single picks (`closest_beyond`: the
            semi-hard negative), which, where steps do not fuse, the sorted search
            answers with one sort and one binary search per row faster than the direct
            search's comparisons at any M (eager PyTorch, B = 256 and 1024, K = 4:
            3.1 against 4.2 ms, 43 against 47 ms); bands (batch-all's counts and sums)
            keep the direct search at small M there.

    Eagerly the choice is made in Python from the data (and M sized by it); in a
    compiled function it is nested `ops.cond`s on the data (one per width of
    `DIRECT_WIDTHS`, then the sorted search), whose branches all compile.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> from keras_triplet.miners import pair_masks
    >>> d = ops.convert_to_tensor(np.array(
    ...     [[0, 1, 2, 4], [1, 0, 3, 1], [2, 3, 0, 5], [4, 1, 5, 0]], "float32"))
    >>> positive, negative = pair_masks(ops.convert_to_tensor(np.array([0, 0, 1, 1])))
    >>> def hard_triplets(found):  # how many triplets have d(a, n) < d(a, p)
    ...     return ops.sum(ops.where(found.query_mask, found.count_within(0.0), 0))
    >>> int(with_negatives(d, negative, positive, hard_triplets))
    4
    """
    check_choice(search, SEARCHES, "negative search")

    def sorted_search():
        # Static shapes beyond one block of rows, compiled: the sorted search by blocks.
        search_class = BlockedSortedNegatives if blocked(distances) else SortedNegatives
        return fn(search_class(distances, negative_mask, positive_mask))

    op_by_op = not (FUSES_ELEMENTWISE_STEPS if fused is None else fused)

    def direct_search(width):
        return fn(DirectNegatives(distances, negative_mask, positive_mask, width, broadcast=op_by_op))

    rows, width = distances.shape[0], distances.shape[1]
    if width == 0 or search == "sorted":
        return sorted_search()
    capped = search == "auto"
    cap = DIRECT_MAX_POSITIVES if width is None else min(DIRECT_MAX_POSITIVES, width)
    most = ops.max(row_counts(positive_mask)) if rows != 0 else 0
    eager = _python_int(most)
    if eager is not None:  # decide on the data, M sized by it
        m = max(eager, 1)
        at_once = op_by_op and broadcasts(distances.shape, m)
        if capped and (m > cap or (op_by_op and picks) or not (at_once or _direct_pays_eagerly(m, width))):
            return sorted_search()
        return direct_search(m)
    tiers = sorted({min(w, cap) for w in DIRECT_WIDTHS})
    if own_gradients and _switches(distances):
        out = _switch(distances, negative_mask, positive_mask, fn, most, tiers, op_by_op)
        if out is not None:
            return out
    choice = sorted_search
    # From the widest tier in: each `ops.cond` tries a narrower width before the last.
    for tier in reversed(tiers):
        choice = _tier(most <= tier, tier, direct_search, choice)
    return choice()


def _direct_pays_eagerly(m, references):
    """Whether an eager step should take the direct search for `m` positives per anchor.

    Where each array operation runs on its own (eager PyTorch), the direct search pays
    `m` column passes of several operations each, the sorted search about log2(R) passes
    whatever `m`. Measured on eager PyTorch (semi-hard and batch-all, forward + backward):
    at M = 3 the direct search is faster for R = 256 to 4096; at M = 7 the sorted one is
    faster for R = 256, the direct one for R = 1024; at M = 15 the sorted one for
    R = 256 to 4096. Backends that fuse the passes keep the direct search; so do small
    batches that compare their columns at once (`with_negatives`), asked before this."""
    if FUSES_ELEMENTWISE_STEPS or references is None:
        return True
    return m <= max(3.0, math.log2(max(references, 1)) - 3.0)


def _switches(distances):
    """Whether a compiled choice over this `[B, R]` matrix takes the switch with its own
    gradients, when asked: where the searches run by row blocks, and on backends whose
    `cond`s' residuals cost more than a second forward pass, from
    `_backend.SWITCH_MIN_ENTRIES` static entries."""
    if blocked(distances):
        return True
    rows, columns = distances.shape[0], distances.shape[1]
    if SWITCH_MIN_ENTRIES is None or rows is None or columns is None:
        return False
    return rows * columns >= SWITCH_MIN_ENTRIES


def _switch(distances, negative_mask, positive_mask, fn, most, tiers, op_by_op):
    """`with_negatives`' compiled choice (the direct search at the narrowest of `tiers`
    that holds `most` positives, by blocks the widest with its loops stopped at `most`;
    else the blocked sorted search) as one switch whose gradient is computed inside the
    chosen branch, or None where the backend has none.
    Every branch builds its search from the switch's own distances. The sorted branch is
    the blocked one at any size (one block below `BLOCK_ENTRIES`): with its
    hand-written gradients: with `SortedNegatives` there, JAX's switch at B = 1024 took
    30 ms against 19 ms, though that branch did not run."""
    # Each anchor's number of negatives, counted once out here: counted inside, the
    # branch's backward pass would count again beside its gradient arrays (the count's
    # int32 `[B, R]` cast, which XLA's reduction reads materialised; out here, by
    # blocks where the searches are). The searches count only when read
    # (`AnchorNegatives.count`).
    count = row_counts(negative_mask)

    def counted(search):
        search.count = count
        return fn(search)

    # One sorted top_k before the switch lists the positive columns for every direct
    # branch (each takes the first of them): a branch's own would run again in the
    # switch's backward pass. By blocks of rows where the searches run by blocks
    # (`positive_columns`), so that no float32 copy of the mask is held.
    listed = positive_columns(distances, positive_mask, tiers[-1], sorted=True)

    def direct(width, visited=None):
        return lambda d: counted(
            DirectNegatives(
                d, negative_mask, positive_mask, width, broadcast=op_by_op, visited=visited, listed=listed
            )
        )

    def sorted_branch(d):
        return counted(BlockedSortedNegatives(d, negative_mask, positive_mask))

    if blocked(distances):
        # By blocks, one direct branch serves every tier: the widest, its column loops
        # stopped at `most` (`DirectNegatives(visited=...)`; the columns past `most` hold
        # no positive, and the listed columns come in the same order at every width),
        # compiled once instead of once per tier: XLA's compilation of a step holds
        # memory by the size of its graph (BENCHMARKS.md).
        branches = [direct(tiers[-1], visited=most), sorted_branch]
        index = ops.cast(most > tiers[-1], "int32")
    else:
        branches = [direct(width) for width in tiers] + [sorted_branch]
        index = sum(ops.cast(most > width, "int32") for width in tiers)
    return switch_with_own_gradients(index, branches, distances)


def _tier(fits, width, direct_search, otherwise):
    """A function evaluating the direct search of `width` if `fits`, else `otherwise`."""
    return lambda: ops.cond(fits, lambda: direct_search(width), otherwise)


def _python_int(value):
    """The value of a scalar tensor as a Python int, or None while tracing a compiled
    function (jax.jit, tf.function), where it has no value yet."""
    if isinstance(value, int):
        return value
    found = traced_value(value)
    return None if found is None else int(found)
