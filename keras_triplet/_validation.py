"""Input checks shared by miners and losses.

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
        raise ValueError(
            f"{name} must hold one integer class id per example, shape [batch_size] or "
            f"[batch_size, 1]; got shape {tuple(y.shape)}. For one-hot labels pass "
            "`argmax(labels, axis=-1)`."
        )
    n = y.shape[0]
    if batch_size is not None and n is not None and n != batch_size:
        raise ValueError(
            f"{name} has {n} entries but the batch has {batch_size} embeddings: pass one "
            "label per embedding."
        )
    dtype = keras.backend.standardize_dtype(y.dtype)
    if dtype.startswith("float") or dtype == "bool":
        values = _concrete_values(y)
        if values is not None and values.size:
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                bad = values[~np.isfinite(values) | (values != np.round(values))][:3]
                raise ValueError(
                    f"{name} must be integer class ids; got non-integer values such as "
                    f"{bad.tolist()}. Pass integer labels (e.g. from "
                    "`np.unique(labels, return_inverse=True)`), not probabilities or one-hot rows."
                )
        y = ops.cast(y, "int32")
    return y


def check_margin(margin, name="margin"):
    margin = float(margin)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0; got {margin}.")
    return margin


def check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")
    return value
