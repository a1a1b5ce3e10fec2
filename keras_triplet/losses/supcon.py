"""Supervised contrastive loss (Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu
and Krishnan, "Supervised Contrastive Learning", NeurIPS 2020), as pytorch-metric-learning
defines `SupConLoss`."""

import keras
from keras import ops

from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss, check_positive
from keras_triplet.losses.reductions import (
    by_row_blocks,
    loss_with_matrix_gradient,
    masked_softmax,
    mean_of_nonzero,
)
from keras_triplet.miners.pair_miner import check_pair_miner


def supcon_loss_from_distances(labels, distances, temperature=0.1, miner=None, ref_labels=None):
    """SupCon from a `[B, R]` distance matrix; see `supcon_loss`."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)

    def rows(distances, positive, negative):
        logits = -distances / temperature  # cosine: (s − 1)/τ, a shift the softmax cancels
        (log_denominator,), softmax = masked_softmax(logits, (ops.logical_or(positive, negative),))
        log_prob = logits - ops.expand_dims(log_denominator, 1)
        del logits
        count = ops.sum(ops.cast(positive, log_prob.dtype), axis=1)
        total = ops.sum(ops.where(positive, log_prob, 0.0), axis=1)
        del log_prob
        row = -ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)
        # ∂total_a/∂x_aj = [j ∈ P(a)] − |P(a)| softmax_aj, ∂ℓ_a/∂total_a = −1/|P(a)|
        # (counted where ℓ_a > 0), ∂x/∂d = −1/τ.
        factor = ops.where(row > 0, 1.0 / (ops.maximum(count, 1.0) * temperature), 0.0)
        gradient = (
            ops.where(positive, ops.expand_dims(factor, 1), 0.0)
            - ops.expand_dims(count * factor, 1) * softmax
        )
        return row, gradient

    def value_and_gradient(distances, positive, negative):
        row, gradient = by_row_blocks(rows, distances, positive, negative)
        # The mean over the ℓ_a > 0.
        nonzero = ops.maximum(ops.cast(ops.sum(row > 0), row.dtype), 1.0)
        used = ops.logical_and(ops.any(positive), ops.any(negative))
        return ops.where(used, mean_of_nonzero(row), 0.0), gradient, ops.where(used, 1.0 / nonzero, 0.0)

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def supcon_loss(y_true, y_pred, temperature=0.1, distance="cosine", miner=None, p=None):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, the "out" form), as
    pytorch-metric-learning's `SupConLoss`.

    With `s(i, j) = −d(i, j)` (for the default cosine distance, the cosine similarity up
    to a constant the softmax cancels) and `τ` the temperature, for every anchor `a` with
    positives `P(a)`:

        ℓ_a = −1/|P(a)| Σ_{p ∈ P(a)} log( exp(s_ap/τ) / Σ_{j ∈ P(a) ∪ N(a)} exp(s_aj/τ) )

    where `N(a)` are its negatives. The loss is the mean of the `ℓ_a` that are > 0
    (pytorch-metric-learning's `AvgNonZeroReducer`); 0 when the batch has no positive
    pair or no negative pair. With a `miner` (as pytorch-metric-learning 2.9 does), `P(a)`
    and `N(a)` are the pairs it keeps, in the sum and in the denominator alike. Computed
    in O(B²) with a max-subtracted log-sum-exp.

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
    >>> round(float(supcon_loss(labels, emb, temperature=0.1)), 4)
    0.5146
    """
    temperature = check_positive(temperature, "temperature")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    return propagate_nonfinite(supcon_loss_from_distances(labels, distances, temperature, miner), embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class SupConLoss(MinedPairLoss):
    """Supervised contrastive loss for `model.compile(loss=SupConLoss(temperature=0.1))`;
    see `supcon_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=SupConLoss(temperature=0.5))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(SupConLoss(temperature=0.5)(labels, emb)), 4)
    0.7066
    """

    def __init__(self, temperature=0.1, distance="cosine", miner=None, p=None, name="supcon_loss", **kwargs):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.temperature = check_positive(temperature, "temperature")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return supcon_loss_from_distances(labels, distances, self.temperature, self.miner, ref_labels)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
