"""Angular loss (Wang, Zhou, Wen, Liu and Lin, "Deep Metric Learning with Angular Loss",
ICCV 2017), in its N-pair form."""

import math

import keras
from keras import ops

from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.distances import pairwise_distances
from keras_triplet.losses.base import MetricLoss
from keras_triplet.miners.labels import pair_masks

# Keeps log() of the negative sum finite (with a zero gradient) for extreme alpha.
_TINY = 1e-30


def _check_alpha(alpha):
    alpha = float(alpha)
    if not 0.0 < alpha < 90.0:
        raise ValueError(f"`alpha` is an angle in degrees and must lie in (0, 90); got {alpha}.")
    return alpha


def angular_loss_from_distances(labels, distances, alpha=40.0, ref_labels=None):
    """The angular loss from a `[B, B]` cosine-distance matrix; see `angular_loss`."""
    if ref_labels is not None:
        raise NotImplementedError("AngularLoss does not support cross-batch memory yet.")
    t2 = math.tan(math.radians(_check_alpha(alpha))) ** 2
    similarity = 1.0 - distances  # cosine similarity of the normalised embeddings
    positive, negative = pair_masks(labels)
    # Σ_n exp(4t²(x_a + x_p)·x_n) = Σ_n exp(4t² s_an) exp(4t² s_pn): one [B, B] matmul, no
    # B³ tensor. Shifting the exponents by −4t² (s ≤ 1) keeps every factor in (0, 1].
    e = ops.exp(4.0 * t2 * (similarity - 1.0))
    negative_sum = ops.matmul(ops.where(negative, e, 0.0), ops.transpose(e))
    has_negative = ops.expand_dims(ops.any(negative, axis=1), 1)
    log_sum = ops.log(ops.maximum(ops.where(has_negative, negative_sum, 1.0), _TINY))
    exponent = 8.0 * t2 - 2.0 * (1.0 + t2) * similarity + log_sum
    pair = ops.logical_and(positive, has_negative)
    pair_loss = ops.where(pair, ops.softplus(exponent), 0.0)
    return ops.sum(pair_loss) / ops.maximum(ops.sum(ops.cast(pair, pair_loss.dtype)), 1.0)


def angular_loss(y_true, y_pred, alpha=40.0):
    """Angular loss, N-pair form (Wang et al., ICCV 2017; pytorch-metric-learning's
    `AngularLoss`).

    Embeddings are L2-normalised. For every positive pair `(a, p)` whose anchor has a
    negative:

        ℓ_ap = log(1 + Σ_{n: y_n ≠ y_a} exp(4 tan²α (x_a + x_p)ᵀ x_n − 2 (1 + tan²α) x_aᵀ x_p))

    averaged over those pairs (0 if none). `alpha` is in degrees, `0 < alpha < 90`; the
    paper finds 36° to 55° work best. Computed in O(B²) memory.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> loss = angular_loss(labels, emb, alpha=40.0)
    """
    embeddings = check_embeddings(y_pred)
    labels = check_labels(y_true, batch_size=embeddings.shape[0])
    return angular_loss_from_distances(labels, pairwise_distances(embeddings, metric="cosine"), alpha)


@keras.saving.register_keras_serializable(package="keras_triplet")
class AngularLoss(MetricLoss):
    """Angular loss for `model.compile(loss=AngularLoss(alpha=40))`; see `angular_loss`.

    Its distance is always the cosine distance (the loss works on angles).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=AngularLoss(alpha=45.0))
    """

    def __init__(self, alpha=40.0, name="angular_loss", **kwargs):
        kwargs.pop("distance", None)
        kwargs.pop("p", None)
        super().__init__(distance="cosine", name=name, **kwargs)
        self.alpha = _check_alpha(alpha)

    def compute_from_distances(self, labels, distances, embeddings=None, ref_labels=None):
        return angular_loss_from_distances(labels, distances, self.alpha, ref_labels=ref_labels)

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
