"""tensorflow-addons' `NpairsLoss` and `NpairsMultilabelLoss`: softmax cross-entropy over
the rows of a similarity matrix, on any backend."""

import keras
from keras import ops

from keras_triplet._validation import as_float, check_labels
from keras_triplet.compat.tfa.dtypes import like_input
from keras_triplet.losses.base import propagate_nonfinite


def _check_similarity(y_pred, batch_size, name):
    s = as_float(y_pred)
    if len(s.shape) != 2 or (batch_size is not None and s.shape[0] not in (None, batch_size)):
        raise ValueError(
            f"tfa.{name} takes y_pred = the [batch_size, batch_size] similarity matrix of two "
            f"embedding batches (e.g. matmul(a, transpose(b))); got shape {tuple(s.shape)} for "
            f"{batch_size} labels."
        )
    if s.shape[0] is not None and s.shape[1] is not None and s.shape[0] != s.shape[1]:
        raise ValueError(
            f"tfa.{name}: y_pred must be square [batch_size, batch_size]; got shape {tuple(s.shape)}."
        )
    return s


def _cross_entropy(logits, counts):
    """Mean over rows of the softmax cross-entropy of `logits` against the target rows
    `counts / Σ counts`; a row whose counts are all 0 gives 0. O(B²)."""
    shift = ops.max(logits, axis=1, keepdims=True)
    log_normaliser = ops.squeeze(shift, 1) + ops.log(ops.sum(ops.exp(logits - shift), axis=1))
    total = ops.sum(counts, axis=1)
    has_target = total > 0
    expected_logit = ops.sum(counts * logits, axis=1) / ops.where(has_target, total, 1.0)
    return ops.mean(ops.where(has_target, log_normaliser - expected_logit, 0.0))


def npairs_loss(y_true, y_pred):
    """tensorflow-addons' `npairs_loss` (Sohn, "Improved Deep Metric Learning with
    Multi-class N-pair Loss Objective", NeurIPS 2016), on any backend.

    `y_true`: integer labels `[B]`; `y_pred`: the `[B, B]` similarity matrix of two
    embedding batches (anchors × positives, `matmul(a, transpose(b))`), used as logits.
    The loss is the mean over rows `i` of the softmax cross-entropy between `y_pred[i]`
    and the target `t_ij = [y_i = y_j] / #{j : y_j = y_i}`. The loss has `y_pred`'s dtype
    (float32 inside); NaN or infinite similarities give NaN.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([0, 1, 2])
    >>> y_pred = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], "float32")
    >>> round(float(npairs_loss(y_true, y_pred)), 4)
    0.2953
    """
    labels = check_labels(y_true)
    s = _check_similarity(y_pred, labels.shape[0], "npairs_loss")
    same = ops.cast(ops.expand_dims(labels, 1) == ops.expand_dims(labels, 0), s.dtype)
    return like_input(propagate_nonfinite(_cross_entropy(s, same), s), y_pred)


def npairs_multilabel_loss(y_true, y_pred):
    """tensorflow-addons' `npairs_multilabel_loss`, on any backend.

    `y_true`: a binary indicator `[B, C]` (`y_true[i, c] = 1` when sample `i` has class
    `c`); `y_pred`: the `[B, B]` similarity matrix, used as logits. As `npairs_loss`,
    with the target row `t_ij ∝ |labels(i) ∩ labels(j)|` (one `[B, C] × [C, B]` product).
    **Difference**: a sample without any label contributes 0 (tensorflow-addons: NaN).
    A `tf.SparseTensor` `y_true` is not accepted: pass it dense.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[1, 0], [1, 1], [0, 1]])
    >>> y_pred = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], "float32")
    >>> round(float(npairs_multilabel_loss(y_true, y_pred)), 4)
    1.2953
    """
    y = as_float(y_true)
    if len(y.shape) != 2:
        raise ValueError(
            "tfa.npairs_multilabel_loss takes y_true = a [batch_size, num_classes] binary "
            f"indicator of each sample's classes; got shape {tuple(y.shape)}."
        )
    s = _check_similarity(y_pred, y.shape[0], "npairs_multilabel_loss")
    counts = ops.matmul(ops.cast(y, s.dtype), ops.transpose(ops.cast(y, s.dtype)))
    return like_input(propagate_nonfinite(_cross_entropy(s, counts), s), y_pred)


@keras.saving.register_keras_serializable(package="keras_triplet.compat.tfa")
class NpairsLoss(keras.losses.Loss):
    """tensorflow-addons' `NpairsLoss(name="npairs_loss")`; see `npairs_loss`.

    Example:

    >>> import numpy as np
    >>> y_pred = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], "float32")
    >>> round(float(NpairsLoss()(np.array([0, 1, 2]), y_pred)), 4)
    0.2953
    """

    def __init__(self, name="npairs_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return npairs_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="keras_triplet.compat.tfa")
class NpairsMultilabelLoss(keras.losses.Loss):
    """tensorflow-addons' `NpairsMultilabelLoss(name="npairs_multilabel_loss")`; see
    `npairs_multilabel_loss`.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[1, 0], [1, 1], [0, 1]])
    >>> y_pred = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], "float32")
    >>> round(float(NpairsMultilabelLoss()(y_true, y_pred)), 4)
    1.2953
    """

    def __init__(self, name="npairs_multilabel_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return npairs_multilabel_loss(y_true, y_pred)
