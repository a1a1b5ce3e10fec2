"""Quadruplet loss (Chen, Chen, Zhang and Huang, "Beyond triplet loss: a deep quadruplet
network for person re-identification", CVPR 2017)."""

import keras
from keras import ops

from keras_triplet._validation import check_margin
from keras_triplet.losses.base import MetricLoss, prepare, propagate_nonfinite
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.masked_extremes import gather_rows, masked_argmax, masked_argmin


def quadruplet_loss_from_distances(labels, distances, margin=1.0, margin2=0.5, ref_labels=None):
    """The quadruplet loss from a `[B, R]` distance matrix; see `quadruplet_loss`."""
    if ref_labels is None:
        ref_labels = labels
        memory = None
    else:
        memory = ref_labels
    positive, negative = pair_masks(labels, memory)
    hardest_positive, has_positive = masked_argmax(distances, positive)
    hardest_negative, has_negative = masked_argmin(distances, negative)
    d_ap = gather_rows(distances, hardest_positive)
    d_an = gather_rows(distances, hardest_negative)

    # The closest pair (l, k) with y_l ≠ y_k and both ≠ y_a, in O(B²): for each row l keep
    # its nearest negative (its hardest negative, of class c1) and its nearest negative of
    # another class than c1. For an anchor of class y_a ≠ y_l, the best partner of l is the
    # first unless c1 = y_a.
    ref_labels = ops.cast(ref_labels, labels.dtype)
    first, has_first, d_first = hardest_negative, has_negative, d_an
    first_class = ops.take(ref_labels, ops.cast(first, "int32"))
    other_class = ops.logical_and(negative, ops.expand_dims(ref_labels, 0) != ops.expand_dims(first_class, 1))
    second, has_second = masked_argmin(distances, other_class)
    d_second = gather_rows(distances, second)
    # [anchor a, row l]
    use_first = ops.expand_dims(first_class, 0) != ops.expand_dims(labels, 1)
    candidate = ops.where(use_first, ops.expand_dims(d_first, 0), ops.expand_dims(d_second, 0))
    valid = ops.logical_and(
        ops.expand_dims(labels, 0) != ops.expand_dims(labels, 1),
        ops.where(use_first, ops.expand_dims(has_first, 0), ops.expand_dims(has_second, 0)),
    )
    closest, has_pair = masked_argmin(candidate, valid)
    d_lk = gather_rows(candidate, closest)

    anchor = ops.logical_and(has_positive, has_negative)
    term1 = ops.relu(d_ap - d_an + margin)
    term2 = ops.where(has_pair, ops.relu(d_ap - d_lk + margin2), 0.0)
    per_anchor = ops.where(anchor, term1 + term2, 0.0)
    return ops.sum(per_anchor) / ops.maximum(ops.sum(ops.cast(anchor, per_anchor.dtype)), 1.0)


def quadruplet_loss(y_true, y_pred, margin=1.0, margin2=0.5, distance="euclidean", p=None):
    """Quadruplet loss with batch-hard mining (Chen et al., CVPR 2017).

    For every anchor `a` with a positive and a negative in the batch:

        ℓ_a = max(d(a, p*) − d(a, n*) + margin, 0) + max(d(a, p*) − d(l*, k*) + margin2, 0)

    with `p*` the farthest positive, `n*` the closest negative, and `(l*, k*)` the closest
    pair of examples from two different classes, both different from `a`'s (the second
    term pushes negative pairs apart more than positive pairs, beyond the anchor). The
    second term is 0 when the batch has fewer than three classes. The loss is the mean of
    `ℓ_a` over those anchors (0 if none). The paper's margins satisfy `margin2 < margin`.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(quadruplet_loss(labels, emb, margin=1.0, margin2=0.5)), 4)
    1.0727
    """
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    value = quadruplet_loss_from_distances(
        labels, distances, check_margin(margin), check_margin(margin2, "margin2")
    )
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class QuadrupletLoss(MetricLoss):
    """Quadruplet loss for `model.compile(loss=QuadrupletLoss())`; see `quadruplet_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=QuadrupletLoss(margin=0.5, margin2=0.25))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(QuadrupletLoss(margin=0.5, margin2=0.25)(labels, emb)), 4)
    0.4563
    """

    def __init__(
        self, margin=1.0, margin2=0.5, distance="euclidean", p=None, name="quadruplet_loss", **kwargs
    ):
        super().__init__(distance=distance, p=p, name=name, **kwargs)
        self.margin = check_margin(margin)
        self.margin2 = check_margin(margin2, "margin2")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return quadruplet_loss_from_distances(
            labels, distances, self.margin, self.margin2, ref_labels=ref_labels
        )

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "margin2": self.margin2})
        return config
