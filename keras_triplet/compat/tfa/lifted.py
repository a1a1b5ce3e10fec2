"""tensorflow-addons' `LiftedStructLoss`, in O(B²) memory (tensorflow-addons tiles a
`[B², B]` matrix), on any backend."""

import keras
from keras import ops

from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.compat.tfa.dtypes import like_input
from keras_triplet.distances import pairwise_distances
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.miners.labels import pair_masks


def lifted_struct_loss(labels, embeddings, margin=1.0):
    """tensorflow-addons' `lifted_struct_loss` (Song, Xiang, Jegelka and Savarese, "Deep
    Metric Learning via Lifted Structured Feature Embedding", CVPR 2016), on any backend.

    With `d` the Euclidean distance and `N_i` the negatives of `i`, for each positive pair
    `(i, j)`:

        J_ij = log(Σ_{k ∈ N_i} exp(margin − d_ik) + Σ_{k ∈ N_j} exp(margin − d_jk)) + d_ij

    and `L = Σ_{(i, j)} max(J_ij, 0)² / (2 · #pairs)` over the ordered positive pairs (the
    paper's `1/(2|P|) Σ max(J, 0)²` over unordered pairs). Each row's log-sum-exp factors
    out its largest term: finite at any scale, O(B²) memory (tensorflow-addons tiles a
    `[B², B]` matrix). The loss has the embeddings' dtype (float32 inside).

    **Difference**: a batch without positive pairs, or of one class (no negative at all),
    gives 0; tensorflow-addons gives NaN.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]], "float32")
    >>> round(float(lifted_struct_loss(labels, emb, margin=1.0)), 4)
    2.4314
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, batch_size=x.shape[0])
    margin = float(margin)
    distances = pairwise_distances(x)
    positive, negative = pair_masks(labels)
    has_negative = ops.any(negative, axis=1, keepdims=True)
    # Per row: c_i = max over negatives of (margin − d_ik), s_i = Σ exp(margin − d_ik − c_i) ≥ 1.
    z = margin - distances
    c = ops.where(has_negative, ops.max(ops.where(negative, z, ops.min(z)), axis=1, keepdims=True), 0.0)
    s = ops.sum(ops.where(negative, ops.exp(ops.where(negative, z - c, 0.0)), 0.0), axis=1, keepdims=True)
    # log(e^{c_i} s_i + e^{c_j} s_j) = m + log(s_i e^{c_i − m} + s_j e^{c_j − m}), m = max(c_i, c_j):
    # the argument is at least 1 on every pair whose rows have negatives.
    c_t, s_t = ops.transpose(c), ops.transpose(s)
    m = ops.maximum(c, c_t)
    total = s * ops.exp(c - m) + s_t * ops.exp(c_t - m)
    pair = ops.logical_and(positive, has_negative)
    j = m + ops.log(ops.where(pair, total, 1.0)) + distances
    hinge = ops.where(pair, ops.relu(j), 0.0)
    value = 0.5 * ops.sum(ops.square(hinge)) / ops.maximum(ops.sum(ops.cast(positive, hinge.dtype)), 1.0)
    return like_input(propagate_nonfinite(value, x), embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet.compat.tfa")
class LiftedStructLoss(keras.losses.Loss):
    """tensorflow-addons' `LiftedStructLoss(margin=1.0, name=None)`; see `lifted_struct_loss`.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]], "float32")
    >>> round(float(LiftedStructLoss(margin=1.0)(labels, emb)), 4)
    2.4314
    """

    def __init__(self, margin=1.0, name=None, **kwargs):
        super().__init__(name=name or "lifted_struct_loss", **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return lifted_struct_loss(y_true, y_pred, self.margin)

    def get_config(self):
        config = super().get_config()
        config["margin"] = self.margin
        return config
