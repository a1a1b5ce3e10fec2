"""The dtype of a tensorflow-addons loss's output: the dtype of its float input."""

import keras
from keras import ops


def like_input(value, x):
    """`value` (computed in float32 or wider) cast to the dtype of the input `x`.

    tensorflow-addons' losses return their input's dtype (float16 in, float16 out), and
    its users' tests compare at that dtype's tolerance; the computation stays in float32
    for half precision (`_validation.as_float`). A non-float input gives float32.
    """
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", None) or ops.convert_to_tensor(x).dtype)
    if not dtype.startswith("float") and dtype != "bfloat16":
        dtype = "float32"
    return ops.cast(value, dtype)
