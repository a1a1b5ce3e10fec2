"""Input checks shared by the whole library (tensors and NumPy arrays).

Each check raises a `ValueError` that names what is wrong and how to fix it. Checks
on *values* (fractional labels) run only where the values are known (eager mode);
inside a compiled graph only shapes can be checked.
"""

import keras
import numpy as np
from keras import ops

_LOW_PRECISION = ("float16", "bfloat16")


def compute_dtype(x):
    """float32 for float16/bfloat16/integer inputs: distances need the precision."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _LOW_PRECISION or not dtype.startswith("float"):
        return "float32"
    return dtype


def as_float(x):
    """Converts to a tensor and upcasts half precision to float32."""
    x = ops.convert_to_tensor(x)
    return ops.cast(x, compute_dtype(x))


def check_embeddings(y_pred, name="embeddings (y_pred)"):
    """Returns `y_pred` as a float tensor of rank 2, or raises."""
    x = ops.convert_to_tensor(y_pred)
    if len(x.shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D tensor of shape [batch_size, embedding_dim]; got shape "
            f"{tuple(x.shape)}. Flatten or pool the model's output (e.g. "
            "keras.layers.GlobalAveragePooling2D or keras.layers.Flatten) before the loss."
        )
    return as_float(x)


def _concrete_values(x):
    """NumPy values of `x`, or None inside a compiled graph where values are unknown."""
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # symbolic tf.Tensor, JAX tracer, ...
        return None


# --------------------------------------------------------------------------- labels
#
# One set of label rules, with two front doors: `check_labels` for the tensors a loss or
# a miner receives (values are checked only when known, i.e. eagerly) and
# `check_label_array` for the NumPy arrays of the sampler, the metrics and the index.


def _label_shape_error(name, shape):
    return ValueError(
        f"{name} must be 1-D, one integer class id per example (shape [batch_size] or "
        f"[batch_size, 1]); got shape {tuple(shape)}. For one-hot labels pass "
        "`argmax(labels, axis=-1)`."
    )


def _label_count_error(name, count, items, size):
    return ValueError(
        f"{name} has {count} entries but {items} has {size} rows: give one entry per "
        "embedding (one label per example)."
    )


def _check_whole_numbers(values, name):
    """Raises when float `values` hold fractional or non-finite numbers (soft labels?)."""
    bad = ~np.isfinite(values) | (values != np.round(values))
    if np.any(bad):
        raise ValueError(
            f"{name} must hold integers; got non-integer (fractional or non-finite) "
            f"values such as {values[bad][:3].tolist()}. Pass integer labels (e.g. from "
            "`np.unique(labels, return_inverse=True)[1]`, or `np.argmax(one_hot, axis=1)` "
            "for one-hot rows), not probabilities."
        )


def check_labels(y_true, batch_size=None, name="labels (y_true)"):
    """Returns integer class labels of shape [B] from `[B]` or `[B, 1]` input, or raises.

    `batch_size` (an int, or None when unknown) is checked against the labels' length.
    Keras losses receive `y_true` converted to the loss dtype (float32), so float labels
    are accepted as long as they hold whole numbers.
    """
    y = ops.convert_to_tensor(y_true)
    if len(y.shape) == 2 and y.shape[1] == 1:
        y = ops.reshape(y, (-1,))
    if len(y.shape) != 1:
        raise _label_shape_error(name, y.shape)
    n = y.shape[0]
    if batch_size is not None and n is not None and n != batch_size:
        raise _label_count_error(name, n, "the batch of embeddings", batch_size)
    dtype = keras.backend.standardize_dtype(y.dtype)
    if dtype.startswith("float") or dtype == "bool":
        values = _concrete_values(y)
        if values is not None and values.size:
            _check_whole_numbers(values, name)
        y = ops.cast(y, "int32")
    return y


def check_label_array(labels, size=None, *, name="`labels`", items="`embeddings`", strings=True, int32=False):
    """NumPy labels `[N]` from `[N]` or `[N, 1]`: int64 class ids, or strings, or raises.

    Integers, booleans and whole-number floats give int64; with `strings=True` unicode
    or byte strings (or an object array of `str`) give a unicode array, with
    `strings=False` they raise a `TypeError` saying how to map them to integers (other
    dtypes: `TypeError`, or `ValueError` with `strings=True`).
    `size` (the number of `items`) is checked against the length; `int32=True` also
    checks that the ids fit in int32.

    >>> check_label_array([[3], [1.0], [3]]).tolist()
    [3, 1, 3]
    """
    values = np.asarray(labels)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise _label_shape_error(name, values.shape)
    if size is not None and values.shape[0] != size:
        raise _label_count_error(name, values.shape[0], items, size)
    kind = values.dtype.kind
    if kind in "US" or (kind == "O" and all(isinstance(v, str) for v in values.tolist())):
        if not strings:
            raise TypeError(
                f"{name} must hold integer class ids, got dtype {values.dtype}. Map other "
                "labels (strings, ...) to integers first, e.g. "
                "`labels = np.unique(names, return_inverse=True)[1]`."
            )
        return values.astype(str)
    if kind == "f":
        _check_whole_numbers(values, name)
    elif kind not in "iub":
        if strings:  # the index and the metrics have always said ValueError here
            raise ValueError(
                f"{name} must be integers or strings (files are saved without pickle); "
                f"got dtype {values.dtype}."
            )
        raise TypeError(f"{name} must hold integer class ids; got dtype {values.dtype}.")
    if int32 and values.size:
        info = np.iinfo(np.int32)
        if values.min() < info.min or values.max() > info.max:
            raise ValueError(
                f"{name} must fit in int32 (batches carry int32 labels), got values in "
                f"[{values.min()}, {values.max()}]. Re-number the classes, e.g. "
                "`labels = np.unique(labels, return_inverse=True)[1]`."
            )
    return values.astype(np.int64)


# ----------------------------------------------------------------- NumPy embeddings


def check_embedding_array(x, name="`embeddings`", dtype=np.float64):
    """NumPy embeddings `[N, D]` of finite real numbers, as `dtype`, or raises.

    >>> check_embedding_array([[1, 2]]).dtype.name
    'float64'
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [num_items, dim]; got shape {x.shape}. "
            "Flatten or reshape your embeddings to [N, D]."
        )
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}.")
    x = x.astype(dtype, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


# -------------------------------------------------------------------------- numbers


def check_int(name, value, minimum, why):
    """`value` as a Python int `>= minimum` (`why` says what the minimum is about)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum} ({why}), got {value}.")
    return value


def check_margin(margin, name="margin"):
    margin = float(margin)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {margin}.")
    return margin


def check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")
    return value
