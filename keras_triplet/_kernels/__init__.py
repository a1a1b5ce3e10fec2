"""The row primitives the miners spend their time in, chosen here once per backend.

Everything else in the library is plain `keras.ops`. These are not, because the generic
versions cost time or memory inside a `log2(B)`-step binary search over `[B, B]`
arrays (ARCHITECTURE.md has the measurements):

* on eager PyTorch, `ops.take_along_axis` converts the indices to int64 and rewrites
  negative ones on every call, and `ops.argsort` casts its int64 result to int32 (which
  the next gather converts back): `torch.gather` / `torch.argsort` instead (`_torch.py`);
* on TensorFlow and JAX, `ops.take_along_axis` builds `[B, M, 2]` index arrays; a
  `ops.take` from the flattened matrix needs `[B, M]` ones (`_generic.py`).

* `INDEX_DTYPE`: the integer dtype of index arrays (int64 on PyTorch, int32 elsewhere);
* `argsort_rows(x)`: `[B, R]` indices sorting each row ascending (not necessarily stable);
* `take_along_rows(x, index)`: `x[a, index[a, j]]` for `[B, M]` indices (differentiable
  in `x`; `index` must hold valid, non-negative positions);
* `compact_columns(mask)`: `[B, M]` column indices covering every True of each row, or
  None to use every column. Only eager PyTorch compacts (its shapes may depend on the
  data): with P×K batches an anchor has K − 1 positives among B columns, so searching
  at the positives alone is B / (K − 1) times less work;
* `scatter_rows(values, index, width)`: the inverse layout of a compacted `[B, M]` array
  (distinct indices per row);
* `count_negatives_below`, `negative_sum`, `closest_negative_above`: questions about
  each anchor's negatives at `[B, M]` thresholds, for `miners.negatives.DirectNegatives`:
  `[B, M, R]` comparisons on compiled backends (`DIRECT_COST_PER_THRESHOLD`: the cost
  grows with M), ranks among the sorted thresholds on PyTorch (eager PyTorch would
  materialise each `[B, M, R]` array).
"""

import keras

if keras.backend.backend() == "torch":
    from keras_triplet._kernels._torch import (
        DIRECT_COST_PER_THRESHOLD, INDEX_DTYPE, argsort_rows, closest_negative_above, compact_columns,
        count_negatives_below, negative_sum, scatter_rows, take_along_rows,
    )
else:
    from keras_triplet._kernels._generic import (
        DIRECT_COST_PER_THRESHOLD, INDEX_DTYPE, argsort_rows, closest_negative_above, compact_columns,
        count_negatives_below, negative_sum, scatter_rows, take_along_rows,
    )

__all__ = [
    "DIRECT_COST_PER_THRESHOLD", "INDEX_DTYPE", "argsort_rows", "closest_negative_above", "compact_columns",
    "count_negatives_below", "negative_sum", "scatter_rows", "take_along_rows",
]
