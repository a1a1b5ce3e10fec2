"""The direct search: each anchor's few positives, one at a time, compared with all its
negatives; no sort.

For P×K batches an anchor has M = K − 1 positives. The search takes the `[B, M]`
positive distances as thresholds, one column `m` at a time, and compares each with the
`[B, R]` distances, masked to the negatives in the same pass (no `[B, R]` array of
negatives is built): a semi-hard selection is a masked minimum over the row, a band a
masked count and sum (batch-all, the statistics). M passes over `[B, R]` arrays in a
loop: no `[B, M, R]` array and no per-column copies, so memory stays O(B·R) for any M
and B, on every backend (eager PyTorch, where each elementwise step is a new array, runs
each pass on blocks of rows: `_column_loop`). Where XLA compiles the step, the backward
passes' M columns are unrolled into one fused pass over `[B, R]`. A compiled step over a
static matrix beyond one block of rows (`blocked_negatives.blocked`: B > 1448) asks
every question, and writes every hand-written gradient, in a loop over blocks of rows
whose body loops over the M columns (`_by_row_blocks`): the search then holds no `[B,
R]` array of its own (the accumulators of its backward passes), only `[b, R]` blocks,
and the answer's backward pass writes the query distances' gradient too
(`_differentiable`: one `[B, R]` gradient array, not two added together; unblocked as
well from B = 512). Comparisons are made with gradients stopped (selections are
piecewise constant in the distances); the selected distances get their gradient from
hand-written backward passes (`keras.ops.custom_gradient`) that compare again instead of
keeping masks. `choice.py` caps M.

Steps that run op by op (eager PyTorch, TensorFlow graphs without XLA) pay for the loop's
M passes of a few small operations each, one dispatched at a time. For them, and for
small batches only, the search compares all M columns at once (`broadcast=True`): one
`[B, M, R]` comparison per question, capped at `_backend.BROADCAST_ENTRIES` entries (16 MB
of float32 on TensorFlow, B ≤ 512 at M = 16; 1 MB on PyTorch, B = 256 at M ≤ 4), so that
nothing grows as B×B×B; larger batches keep the loop.
"""

import functools

from keras import ops

from keras_triplet._backend import (
    BROADCAST_ENTRIES,
    FUSES_ELEMENTWISE_STEPS,
    INDEX_DTYPE,
    add_where,
    compact_columns,
    count_true,
    fori_loop,
    scatter_rows,
    take_along_rows,
)
from keras_triplet.miners.search.anchor_negatives import AnchorNegatives
from keras_triplet.miners.search.blocked_negatives import (
    block_rows,
    blocked,
    over_row_blocks,
    with_matrix_gradient,
)


class DirectNegatives(AnchorNegatives):
    """Each anchor's `M` positive columns compared with all its negatives, no sort.

    Args:
        distances: `[B, R]`; negative_mask, positive_mask: `[B, R]` booleans.
        width: `M`, at least the largest number of positives of an anchor (positives
            beyond it are dropped: `with_negatives` checks this).
        broadcast: whether to compare all `M` columns at once (`[B, M, R]` arrays) where
            the shapes are static and `B·M·R ≤ BROADCAST_ENTRIES`; the loop otherwise.
            For steps that run op by op: the same comparisons, so the same selections
            (sums up to float rounding), with counts as float32 (exact below 2^24).

    Builds on `AnchorNegatives`. The positives are compacted to `[B, M]` (eager PyTorch:
    `compact_columns`; otherwise one `top_k` of the mask); each question compares the
    thresholds of one column `m` at a time with the `[B, R]` distances, masked to the
    negatives in the same pass (a loop over M). Distances are read with gradients
    stopped, except those returned: a band's sum and the chosen negatives.

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

    def __init__(
        self, distances, negative_mask, positive_mask, width, broadcast=False, visited=None, listed=None
    ):
        super().__init__(distances, negative_mask, positive_mask)
        # Eager PyTorch lists each row's positive columns from the mask itself; elsewhere
        # (or where `compact_columns` declines, or lists another width), a top_k of the
        # 0/1 mask puts them first, unless the caller has listed them already (`listed`,
        # from `positive_columns`, at least `width` wide: its first `width` are taken).
        if listed is not None:
            self._compact(listed[0][:, :width], query_mask=listed[1][:, :width])
        else:
            columns = compact_columns(positive_mask)
            if columns is not None and columns.shape[1] == width:
                self._compact(ops.cast(columns, INDEX_DTYPE))
            else:
                self._compact(*positive_columns(distances, positive_mask, width))
        self._width = width
        self._thresholds = ops.stop_gradient(self.query_distances)
        at_once = broadcasts(distances.shape, width, broadcast)
        # A compiled step's static matrix beyond one block of rows: every question and
        # every hand-written gradient runs by blocks of rows (`_answer`, `_shares`), so
        # that the search holds no `[B, R]` array of its own, only blocks.
        self._block = block_rows(distances) if not at_once and blocked(distances) else None
        # By blocks, the column loops may stop at `visited` (a scalar tensor, at least
        # every row's number of positives: the positive columns come first) rather than
        # at `width`: one search then serves every width up to its own
        # (`choice._switch`'s backward pass). The columns it skips hold no positive.
        self._visited = width if visited is None or self._block is None else visited
        # The backward passes add each column's shares to the gradient, elementwise (no
        # reduction): where steps fuse, the M columns are unrolled into one fused pass
        # over `[B, R]` instead of a loop of M passes, at the full width (the columns past
        # `visited` hold no query, so their shares are exact zeros).
        self._shared = width if FUSES_ELEMENTWISE_STEPS else self._visited
        # At once: the negatives as `[B, 1, R]` (non-negatives at +inf: never below a
        # finite threshold, never the closest), to compare with `[B, M, 1]` thresholds.
        # The column loops compare the distances and AND the mask instead: no `[B, R]`
        # array of negatives to build (a slow `where` on eager PyTorch) or to keep.
        self._negatives = self._across = None
        if at_once:
            self._negatives = _negatives_of(ops.stop_gradient(distances), negative_mask)
            self._across = ops.expand_dims(self._negatives, 1)

    def _answer(self, answer, outputs, *arrays):
        """`answer(values, negative_mask, *arrays)`: a tuple of `[B, M]` answers from the
        `[B, R]` distances (gradients stopped) and negative mask and `[B, M]` arrays; by
        blocks of rows (`outputs`: `(M, dtype)` each) where the search runs in blocks,
        else at once."""
        stopped = ops.stop_gradient(self.distances)
        if self._block is None:
            return answer(stopped, self.negative_mask, *arrays)
        return _by_row_blocks(answer, outputs, self._block, stopped, self.negative_mask, *arrays)

    def _count_below(self, thresholds, inclusive):
        if self._across is not None:
            top = ops.expand_dims(thresholds, 2)
            return ops.sum(_at_most(self._across, top) if inclusive else _below(self._across, top), axis=2)
        step = _count_at_most if inclusive else _count_below
        width = self._width
        visited = self._visited

        def answer(values, negative_mask, thresholds):
            init = ops.zeros(ops.shape(thresholds), INDEX_DTYPE)
            return (_column_loop(step, visited, init, values, negative_mask, thresholds),)

        return self._answer(answer, [(width, INDEX_DTYPE)], thresholds)[0]

    def _shifted(self, offset):
        return self._thresholds + offset if offset else self._thresholds

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`(count, sum)`, `[B, M]` each: the negatives with `d(a, p) + start_offset <
        d(a, n) < d(a, p) + stop_offset` (`≤` at the top if `stop_inclusive`; no lower
        bound when `start_offset` is None). Per column, one `[B, R]` band mask gives the
        count and the sum; the sum's gradient compares again (`_band_sums`)."""
        stop = self._shifted(stop_offset)
        if self._across is not None:
            count, total = self._band_at_once(stop, stop_inclusive, start_offset)
        else:
            start = ops.full(ops.shape(stop), -_INF) if start_offset is None else self._shifted(start_offset)
            count_and_sum, share, by_autodiff = _BAND_STEPS[bool(stop_inclusive), start_offset is not None]
            width, block, visited, shared = self._width, self._block, self._visited, self._shared

            def answer(values, negative_mask, stop, start):
                init = (ops.zeros(ops.shape(stop), INDEX_DTYPE), ops.zeros(ops.shape(stop), values.dtype))
                return _column_loop(count_and_sum, visited, init, values, negative_mask, stop, start)

            outputs = [(width, INDEX_DTYPE), (width, self.distances.dtype)]
            count, total = self._answer(answer, outputs, stop, start)

            # The band sums' gradient: the band masks again, not kept from the forward
            # pass (O(B·R) memory for any M).
            def gradient(upstream, stopped, negative_mask, stop, start, query=()):
                return _shares(
                    share, shared, block, stopped, negative_mask, stop, start, upstream, query=query
                )

            arrays = self._backward_arrays() + (stop, start)
            total = self._differentiable(gradient, by_autodiff, total, arrays)
        if start_offset is None:  # the same count as `count_within`'s: share it
            self._counts.setdefault((float(stop_offset), bool(stop_inclusive)), count)
        return count, total

    def _backward_arrays(self):
        """`(distances, negative_mask)` with gradients stopped, which a hand-written
        backward pass compares again, made here:
        a TensorFlow `tf.cond` branch's gradient cannot read a tensor its branch captured
        from outside (the distances and masks are made before the choice)."""
        return ops.stop_gradient(self.distances), ops.stop_gradient(self.negative_mask)

    def closest_beyond(self, or_farthest=False):
        """`(distance, found)`, `[B, M]` each: the closest negative with `d(a, n) >
        d(a, p)` and whether there is one; where there is none, the distance is the
        farthest negative's if `or_farthest`, else meaningless.

        Minima, not argmins (XLA reduces a minimum in vectorised passes, an argmin one
        pair at a time), with gradients stopped; a hand-written backward pass gives them
        their gradient. On an exact tie the gradient is shared among the tied negatives."""
        if self._across is not None:
            return self._closest_beyond_at_once(or_farthest)
        width, block, visited, shared = self._width, self._block, self._visited, self._shared

        def answer(values, negative_mask, thresholds):
            init = ops.zeros(ops.shape(thresholds), values.dtype)
            closest = _column_loop(_closest_beyond, visited, init, values, negative_mask, thresholds)
            found = closest < _INF
            if or_farthest:
                farthest = ops.max(ops.where(negative_mask, values, -_INF), axis=1)
                closest = ops.where(found, closest, ops.expand_dims(farthest, 1))
            # How many negatives equal each pick: its gradient is shared among them.
            none = ops.zeros(ops.shape(closest), closest.dtype)
            return closest, found, _column_loop(_ties, visited, none, values, negative_mask, closest)

        dtype = self.distances.dtype
        outputs = [(width, dtype), (width, "bool"), (width, dtype)]
        closest, found, ties = self._answer(answer, outputs, self._thresholds)

        # The gradient of `closest[a, m]` goes to the negatives of row `a` equal to it,
        # shared on ties (±inf, no such negative, reads as 0 without gradient): the
        # backward pass compares again, one `[B, R]` pass per column, where autodiff of
        # a masked minimum would keep a `[B, R]` mask per column.
        def gradient(upstream, stopped, negative_mask, closest, ties, query=()):
            weights = upstream / ops.maximum(ties, 1.0)
            return _shares(_share, shared, block, stopped, negative_mask, closest, weights, query=query)

        value = ops.where(ops.abs(closest) < _INF, closest, 0.0)
        arrays = self._backward_arrays() + (closest, ties)
        return self._differentiable(gradient, _picked_by_autodiff, value, arrays), found

    def _differentiable(self, gradient, by_autodiff, value, arrays):
        """`value` (`[B, M]`, an answer) with its hand-written gradient in the distances,
        `gradient(upstream, *arrays, query=...)` (`with_matrix_gradient`);
        `by_autodiff(distances, value, *arrays)` in a TensorFlow graph with a dynamic
        batch size (a last, partial batch), where the gradient of a `tf.custom_gradient`
        inside the choice's `tf.cond`s fails to build.

        From `PACKED_QUERY_ENTRIES` entries (and by blocks of rows), the same custom
        gradient also carries the query distances' (`query_distances` is replaced by a
        copy of itself whose gradient it writes): the gradient (each block's, by blocks
        of rows) starts from the query-distance gradient, scattered to its columns, and
        adds the answer's shares to it, one `[B, R]` gradient array where autodiff of
        the gather would add a second one to it (a compiled step holds both at its
        peak). The same sums: the query columns are positives, where the shares add
        exact zeros, and the shares' columns are negatives. A reader of the query
        distances before the question keeps the gather's own gradient."""
        rows, columns = self.distances.shape
        if rows is None:
            return by_autodiff(self.distances, value, *arrays)
        if self._block is None and rows * columns < PACKED_QUERY_ENTRIES:
            return with_matrix_gradient(gradient, self.distances, value, *arrays)
        width = self._width
        packed = ops.concatenate([ops.stop_gradient(self.query_distances), value], axis=1)

        def both(upstream, columns, *arrays):
            query = (columns, upstream[:, :width])
            return gradient(upstream[:, width:], *arrays, query=query)

        packed = with_matrix_gradient(both, self.distances, packed, self._columns, *arrays)
        self.query_distances = packed[:, :width]
        return packed[:, width:]

    def _band_at_once(self, stop, stop_inclusive, start_offset):
        """`band` by one `[B, M, R]` 0/1 mask: its count, and the sum of the distances in
        it (autodiff: the gradient is the mask times the upstream, summed over M)."""
        stop = ops.expand_dims(stop, 2)
        inside = _at_most(self._across, stop) if stop_inclusive else _below(self._across, stop)
        if start_offset is not None:
            inside = inside * _below(ops.expand_dims(self._shifted(start_offset), 2), self._across)
        total = ops.sum(inside * ops.expand_dims(self.distances, 1), axis=2)
        return ops.sum(inside, axis=2), total

    def _closest_beyond_at_once(self, or_farthest):
        """`closest_beyond` by one `[B, M, R]` masked minimum: each negative not beyond the
        threshold is pushed to at least `_BIG` (the largest float32) before the minimum,
        so a pick below `_BIG` is a negative beyond it. Its gradient goes to the
        negatives equal to the pick, shared on ties, as in `closest_beyond`: the pick plus
        an exactly-zero mean of `d − d` over the tied negatives (whose gradient is 1)."""
        thresholds = ops.expand_dims(self._thresholds, 2)
        not_beyond = 1.0 - _below(thresholds, self._across)
        closest = ops.min(self._across + not_beyond * _BIG, axis=2)
        found = closest < _BIG
        closest = ops.where(found, closest, _INF)
        if or_farthest:
            farthest = ops.max(ops.where(self.negative_mask, self._negatives, -_INF), axis=1)
            closest = ops.where(found, closest, ops.expand_dims(farthest, 1))
        # ±inf (no such negative) reads as 0, without gradient: compared as -inf, which
        # no negative (finite, or +inf outside the negatives) equals.
        finite = ops.abs(closest) < _INF
        tied = _equal(self._across, ops.expand_dims(ops.where(finite, closest, -_INF), 2))
        zero = ops.expand_dims(self.distances - ops.stop_gradient(self.distances), 1)
        ties = ops.maximum(ops.sum(tied, axis=2), 1.0)
        picked = ops.where(finite, closest, 0.0) + ops.sum(tied * zero, axis=2) / ties
        return picked, found


# The largest float32: a negative not beyond its threshold becomes at least this.
_BIG = 3.4028234663852886e38


def broadcasts(shape, width, broadcast=True):
    """Whether a search of a `shape` (`[B, R]`) matrix at `width` compares its columns
    at once: asked for, static shapes, and at most `BROADCAST_ENTRIES` entries."""
    rows, references = shape
    return (
        bool(broadcast)
        and rows is not None
        and references is not None
        and rows * width * references <= BROADCAST_ENTRIES
    )


# The `[B, M, R]` comparisons as 0/1 floats from the sign of a difference: exact (the
# difference of two distinct finite floats is never 0 and has their order's sign; +inf,
# the non-negatives, compares as itself; only under flush-to-zero, as TensorFlow runs,
# could two distances both below ~1e-31 compare equal), and on eager PyTorch a few
# vectorised float passes where a comparison's boolean array and its cast cost several
# times more. A NaN distance gives NaN (not "no") there: the loss is NaN anyway.


def _below(x, y):
    """`x < y` as 0/1."""
    return ops.relu(ops.sign(y - x))


def _at_most(x, y):
    """`x ≤ y` as 0/1."""
    return 1.0 - ops.relu(ops.sign(x - y))


def _equal(x, y):
    """`x == y` as 0/1 (for `y` finite or −inf)."""
    return 1.0 - ops.abs(ops.sign(x - y))


_INF = float("inf")
# The smallest static `[B, R]` matrix (B = 512) whose answers' gradient also writes the
# query distances' (`DirectNegatives._differentiable`). Measured on JAX, batch-all: at
# B = 1024 the gather's gradient added apart cost a sixth of the loss (40 against 34 ms);
# at B = 256, in a training step's `cond`s, the packed gradient cost 0.5 ms more.
PACKED_QUERY_ENTRIES = 2**18
# Entries of a row block on eager PyTorch (`_column_loop`): 8 MB per float32 step, below
# glibc's threshold for returning memory to the system, so blocks reuse their buffers.
BLOCK_ENTRIES = 2**21


# The questions visit the columns by a loop (`ops.fori_loop`), not unrolled: XLA's CPU
# reductions read a materialised `[B, R]` input, so unrolled columns would each hold one
# (64 MB at B = 4096); a loop holds one column's at a time. The backward passes have no
# reduction, only elementwise adds, which XLA fuses into one pass when unrolled. The loop
# bodies are module-level functions that get every array through the loop state (as in
# `sorted_negatives.py`: eager JAX then reuses one compiled loop).


def _column_loop(step, width, init, *arrays, unrolled=False):
    """`carry = step(m, carry, *arrays)` for each query column `m < width` in turn
    (`width`: an int, or in a compiled step a scalar integer tensor); `unrolled` (an int
    `width`): in a Python loop, not `ops.fori_loop` (elementwise steps that XLA fuses
    into one pass).

    `init`: the first carry, or a function of a number of rows that returns it (a `[B, R]`
    accumulator: row blocks then never hold the whole of it at once).

    `arrays[0]` is `[B, R]`, and every array and the carry have the batch's rows first:
    each row's result depends on its own rows alone. Where the backend does not fuse
    elementwise steps (eager PyTorch: each step of a pass is a new array), the rows run
    in blocks of about `BLOCK_ENTRIES` entries, so that a pass holds a few blocks rather
    than a few `[B, R]` arrays."""
    rows, columns = arrays[0].shape[0], arrays[0].shape[1]
    if callable(init) and not (rows is not None and _blocked(rows, columns)):
        init = init(ops.shape(arrays[0])[0])
    if rows is None or unrolled:
        # Unrolled as asked, or in a TensorFlow graph with a dynamic batch size (a last,
        # partial batch), where XLA cannot compile the `tf.cond` gradient that would keep a
        # `tf.while_loop`'s intermediates.
        for m in range(width):
            init = step(m, init, *arrays)
        return init
    if not _blocked(rows, columns):
        return fori_loop(0, width, _body(step), (init, arrays))[0]
    # (The carry is an array or a tuple of arrays; no `keras.tree` here: on PyTorch its
    # flattening leaves a reference cycle holding what it flattened, see `fori_loop`.)
    block = max(1, BLOCK_ENTRIES // columns)
    parts = []
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        if callable(init):
            carry = init(stop - start)
        else:
            carry = tuple(c[start:stop] for c in init) if isinstance(init, tuple) else init[start:stop]
        out = fori_loop(0, width, _body(step), (carry, tuple(x[start:stop] for x in arrays)))[0]
        parts.append(out if isinstance(out, tuple) else (out,))
    joined = tuple(ops.concatenate(blocks, axis=0) for blocks in zip(*parts))
    return joined if len(joined) > 1 else joined[0]


def _blocked(rows, columns):
    """Whether `_column_loop` runs a static `[rows, columns]` pass in row blocks."""
    static = isinstance(rows, int) and isinstance(columns, int)
    return not FUSES_ELEMENTWISE_STEPS and static and rows * columns > BLOCK_ENTRIES


@functools.cache
def _body(step):
    def body(m, state):
        carry, arrays = state
        return step(m, carry, *arrays), arrays

    return body


def _column(x, m):
    """Column `m` of `[B, M]` as `[B, 1]` (`m` a loop index: a tensor in compiled loops)."""
    return ops.expand_dims(ops.take(x, m, axis=1), 1)


def _set_column(out, m, value):
    columns = ops.arange(out.shape[1])
    return ops.where(ops.expand_dims(columns == m, 0), ops.expand_dims(ops.cast(value, out.dtype), 1), out)


# The counts sum boolean masks by `count_true`: on eager PyTorch without a widened copy
# of each mask.


def _closest_beyond(m, out, values, negative_mask, thresholds):
    beyond = ops.where(ops.logical_and(negative_mask, values > _column(thresholds, m)), values, _INF)
    return _set_column(out, m, ops.min(beyond, axis=1))


def _count_below(m, out, values, negative_mask, thresholds):
    below = ops.logical_and(negative_mask, values < _column(thresholds, m))
    return _set_column(out, m, count_true(below, axis=1))


def _count_at_most(m, out, values, negative_mask, thresholds):
    at_most = ops.logical_and(negative_mask, values <= _column(thresholds, m))
    return _set_column(out, m, count_true(at_most, axis=1))


def _ties(m, out, values, negative_mask, targets):
    tied = ops.logical_and(negative_mask, values == _column(targets, m))
    return _set_column(out, m, count_true(tied, axis=1))


def _share(m, total, values, negative_mask, targets, weights):
    tied = ops.logical_and(negative_mask, values == _column(targets, m))
    return add_where(total, tied, _column(weights, m))


def _by_row_blocks(answer, outputs, block, stopped, negative_mask, *arrays):
    """`answer(values, negative_mask, *arrays)` on every block of `block` rows
    (`over_row_blocks`), given its rows of the distances (`stopped`, gradients stopped),
    the mask and `arrays`; returns the `[B, columns]` arrays of `outputs` (`(columns,
    dtype)` each)."""

    def by_block(rows_of, stopped, negative_mask, *arrays):
        return answer(rows_of(stopped), rows_of(negative_mask), *(rows_of(x) for x in arrays))

    return over_row_blocks(by_block, outputs, (stopped, negative_mask) + arrays, block)


def _shares(step, width, block, stopped, negative_mask, *arrays, query=()):
    """`[B, R]`: a hand-written gradient, the sum over the query columns `m < width` of
    `step(m, total, values, negative_mask, *arrays)`'s shares, comparing the distances
    (`stopped`, gradients stopped) and the mask again; by blocks of `block` rows (each
    block writes its rows of the gradient) unless `block` is None. `query`: `(columns,
    upstream)` (`[B, M]` each), the query distances' gradient, which the sum (each
    block's) starts from, or `()` (`DirectNegatives._differentiable`). Where steps fuse
    (XLA), the columns are unrolled (`width` an int): the steps add elementwise, so XLA
    makes of them one pass over `[B, R]`."""
    unrolled = FUSES_ELEMENTWISE_STEPS
    if block is None:
        if query:
            columns, upstream = query
            init = scatter_rows(ops.cast(upstream, stopped.dtype), columns, stopped.shape[1])
        else:
            init = functools.partial(_zero_rows, stopped)
        return _column_loop(step, width, init, stopped, negative_mask, *arrays, unrolled=unrolled)
    queried = len(query)

    def answer(values, negative_mask, *arrays):
        if queried:
            columns, upstream = arrays[:2]
            init = scatter_rows(ops.cast(upstream, values.dtype), columns, values.shape[1])
        else:
            init = ops.zeros(ops.shape(values), values.dtype)
        return (_column_loop(step, width, init, values, negative_mask, *arrays[queried:], unrolled=unrolled),)

    outputs = [(stopped.shape[1], stopped.dtype)]
    return _by_row_blocks(answer, outputs, block, stopped, negative_mask, *query, *arrays)[0]


def _zero_rows(like, rows):
    """`[rows, R]` zeros of the dtype of `like` (`[B, R]`)."""
    return ops.zeros((rows, ops.shape(like)[1]), like.dtype)


def _zero_with_gradient(distances, mask):
    """`[B]`: the sum over each row of `distances − distances` where `mask` holds: exactly
    0, with gradient 1 at the masked entries."""
    return ops.sum(ops.where(mask, distances - ops.stop_gradient(distances), 0.0), axis=1)


def _negatives_of(stopped, negative_mask):
    """`[B, R]`: the distances (gradients stopped) at the negatives, +inf elsewhere (the
    searches that compare all columns at once)."""
    return ops.where(negative_mask, stopped, _INF)


def _picked_by_autodiff(distances, value, stopped, negative_mask, targets, ties):
    """`closest_beyond`'s gradient by autodiff (it keeps a `[B, R]` mask per column)."""
    shares = []
    for m in range(targets.shape[1]):
        tied = ops.logical_and(negative_mask, stopped == targets[:, m : m + 1])
        shares.append(_zero_with_gradient(distances, tied) / ops.maximum(ties[:, m], 1.0))
    return value + ops.stack(shares, axis=1)


def _band_steps(inclusive, bounded):
    """The band's loop steps, for a top edge `<` or `≤`, with a bottom edge or without
    (`bounded`; without, `start` is not read: two `[B, R]` operations fewer per column
    where steps run op by op): `(count_and_sum, share, by_autodiff)` (the count and sum
    per column, the sum's gradient per column, and the sum's gradient by autodiff)."""

    def inside(m, values, negative_mask, stop, start):
        top = _column(stop, m)
        below = ops.logical_and(negative_mask, values <= top if inclusive else values < top)
        return ops.logical_and(below, values > _column(start, m)) if bounded else below

    def count_and_sum(m, carry, values, negative_mask, stop, start):
        count, total = carry
        mask = inside(m, values, negative_mask, stop, start)
        count = _set_column(count, m, count_true(mask, axis=1))
        return count, _set_column(total, m, ops.sum(ops.where(mask, values, 0.0), axis=1))

    def share(m, result, values, negative_mask, stop, start, weights):
        return add_where(result, inside(m, values, negative_mask, stop, start), _column(weights, m))

    def by_autodiff(distances, total, stopped, negative_mask, stop, start):
        zeros = [
            _zero_with_gradient(distances, inside(m, stopped, negative_mask, stop, start))
            for m in range(stop.shape[1])
        ]
        return total + ops.stack(zeros, axis=1)

    return count_and_sum, share, by_autodiff


_BAND_STEPS = {
    (inclusive, bounded): _band_steps(inclusive, bounded)
    for inclusive in (False, True)
    for bounded in (False, True)
}


def positive_columns(distances, positive_mask, width, sorted=False):
    """`(columns, query_mask)`, `[B, width]` each: each row's positive columns first (the
    `width` top columns of the 0/1 mask), and whether each is a positive (`width` ≥ each
    row's count). `sorted=True`: the first `M ≤ width` columns hold every positive of a
    row that has at most `M`, so that one list serves every narrower direct search."""
    references = distances.shape[1]
    if blocked(distances) and references >= width:
        # By blocks of rows: the top_k's float32 copy of the mask is then one block's,
        # not a `[B, R]` buffer that a P×K step would touch for this list alone. A
        # block's mask stands in for its distances below: only their shape is read.
        def answer(rows_of, mask):
            return positive_columns(rows_of(mask), rows_of(mask), width, sorted=sorted)

        outputs = ((width, INDEX_DTYPE), (width, "bool"))
        return over_row_blocks(answer, outputs, (positive_mask,), block_rows(distances))
    scores = ops.cast(positive_mask, "float32")
    if references is None or references < width:
        # A graph whose batch may be narrower than M (a last, partial batch): pad the
        # mask with M non-positive columns so that top_k is always defined. Picks of
        # padding are clamped to the last real column; the query mask, read from the
        # padded mask, stays False for them.
        scores = ops.concatenate([scores, ops.zeros((ops.shape(scores)[0], width), scores.dtype)], axis=1)
    columns = ops.cast(ops.top_k(scores, width, sorted=sorted)[1], INDEX_DTYPE)
    return (
        ops.minimum(columns, ops.cast(ops.shape(distances)[1] - 1, INDEX_DTYPE)),
        take_along_rows(scores, columns) > 0,
    )
