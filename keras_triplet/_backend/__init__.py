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
  PyTorch can size arrays by the data, so it compacts each row to its positive columns.

Any other code that must differ per backend (a training step's, should one stay) belongs
here too, as its own module chosen below.

Both row-primitive modules export:

* `INDEX_DTYPE`: the integer dtype of index arrays (int64 on PyTorch, int32 elsewhere);
* `argsort_rows(x)`: `[B, R]` indices sorting each row ascending (not necessarily stable);
* `take_along_rows(x, index)`: `x[a, index[a, j]]` for `[B, M]` indices (differentiable in
  `x`; `index` must hold valid, non-negative positions);
* `compact_columns(mask)`: `[B, M]` column indices covering every True of each row, or
  None to keep every column (always None where shapes must stay static);
* `scatter_rows(values, index, width)`: the `[B, width]` array holding `values[a, j]` at
  column `index[a, j]` (distinct per row), 0 elsewhere: the inverse of a compaction;
* `FUSES_BROADCAST_COMPARISONS`: whether comparing `[B, M, 1]` thresholds with `[B, 1, R]`
  values and reducing over `R` runs as a few fused passes (XLA, on TensorFlow and JAX)
  rather than materialising each `[B, M, R]` array (eager PyTorch). The choice of the
  negative search (`miners/search/choice.py`) asks it: the direct search is made of such
  comparisons.
"""

import keras

if keras.backend.backend() == "torch":
    from keras_triplet._backend._torch import (
        FUSES_BROADCAST_COMPARISONS,
        INDEX_DTYPE,
        argsort_rows,
        compact_columns,
        scatter_rows,
        take_along_rows,
    )
else:
    from keras_triplet._backend._generic import (
        FUSES_BROADCAST_COMPARISONS,
        INDEX_DTYPE,
        argsort_rows,
        compact_columns,
        scatter_rows,
        take_along_rows,
    )

__all__ = [
    "FUSES_BROADCAST_COMPARISONS",
    "INDEX_DTYPE",
    "argsort_rows",
    "compact_columns",
    "scatter_rows",
    "take_along_rows",
]
