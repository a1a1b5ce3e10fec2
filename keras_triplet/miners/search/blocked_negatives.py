"""The sorted search in blocks of rows: compiled graphs' fallback in bounded memory.

Every answer of a search for anchor `a` depends only on row `a` of the distances and of
the masks, forward and backward. A compiled step (static shapes) cannot compact its
query columns, so the sorted search's answers, its argsort, sorted values, prefix sums
and binary-search state are all `[B, R]` arrays, and autodiff keeps some of them for
the backward pass: at B = 4096 that branch of the choice's `ops.cond` needed more
temporaries than the direct search it stands behind.

`BlockedSortedNegatives` answers each question in a loop over blocks of rows
(`BLOCK_ENTRIES` entries each): a block is sorted, searched and answered by a
`SortedNegatives` of its rows, with gradients stopped, and its answers are written into
the `[B, R]` query layout. Gradients are written out, per block too:

* `closest_beyond`: the loop returns the original column of each chosen negative, and
  the distance is gathered from that column (its gradient: a scatter to it);
* `band`: the sum's gradient reaches a negative from every band that holds it. In sorted
  order a band is the run of positions `[start, stop)`, so the gradient of the sorted
  row is a prefix sum of `+w` at each `start` and `−w` at each `stop` (`w` the upstream
  weight of the band), un-permuted by the argsort.

The same comparisons and arithmetic as `SortedNegatives` (a block is one), so the same
counts and sums. Compiled backends only (`blocked`): eager PyTorch compacts the query
columns and keeps `SortedNegatives`.

The loop over blocks (`over_row_blocks`) and the custom gradient that puts a
hand-written `[B, R]` gradient on the distances (`with_matrix_gradient`) serve the
direct search by blocks too (`direct_negatives.py`).
"""

from keras import ops

from keras_triplet._backend import (
    FUSES_ELEMENTWISE_STEPS,
    INDEX_DTYPE,
    count_true,
    fori_loop,
    scatter_rows,
    take_along_rows,
)
from keras_triplet.distances import _upstream
from keras_triplet.miners.search.anchor_negatives import AnchorNegatives
from keras_triplet.miners.search.sorted_negatives import SortedNegatives

# Entries of a block of rows: 8 MB per float32 `[b, R]` array; a block's sort, search and
# answers hold a few of them.
BLOCK_ENTRIES = 2**21


def blocked(distances):
    """Whether the searches of this `[B, R]` matrix run in blocks of rows: static shapes
    larger than one block, on a backend that compiles (fuses) its loops."""
    rows, columns = distances.shape[0], distances.shape[1]
    static = isinstance(rows, int) and isinstance(columns, int)
    return FUSES_ELEMENTWISE_STEPS and static and rows * columns > BLOCK_ENTRIES


def block_rows(distances):
    """The rows of a block of this static `[B, R]` matrix: about `BLOCK_ENTRIES` entries."""
    rows, width = distances.shape[0], distances.shape[1]
    return min(rows, max(1, BLOCK_ENTRIES // max(width, 1)))


def over_row_blocks(answer, outputs, arrays, block, overwrite_last=False):
    """Runs `answer(rows_of, *arrays)` on every block of `block` rows, in a loop.

    `arrays` have static shapes, the batch's rows first (or are scalars, passed whole);
    `rows_of(x)` slices the block's rows of `x`. `answer` returns one `[block, columns]`
    array per entry `(columns, dtype)` of `outputs`; they are written into `[B, columns]`
    arrays (every row is written), returned as a tuple. Each row's answer must depend on its own
    rows alone: blocks start at `min(i·block, B − block)`, so the last one overlaps the
    one before when `block` does not divide `B`, and writes again the same answers for
    the rows they share.

    `overwrite_last`: the first output is written over the last array (a backward pass's
    upstream gradient, of the output's shape and dtype), whose rows each block reads
    before it writes them, where blocks do not overlap (`block` divides `B`): one `[B, R]`
    buffer for both, not two (XLA updates a loop's carried array in place; BENCHMARKS.md
    has the temporaries it saves)."""
    rows = arrays[0].shape[0]
    last = arrays[-1]
    reuse = (
        overwrite_last
        and rows % block == 0
        and tuple(last.shape) == (rows, outputs[0][0])
        and last.dtype == outputs[0][1]
    )
    # The outputs' first buffers (every entry is overwritten): the last array itself for
    # the first output where it is reused, else the last array's first entry times 0,
    # broadcast. Zeros, a constant, would be shared by XLA between the loops of a step
    # (the forward's and the backward's, copied at the start of the step) and made early,
    # holding a `[B, R]` buffer from the forward pass to the backward one; this one is
    # made when the loop's last input is (a backward pass: its upstream).
    late = ops.cast(ops.reshape(last, (-1,))[0], "float32") * 0.0
    fresh = outputs[1:] if reuse else outputs
    init = ((last,) if reuse else ()) + tuple(
        ops.broadcast_to(ops.cast(late, dtype), (rows, columns)) for columns, dtype in fresh
    )
    if reuse:
        arrays = tuple(arrays[:-1])

    def body(i, state):
        out, arrays = state
        start = ops.minimum(i * block, rows - block)
        corner = [start, ops.zeros_like(start)]

        def rows_of(x):
            return ops.slice(x, corner, (block, ops.shape(x)[1]))

        answers = answer(rows_of, *arrays, out[0]) if reuse else answer(rows_of, *arrays)
        return tuple(ops.slice_update(o, corner, ops.cast(a, o.dtype)) for o, a in zip(out, answers)), arrays

    blocks = -(-rows // block)
    return fori_loop(0, blocks, body, (init, tuple(arrays)))[0]


def row_counts(mask):
    """`[B]`: the True entries of each row of a `[B, R]` boolean mask, as `INDEX_DTYPE`;
    by blocks of rows where `blocked`. XLA's CPU code materialises the integer copy of a
    mask it sums, a `[B, R]` buffer (64 MB at B = 4096) that a P×K step would otherwise
    touch only for its counts; by blocks the copy is one block's."""
    if not blocked(mask):
        return ops.cast(count_true(mask, axis=1), INDEX_DTYPE)

    def answer(rows_of, mask):
        return (ops.expand_dims(ops.cast(count_true(rows_of(mask), axis=1), INDEX_DTYPE), 1),)

    counts = over_row_blocks(answer, ((1, INDEX_DTYPE),), (mask,), block_rows(mask))[0]
    return ops.reshape(counts, (-1,))


def with_matrix_gradient(gradient, distances, value, *arrays):
    """`value`, differentiable in `distances` (`[B, R]`) through a hand-written gradient:
    `gradient(upstream, *arrays)` returns the `[B, R]` gradient in `distances` for the
    `upstream` gradient of `value`. `arrays`: what `gradient` reads, passed as arguments
    (JAX's custom gradients cannot close over the arrays of a function being traced;
    on TensorFlow, make them inside the choice's branch: `_backward_arrays`)."""

    @ops.custom_gradient
    def attached(distances, value, *arrays):
        def grad(*args, upstream=None):
            return (gradient(_upstream(args, upstream), *arrays), None) + (None,) * len(arrays)

        return ops.multiply(value, 1.0), grad

    return attached(distances, value, *arrays)


class BlockedSortedNegatives(AnchorNegatives):
    """`SortedNegatives`' answers, computed in blocks of rows (see the module docstring).

    Args:
        distances: `[B, R]` with static shape; negative_mask, positive_mask: `[B, R]`
            booleans.

    Example (one block here; `with_negatives` builds it for matrices larger than one):

    >>> import numpy as np
    >>> from keras import ops
    >>> from keras_triplet.miners import pair_masks
    >>> d = ops.convert_to_tensor(np.array(
    ...     [[0, 1, 2, 4], [1, 0, 3, 1], [2, 3, 0, 5], [4, 1, 5, 0]], "float32"))
    >>> positive, negative = pair_masks(ops.convert_to_tensor(np.array([0, 0, 1, 1])))
    >>> count, total = BlockedSortedNegatives(d, negative, positive).band(2.0)
    >>> ops.convert_to_numpy(count)[ops.convert_to_numpy(positive)].tolist()  # below d(a, p) + 2
    [1, 1, 2, 2]
    """

    def __init__(self, distances, negative_mask, positive_mask):
        super().__init__(distances, negative_mask, positive_mask)
        self._stopped = ops.stop_gradient(distances)
        # One filler for every block: the sums then match the unblocked search's.
        self._filler = ops.max(self._stopped) + 1.0
        self._block = block_rows(distances)

    def _by_blocks(self, answer, outputs, *extra, arrays=None, overwrite=False):
        """`answer(block, *extra_rows)`, a tuple of `[b, R]` arrays from a `SortedNegatives`
        of a block of rows and the block's rows of `extra` (`[B, R]` arrays), run over every
        block (`over_row_blocks`); returns the `[B, R]` arrays, of the dtypes `outputs`
        (`overwrite`: the first written over the last of `extra`, `over_row_blocks`).
        `arrays`: the distances (gradients stopped), masks and filler to search, if not
        this object's."""
        if arrays is None:
            arrays = (self._stopped, self.negative_mask, self.positive_mask, self._filler)

        def searched(rows_of, distances, negative, positive, filler, *extra):
            found = SortedNegatives(rows_of(distances), rows_of(negative), rows_of(positive), filler=filler)
            return answer(found, *(rows_of(x) for x in extra))

        # Static shapes only: a backward pass must not read the forward pass's tensors.
        width = self._stopped.shape[1]
        outputs = tuple((width, dtype) for dtype in outputs)
        return over_row_blocks(
            searched, outputs, tuple(arrays) + extra, self._block, overwrite_last=overwrite
        )

    def _count_below(self, thresholds, inclusive):
        def answer(found, thresholds):
            return (found._count_below(thresholds, inclusive),)

        return self._by_blocks(answer, (INDEX_DTYPE,), ops.stop_gradient(thresholds))[0]

    def band(self, stop_offset, stop_inclusive=False, start_offset=None):
        """`SortedNegatives.band`, by blocks; the sum's gradient by blocks too."""

        def answer(found):
            return found.band(stop_offset, stop_inclusive, start_offset)

        count, total = self._by_blocks(answer, (INDEX_DTYPE, self._stopped.dtype))
        if start_offset is None:  # the same count as `count_within`'s: share it
            self._counts.setdefault((float(stop_offset), bool(stop_inclusive)), count)
        bounds = (stop_offset, stop_inclusive, start_offset)

        def gradient(upstream, *arrays):
            return self._band_gradient(upstream, bounds, arrays)

        return count, with_matrix_gradient(gradient, self.distances, total, *self._backward_arrays())

    def _band_gradient(self, upstream, bounds, arrays):
        """`[B, R]`: per negative, the sum of `upstream` over the bands that hold it."""
        stop_offset, stop_inclusive, start_offset = bounds
        width = self._stopped.shape[1]

        def answer(found, weights):
            stop = found.count_within(stop_offset, inclusive=stop_inclusive)
            if start_offset is None:
                # Zeros, but read from `stop` (never negative): a constant here becomes,
                # with the row offsets below, an 8 MB index constant that TensorFlow
                # folds into the compiled step (and its compilation) at B = 4096.
                start = ops.minimum(stop, 0)
            else:
                start = found.count_within(start_offset, inclusive=True)
                stop = ops.maximum(stop, start)
            # Sorted positions [start, stop) each get `w`: +w at `start`, −w at `stop` in
            # a row one longer (stop may be R), then a prefix sum along the row.
            rows = ops.shape(weights)[0]
            base = ops.expand_dims(ops.arange(rows, dtype=INDEX_DTYPE) * (width + 1), 1)
            index = ops.concatenate(
                [ops.reshape(base + start, (-1,)), ops.reshape(base + stop, (-1,))], axis=0
            )
            delta = ops.concatenate([ops.reshape(weights, (-1,)), -ops.reshape(weights, (-1,))], axis=0)
            steps = ops.scatter(ops.expand_dims(index, 1), delta, (rows * (width + 1),))
            sorted_gradient = ops.cumsum(ops.reshape(steps, (rows, width + 1)), axis=1)[:, :width]
            # Positions past the row's negatives hold fillers; no band reaches them.
            return (scatter_rows(sorted_gradient, found.order, width),)

        return self._by_blocks(
            answer, (self._stopped.dtype,), ops.stop_gradient(upstream), arrays=arrays, overwrite=True
        )[0]

    def closest_beyond(self, or_farthest=False):
        """`SortedNegatives.closest_beyond`, by blocks; the gradient of each chosen
        distance goes to the column it was read from (found again by blocks)."""

        def answer(found):
            index, beyond = _closest_index(found, or_farthest)
            return found.take(index), beyond

        value, found = self._by_blocks(answer, (self._stopped.dtype, "bool"))

        def gradient(upstream, *arrays):
            return self._pick_gradient(upstream, or_farthest, arrays)

        return with_matrix_gradient(gradient, self.distances, value, *self._backward_arrays()), found

    def _backward_arrays(self):
        """What a hand-written backward pass searches, as arguments of its custom gradient
        (JAX's cannot close over the arrays of a function being traced), each made here:
        a TensorFlow `tf.cond` branch's gradient cannot read the tensors its branch
        captured from outside (the masks, made before the choice) directly."""
        return (
            self._stopped,
            ops.stop_gradient(self.negative_mask),
            ops.stop_gradient(self.positive_mask),
            self._filler,
        )

    def _pick_gradient(self, upstream, or_farthest, arrays):
        """`[B, R]`: per negative, the sum of `upstream` over the picks that read it."""
        width = self._stopped.shape[1]

        def answer(found, weights):
            index, _ = _closest_index(found, or_farthest)
            index = ops.clip(ops.cast(index, INDEX_DTYPE), 0, max(width - 1, 0))
            # Positions past the row's negatives hold fillers: no gradient.
            weights = ops.where(index < ops.expand_dims(found.count, 1), weights, 0.0)
            column = take_along_rows(found.order, index)
            rows = ops.shape(weights)[0]
            flat = ops.expand_dims(ops.arange(rows, dtype=column.dtype) * width, 1) + column
            summed = ops.scatter(ops.reshape(flat, (-1, 1)), ops.reshape(weights, (-1,)), (rows * width,))
            return (ops.reshape(summed, (rows, width)),)

        return self._by_blocks(
            answer, (self._stopped.dtype,), ops.stop_gradient(upstream), arrays=arrays, overwrite=True
        )[0]


def _closest_index(found, or_farthest):
    """`(index, beyond)`, `[b, R]` each, of a `SortedNegatives` `found`: the sorted position
    of `closest_beyond`'s answer, and whether a negative lies beyond the positive."""
    first_farther = found.count_within(0.0, inclusive=True)
    n_negative = ops.expand_dims(found.count, 1)
    beyond = first_farther < n_negative
    index = ops.where(beyond, first_farther, n_negative - 1) if or_farthest else first_farther
    return index, beyond
