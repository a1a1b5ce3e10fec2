"""NT-Xent / InfoNCE (van den Oord, Li and Vinyals, "Representation Learning with
Contrastive Predictive Coding", 2018; Chen, Kornblith, Norouzi and Hinton, "A Simple
Framework for Contrastive Learning of Visual Representations" (SimCLR), ICML 2020), as
pytorch-metric-learning defines `NTXentLoss`."""

import keras
from keras import ops

from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss, check_positive
from keras_triplet.losses.reductions import by_row_blocks, loss_with_matrix_gradient, masked_softmax
from keras_triplet.miners.pair_miner import check_pair_miner


def ntxent_loss_from_distances(labels, distances, temperature=0.07, miner=None, ref_labels=None):
    """NT-Xent from a `[B, R]` distance matrix; see `ntxent_loss`."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)

    def rows(distances, positive, negative):
        # Logits −d/τ: for the cosine distance, (s − 1)/τ, the paper's s/τ shifted by a
        # constant that the softmax cancels.
        logits = -distances / temperature
        (negative_term,), softmax = masked_softmax(logits, (negative,))
        # −log(e^{x_ap} / (e^{x_ap} + Σ_n e^{x_an})) = softplus(log Σ_n e^{x_an} − x_ap); no
        # negative: the softmax has the positive alone, and the term is 0.
        gap = ops.expand_dims(negative_term, 1) - logits
        del logits
        pairs = ops.logical_and(positive, ops.expand_dims(ops.any(negative, axis=1), 1))
        row = ops.sum(ops.where(pairs, ops.softplus(gap), 0.0), axis=1)
        # ∂ℓ_ap/∂x_ap = −σ(gap) and ∂ℓ_ap/∂x_an = σ(gap)·softmax_an; ∂x/∂d = −1/τ.
        pull = ops.where(pairs, ops.sigmoid(gap), 0.0)
        del gap
        push = ops.expand_dims(ops.sum(pull, axis=1), 1)
        return row, ops.where(positive, pull, -push * softmax)

    def value_and_gradient(distances, positive, negative):
        row, gradient = by_row_blocks(rows, distances, positive, negative)
        count = ops.maximum(ops.cast(ops.sum(positive), row.dtype), 1.0)
        used = ops.logical_and(ops.any(positive), ops.any(negative))
        return (
            ops.where(used, ops.sum(row) / count, 0.0),
            gradient,
            ops.where(used, 1.0 / (temperature * count), 0.0),
        )

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def ntxent_loss(y_true, y_pred, temperature=0.07, distance="cosine", miner=None, p=None):
    """NT-Xent (SimCLR) / InfoNCE (van den Oord et al. 2018), as pytorch-metric-learning's
    `NTXentLoss`: every positive pair against its anchor's negatives.

    With `s(i, j) = −d(i, j)` (for the default cosine distance, the cosine similarity up
    to a constant the softmax cancels) and `τ` the temperature, for every ordered
    positive pair `(a, p)`:

        ℓ_ap = −log( exp(s_ap/τ) / (exp(s_ap/τ) + Σ_{n: y_n ≠ y_a} exp(s_an/τ)) )

    averaged over the positive pairs; 0 when the batch has no positive pair or no
    negative pair. With two views of each example as the only positives (labels = example
    ids) this is SimCLR's NT-Xent; with one positive per anchor it is InfoNCE: the same
    function covers both. With a `miner`, only the pairs (and negatives) it keeps.
    Computed in O(B²) with a max-subtracted log-sum-exp (at `τ = 0.07` the logits reach
    ±14 for cosine similarities, far more for unbounded distances).

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        temperature: `τ > 0`.
        distance: a metric of `keras_triplet.distances` (default `"cosine"`, the paper's
            and pytorch-metric-learning's similarity).
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(ntxent_loss(labels, emb, temperature=0.07)), 4)
    0.6199
    """
    temperature = check_positive(temperature, "temperature")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    return propagate_nonfinite(ntxent_loss_from_distances(labels, distances, temperature, miner), embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class NTXentLoss(MinedPairLoss):
    """NT-Xent / InfoNCE for `model.compile(loss=NTXentLoss(temperature=0.07))`; see
    `ntxent_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=NTXentLoss(temperature=0.5))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(NTXentLoss(temperature=0.5)(labels, emb)), 4)
    0.7066
    """

    def __init__(self, temperature=0.07, distance="cosine", miner=None, p=None, name="ntxent_loss", **kwargs):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.temperature = check_positive(temperature, "temperature")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return ntxent_loss_from_distances(labels, distances, self.temperature, self.miner, ref_labels)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
