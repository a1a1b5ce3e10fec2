"""Angular loss (Wang, Zhou, Wen, Liu and Lin, "Deep Metric Learning with Angular Loss",
ICCV 2017), in its N-pair form."""

import math

import keras
from keras import ops

from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.distances import pairwise_distances
from keras_triplet.losses.base import MetricLoss, propagate_nonfinite
from keras_triplet.miners.labels import pair_masks

# Above this angle float32 cannot hold the smallest terms of the negative sum
# (exp(-16 tan²α) underflows near 67°); the paper uses 36° to 55°.
MAX_ALPHA = 65.0


def _check_alpha(alpha):
    alpha = float(alpha)
    if not 0.0 < alpha <= MAX_ALPHA:
        raise ValueError(
            f"`alpha` is an angle in degrees and must lie in (0, {MAX_ALPHA:g}]; got {alpha}. "
            "The paper finds 36 to 55 degrees work best; wider angles overflow float32."
        )
    return alpha


def angular_loss_from_distances(labels, distances, alpha=40.0, ref_labels=None):
    """The angular loss from a `[B, B]` cosine-distance matrix; see `angular_loss`."""
    if ref_labels is not None:
        raise NotImplementedError("AngularLoss does not support cross-batch memory yet.")
    t2 = math.tan(math.radians(_check_alpha(alpha))) ** 2
    similarity = 1.0 - distances  # cosine similarity of the normalised embeddings
    positive, negative = pair_masks(labels)
    # Σ_n exp(u_an + u_pn) with u = 4t²·s: a positive pair shares its negatives, so
    # factoring out each row's largest u over its negatives (c) keeps every factor in
    # [exp(-8t²), 1], and the sum is one [B, B] matmul, never a B³ tensor. For
    # alpha <= MAX_ALPHA the smallest product, exp(-16t²), is still a normal float32.
    u = 4.0 * t2 * similarity
    c = ops.max(ops.where(negative, u, ops.min(u)), axis=1, keepdims=True)
    e = ops.where(negative, ops.exp(ops.where(negative, u - c, 0.0)), 0.0)
    negative_sum = ops.matmul(e, ops.transpose(e))
    # Guard anyway: a pair whose sum underflowed gets no loss (and no NaN from log(0)).
    pair = ops.logical_and(positive, negative_sum > 0)
    log_sum = ops.log(ops.where(pair, negative_sum, 1.0))
    exponent = c + ops.transpose(c) - 2.0 * (1.0 + t2) * similarity + log_sum
    pair_loss = ops.where(pair, ops.softplus(exponent), 0.0)
    counted = ops.logical_and(positive, ops.expand_dims(ops.any(negative, axis=1), 1))
    return ops.sum(pair_loss) / ops.maximum(ops.sum(ops.cast(counted, pair_loss.dtype)), 1.0)


def angular_loss(y_true, y_pred, alpha=40.0):
    """Angular loss, N-pair form (Wang et al., ICCV 2017; pytorch-metric-learning's
    `AngularLoss`).

    Embeddings are L2-normalised. For every positive pair `(a, p)` whose anchor has a
    negative:

        ℓ_ap = log(1 + Σ_{n: y_n ≠ y_a} exp(4 tan²α (x_a + x_p)ᵀ x_n − 2 (1 + tan²α) x_aᵀ x_p))

    averaged over those pairs (0 if none). `alpha` is in degrees, `0 < alpha ≤ 65` (wider
    angles overflow float32); the paper finds 36° to 55° work best. Computed in O(B²)
    memory.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(angular_loss(labels, emb, alpha=40.0)), 4)
    0.7172
    """
    embeddings = check_embeddings(y_pred)
    labels = check_labels(y_true, batch_size=embeddings.shape[0])
    value = angular_loss_from_distances(labels, pairwise_distances(embeddings, metric="cosine"), alpha)
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class AngularLoss(MetricLoss):
    """Angular loss for `model.compile(loss=AngularLoss(alpha=40))`; see `angular_loss`.

    Its distance is always the cosine distance (the loss works on angles).

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=AngularLoss(alpha=45.0))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(AngularLoss(alpha=45.0)(labels, emb)), 4)
    1.0205
    """

    def __init__(self, alpha=40.0, name="angular_loss", **kwargs):
        kwargs.pop("distance", None)
        kwargs.pop("p", None)
        super().__init__(distance="cosine", name=name, **kwargs)
        self.alpha = _check_alpha(alpha)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return angular_loss_from_distances(labels, distances, self.alpha, ref_labels=ref_labels)

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
