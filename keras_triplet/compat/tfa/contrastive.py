"""tensorflow-addons' `ContrastiveLoss`: a loss on precomputed pair distances, on any backend."""

import keras
from keras import ops

from keras_triplet._validation import as_float, check_margin
from keras_triplet.compat.tfa.dtypes import like_input


def contrastive_loss(y_true, y_pred, margin=1.0):
    """tensorflow-addons' `contrastive_loss` (Hadsell, Chopra and LeCun, CVPR 2006), on any
    backend. Its own convention, unlike `keras_triplet.losses.contrastive_loss`: `y_true`
    holds 0/1 pair labels (1 = same class) and `y_pred` the distances of those pairs,
    both `[batch_size]`. Per pair:

        ℓ = y · d² + (1 − y) · max(margin − d, 0)²

    Returns the `[batch_size]` losses, in `y_pred`'s dtype (computed in float32 for
    float16 / bfloat16). NaN distances give NaN losses.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([1, 0, 0])
    >>> y_pred = np.array([0.5, 0.25, 2.0], "float16")
    >>> [float(v) for v in contrastive_loss(y_true, y_pred, margin=1.0)]
    [0.25, 0.5625, 0.0]
    """
    margin = check_margin(margin)
    d = as_float(y_pred)
    y = ops.convert_to_tensor(y_true)
    if len(d.shape) == 0 or y.shape != d.shape and _size(y.shape) != _size(d.shape):
        raise ValueError(
            "tfa.contrastive_loss takes y_true = 0/1 pair labels and y_pred = the distances of "
            f"those pairs, of the same shape [batch_size]; got shapes {tuple(y.shape)} and "
            f"{tuple(d.shape)}. For labels and embeddings use keras_triplet.losses.ContrastiveLoss."
        )
    y = ops.reshape(ops.cast(y, d.dtype), ops.shape(d))
    loss = y * ops.square(d) + (1.0 - y) * ops.square(ops.maximum(margin - d, 0.0))
    return like_input(loss, y_pred)


def _size(shape):
    size = 1
    for n in shape:
        if n is None:
            return None
        size *= n
    return size


@keras.saving.register_keras_serializable(package="keras_triplet.compat.tfa")
class ContrastiveLoss(keras.losses.Loss):
    """tensorflow-addons' `ContrastiveLoss(margin=1.0, reduction="sum_over_batch_size",
    name="contrastive_loss")`; see `contrastive_loss` (0/1 pair labels and pair distances).

    Example:

    >>> import numpy as np
    >>> loss = ContrastiveLoss(margin=1.0)
    >>> float(loss(np.array([1, 0, 0]), np.array([0.5, 0.25, 2.0], "float32")))
    0.270833...
    """

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="contrastive_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.margin = check_margin(margin)

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        config = super().get_config()
        config["margin"] = self.margin
        return config
