"""Each row's smallest or largest entry among masked columns, and one entry per row.

The hardest positive and negative of batch-hard mining, the farthest negative of the
semi-hard fallback, the quadruplet loss's closest pairs and tensorflow-addons' corner
cases are all such picks. Indices are chosen with gradients stopped; the picked distances
(`gather_rows`) carry them.
"""

from keras import ops

from keras_triplet._backend import INDEX_DTYPE, take_along_rows


def masked_argmin(values, mask):
    """`(index, found)`, `[B]` each: the column of each row's smallest `values` entry where
    `mask` holds (the first on ties), and whether the row has any.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> values = ops.convert_to_tensor(np.array([[3.0, 1.0, 2.0], [5.0, 4.0, 6.0]], "float32"))
    >>> mask = ops.convert_to_tensor(np.array([[True, False, True], [False, False, False]]))
    >>> index, found = masked_argmin(values, mask)
    >>> ops.convert_to_numpy(index)[0].item(), ops.convert_to_numpy(found).tolist()
    (2, [True, False])
    """
    big = ops.max(ops.stop_gradient(values)) + 1.0
    return ops.argmin(ops.where(mask, ops.stop_gradient(values), big), axis=1), ops.any(mask, axis=1)


def masked_argmax(values, mask):
    """`(index, found)`, `[B]` each: the column of each row's largest `values` entry where
    `mask` holds (the first on ties), and whether the row has any.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> values = ops.convert_to_tensor(np.array([[3.0, 1.0, 2.0]], "float32"))
    >>> index, found = masked_argmax(values, ops.convert_to_tensor(np.array([[False, True, True]])))
    >>> ops.convert_to_numpy(index).tolist()
    [2]
    """
    small = ops.min(ops.stop_gradient(values)) - 1.0
    return ops.argmax(ops.where(mask, ops.stop_gradient(values), small), axis=1), ops.any(mask, axis=1)


def gather_rows(values, index):
    """`values[a, index[a]]` for each row `a`, `[B]` (differentiable in `values`).

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> values = ops.convert_to_tensor(np.array([[3.0, 1.0, 2.0], [5.0, 4.0, 6.0]], "float32"))
    >>> index = ops.convert_to_tensor(np.array([2, 0]))
    >>> ops.convert_to_numpy(gather_rows(values, index)).tolist()
    [2.0, 5.0]
    """
    return take_along_rows(values, ops.expand_dims(ops.cast(index, INDEX_DTYPE), 1))[:, 0]
