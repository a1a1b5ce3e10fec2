"""The only place in the library's core that asks which Keras backend runs.

Everything else is `keras.ops`. What lives here differs per backend because the generic
`keras.ops` version costs time or memory inside the sorted negative search's
`log2(B)`-step loop over `[B, B]` arrays, or because only some backends can do it:

* `_generic.py` (TensorFlow, JAX, any other backend): the row gather is a `keras.ops.take`
  from the flattened matrix, with `[B, M]` indices; `keras.ops.take_along_axis` would
  build `[B, M, 2]` index arrays (XLA even constant-folds their iota at compile time:
  200+ MB at B = 4096). Compiled graphs need static shapes, so rows are never compacted.
* `_torch.py` (PyTorch): `torch.gather` and `torch.argsort` with int64 indices end to end;
  `keras.ops.take_along_axis` converts and rewrites its indices on every call and
  `keras.ops.argsort` casts its result to int32, extra passes over `[B, B]` arrays. Eager
  PyTorch can size arrays by the data, so it compacts each row to its positive columns,
  and a loss on a few marked rows (N-pairs' tuples) to those rows.

Any other code that must differ per backend (a training step's, should one stay) belongs
here too, as its own module chosen below.

* `distribute` (`_distribute_tensorflow.py`, `_distribute_torch.py`, `_distribute_generic.py`
  for JAX and others): data parallelism. Under `tf.distribute` and `torch.distributed`
  each replica's step sees only its slice of the global batch, and only the framework can
  reach the others: `replica_count()`, a differentiable `all_gather(x)` (gradient: the
  sum over replicas of the upstream gradients, own rows), `loss_scale(count)` (what the
  framework's gradient aggregation needs) and `replica_mean(x)` (what a replica logs);
  `step_logs(logs)` (the identity but under TensorFlow's `MultiWorkerMirroredStrategy`,
  where Keras 3.15 needs `[1]` logs; `_distribute_tensorflow.py` also holds
  `local_build_batch`, the other Keras 3.15 workaround there).
  JAX's `keras.distribution` traces the step over global arrays: nothing to gather.
  `keras_triplet/models/distributed.py` is the backend-free side.

* `compiled_mining(fn, *tensors)` (`_compiled_mining.py`): the mining part of a step
  that XLA does not compile (TensorFlow's `jit_compile=False`), compiled by XLA alone as
  a `tf.function(jit_compile=True)` inside the step, its gradient too; elsewhere (JAX,
  PyTorch, eager or dynamic-shape TensorFlow) `fn` called as it is.

Both row-primitive modules export:

* `INDEX_DTYPE`: the integer dtype of index arrays (int64 on PyTorch, int32 elsewhere);
* `argsort_rows(x)`: `[B, R]` indices sorting each row ascending (not necessarily stable);
* `take_along_rows(x, index)`: `x[a, index[a, j]]` for `[B, M]` indices (differentiable in
  `x`; `index` must hold valid, non-negative positions);
* `compact_columns(mask)`: `[B, M]` column indices covering every True of each row, or
  None to keep every column (always None where shapes must stay static);
* `compact_rows(mask)`: the positions of the True entries of a `[B]` mask, or None where
  shapes must stay static (always None in `_generic.py`);
* `search_rows(sorted_rows, thresholds, inclusive, limit=None)`: per row, the number of
  entries of the ascending `sorted_rows` (`[B, R]`) below each of `thresholds` (`[B, M]`;
  `≤` if inclusive; at most `limit`, `[B, 1]`, if given), or None where the caller's own binary search is the way (`_generic.py`:
  XLA runs it as a loop of fused passes; PyTorch has one batched `searchsorted` call for
  the log2(R) passes of several eager operations each);
* `fori_loop(lower, upper, body, state)`: `keras.ops.fori_loop` (on PyTorch a plain
  loop: Keras' flattening of the state leaves a reference cycle that keeps it alive);
* `host_value(x)`: the Python number of a scalar tensor or variable where an eager step
  can read it without waiting for a device (eager PyTorch on CPU), else None (traced
  steps, accelerators): a training step then decides in Python what would otherwise be
  a few eager tensor operations (`TripletModel`'s every-N-th-step test of the statistics);
* `memoized_result(metric, compute)`: `compute()`, a Keras metric's result; on PyTorch
  computed again only after the metric's state changed (Keras reads every metric after
  every eager step; the statistics' trackers change every N-th step);
* `count_true(mask, axis=None)`: the number of True entries of a boolean array, a
  scalar integer, or per slice along `axis` (on PyTorch without the int64 copy of a
  summed bool array; in `_generic.py` summed in float32 for the static sizes of
  `FLOAT_COUNT_ENTRIES`, where XLA's CPU kernels vectorise the float32 sum and not the
  int32 one);
* `add_where(total, mask, values)`: `total + where(mask, values, 0)`, on PyTorch added
  into `total` in place where autograd does not track it (a backward pass's accumulator);
* `scatter_rows(values, index, width)`: the `[B, width]` array holding `values[a, j]` at
  column `index[a, j]` (distinct per row), 0 elsewhere: the inverse of a compaction;
* `margin_cross_entropy(logits, labels, target)`: `[B]` `−log softmax(ℓ')[i, labels[i]]`,
  `ℓ'` the `[B, C]` logits with each row's own entry replaced by `target[i]` (ArcFace /
  CosFace). On PyTorch a `torch.autograd.Function` with its gradient written out: through
  autograd, the scatter's and `nll_loss`'s gradients each cost a `[B, C]` copy or fill,
  a large share of the step at `[1024, 1000]`;
* `switch_with_own_gradients(index, branches, x)`:
  `branches[index](x)`, differentiable in `x` alone, whose backward pass runs the chosen
  branch again inside a second switch,
  so that no branch's residuals cross it (`_jax.py`: `jax.vjp` inside `lax.switch`;
  `_tensorflow.py`: a `tf.GradientTape` inside `tf.switch_case`, under `tf.custom_gradient`;
  Keras has no backend-free vjp), or None elsewhere (eager PyTorch decides in Python): the
  caller keeps its `ops.cond`s (`miners.search.with_negatives(own_gradients=True)`);
* `SWITCH_BAND_SEARCHES`: whether the triplet loss with a band miner (batch-all) takes
  that switch too (`losses.triplet.switches_own_gradients`): measured, it pays on
  TensorFlow, whose `cond`s hold far more, and not on JAX;
* `SWITCH_MIN_ENTRIES`: the smallest static `[B, R]` matrix whose compiled choice takes
  that switch below the size where the searches run by row blocks (JAX: 2^18, where its
  `cond`s' residuals cost more than the forward pass run twice), or None: only where
  they run by blocks (TensorFlow, whose `cond`s cost no time there);
* `sort_masked_rows(x, mask, filler)` (`(values, order)`: the rows of `x`, `filler`
  where `mask` is False, sorted ascending, and the columns they came from),
  `pick_sorted(values, order, index, count, distances)`,
  `sum_sorted_runs(total, order, start, stop, distances)`: the sorted search's values,
  its picks at sorted positions and its sums over runs of sorted positions. `_generic.py`: the values carry the gradient and autodiff takes it
  to the picks and sums; `_torch.py`: the values carry none, and each pick or run sum
  writes its gradient into `distances`' `[B, R]` once (`torch.autograd.Function`s), where
  eager autodiff would walk back through the prefix sums, the sort's gather and the
  negative mask, a pass over `[B, R]` each;
* `self_euclidean(x)`: `distances.pairwise_distances(x)` (Euclidean, square) with its
  hand-written gradient, its steps in place on PyTorch (the same values and gradient),
  or None (`_generic.py`: `distances._self_euclidean` in `keras.ops` is the way);
* `without_diagonal(mask)`: a `[B, R]` boolean mask with its entries `(i, i)` False (on
  PyTorch one strided write instead of two `arange`s, a comparison and a `logical_and`);
* `FUSES_ELEMENTWISE_STEPS`: whether a chain of elementwise steps over `[B, R]` arrays
  and its reduction runs as a few fused passes (XLA, on TensorFlow and JAX) rather than
  materialising each step's array (eager PyTorch). Where steps do not fuse, the pair and
  log-sum-exp losses (`losses.reductions.by_row_blocks`) and the direct search's column
  passes run in row blocks, so that the peak holds a few blocks and not a few `[B, R]`
  arrays, and `miners.search.with_negatives` weighs its searches by their passes;
* `BROADCAST_ENTRIES`: the largest `B·M·R` for which a direct search in a step that does
  not fuse compares all its `M` columns at once (`miners.search.DirectNegatives`): smaller
  on PyTorch, where each large array costs page faults.
"""

import keras

if keras.backend.backend() == "tensorflow":
    from keras_triplet._backend import _distribute_tensorflow as distribute
elif keras.backend.backend() == "torch":
    from keras_triplet._backend import _distribute_torch as distribute
else:
    from keras_triplet._backend import _distribute_generic as distribute

if keras.backend.backend() == "torch":
    from keras_triplet._backend._torch import (
        BROADCAST_ENTRIES,
        FUSES_ELEMENTWISE_STEPS,
        INDEX_DTYPE,
        add_where,
        argsort_rows,
        compact_columns,
        compact_rows,
        count_true,
        fori_loop,
        host_value,
        margin_cross_entropy,
        memoized_result,
        pick_sorted,
        scatter_rows,
        search_rows,
        self_euclidean,
        sort_masked_rows,
        sum_sorted_runs,
        take_along_rows,
        without_diagonal,
    )
else:
    from keras_triplet._backend._generic import (
        BROADCAST_ENTRIES,
        FUSES_ELEMENTWISE_STEPS,
        INDEX_DTYPE,
        add_where,
        argsort_rows,
        compact_columns,
        compact_rows,
        count_true,
        fori_loop,
        host_value,
        margin_cross_entropy,
        memoized_result,
        pick_sorted,
        scatter_rows,
        search_rows,
        self_euclidean,
        sort_masked_rows,
        sum_sorted_runs,
        take_along_rows,
        without_diagonal,
    )
from keras_triplet._backend._compiled_mining import compiled_mining

if keras.backend.backend() == "jax":
    from keras_triplet._backend._jax import (
        SWITCH_BAND_SEARCHES,
        SWITCH_MIN_ENTRIES,
        switch_with_own_gradients,
    )
elif keras.backend.backend() == "tensorflow":
    from keras_triplet._backend._tensorflow import (
        SWITCH_BAND_SEARCHES,
        SWITCH_MIN_ENTRIES,
        switch_with_own_gradients,
    )
else:
    from keras_triplet._backend._generic import (
        SWITCH_BAND_SEARCHES,
        SWITCH_MIN_ENTRIES,
        switch_with_own_gradients,
    )


def traced_value(x):
    """The value of the tensor `x` (NumPy), or None while a compiled function (`jax.jit`,
    `tf.function`) traces it and it has no value yet: each backend raises its own error
    there, hence here."""
    try:
        return keras.ops.convert_to_numpy(x)
    except Exception:
        return None


__all__ = [
    "BROADCAST_ENTRIES",
    "FUSES_ELEMENTWISE_STEPS",
    "INDEX_DTYPE",
    "SWITCH_BAND_SEARCHES",
    "SWITCH_MIN_ENTRIES",
    "add_where",
    "argsort_rows",
    "compiled_mining",
    "compact_columns",
    "compact_rows",
    "count_true",
    "distribute",
    "fori_loop",
    "host_value",
    "margin_cross_entropy",
    "memoized_result",
    "pick_sorted",
    "search_rows",
    "self_euclidean",
    "sort_masked_rows",
    "sum_sorted_runs",
    "scatter_rows",
    "switch_with_own_gradients",
    "take_along_rows",
    "traced_value",
    "without_diagonal",
]
