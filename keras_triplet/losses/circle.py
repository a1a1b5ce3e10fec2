"""Circle loss (Sun, Cheng, Zhang, Zhang, Zheng, Wang and Wei, "Circle Loss: A Unified
Perspective of Pair Similarity Optimization", CVPR 2020), as pytorch-metric-learning
defines `CircleLoss`."""

import keras
from keras import ops

from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss, check_finite, check_positive
from keras_triplet.losses.reductions import (
    by_row_blocks,
    loss_with_matrix_gradient,
    masked_softmax,
    mean_of_nonzero,
)
from keras_triplet.miners.pair_miner import check_pair_miner


def circle_loss_from_distances(labels, distances, m=0.4, gamma=80.0, miner=None, ref_labels=None):
    """The circle loss from a `[B, R]` cosine-distance matrix; see `circle_loss`."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)

    def rows(distances, positive, negative):
        s = 1.0 - distances  # cosine similarity
        # Positive and negative pairs are disjoint: one [b, R] matrix of logits holds both,
        # −γ α_p (s − (1 − m)) on the positives and γ α_n (s − m) elsewhere. The paper's
        # weights α are not differentiated. Logits of order γ (up to ~300 at γ = 80):
        # masked_softmax subtracts each row's max.
        weight = ops.where(positive, -gamma * ops.relu(1.0 + m - s), gamma * ops.relu(s + m))
        logits = weight * (s - ops.where(positive, 1.0 - m, m))
        del s
        (positive_term, negative_term), softmax = masked_softmax(logits, (positive, negative))
        del logits
        row = positive_term + negative_term
        used = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
        kept = ops.where(used, ops.softplus(row), 0.0)
        # ∂ℓ_a/∂logit = σ(row_a)·softmax (either mask's) and ∂logit/∂d = −weight.
        factor = ops.where(kept > 0, -ops.sigmoid(row), 0.0)
        return kept, weight * softmax * ops.expand_dims(factor, 1)

    def value_and_gradient(distances, positive, negative):
        kept, gradient = by_row_blocks(rows, distances, positive, negative)
        # The mean over the ℓ_a > 0.
        nonzero = ops.maximum(ops.cast(ops.sum(kept > 0), kept.dtype), 1.0)
        return mean_of_nonzero(kept), gradient, 1.0 / nonzero

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def circle_loss(y_true, y_pred, m=0.4, gamma=80.0, miner=None):
    """Circle loss (Sun et al., CVPR 2020), pair form, as pytorch-metric-learning's
    `CircleLoss`.

    With `s` the cosine similarity, for every anchor `a` that has a positive and a
    negative:

        ℓ_a = softplus( log Σ_{p} exp(−γ [1 + m − s_ap]₊ (s_ap − (1 − m)))
                      + log Σ_{n} exp( γ [s_an + m]₊ (s_an − m)) )

    over its positives `p` and negatives `n` (all of them, or those a `miner` keeps); the
    weights `[·]₊` carry no gradient (as in the paper). The loss is the mean of the `ℓ_a`
    that are > 0 (pytorch-metric-learning's `AvgNonZeroReducer`), 0 if none. Computed in
    O(B²) with max-subtracted log-sum-exps (exponents reach ~300 at `gamma=80`).

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]` (the loss uses their cosine similarities).
        m: the relaxation margin (the paper: 0.25 for faces and re-identification, 0.4
            for fine-grained retrieval).
        gamma: the scale (> 0; the paper: 256, 128, 80 for those tasks).
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(circle_loss(labels, emb, m=0.4, gamma=80)), 4)
    13.565
    """
    m = check_finite(m, "m")
    gamma = check_positive(gamma, "gamma")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, "cosine", None)
    return propagate_nonfinite(circle_loss_from_distances(labels, distances, m, gamma, miner), embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class CircleLoss(MinedPairLoss):
    """Circle loss for `model.compile(loss=CircleLoss(m=0.4, gamma=80))`; see `circle_loss`.

    Its distance is always the cosine distance (the loss is defined on cosine
    similarities, as pytorch-metric-learning requires).

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=CircleLoss(m=0.25, gamma=128))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(CircleLoss(m=0.25, gamma=128)(labels, emb)), 4)
    40.2624
    """

    def __init__(self, m=0.4, gamma=80.0, miner=None, name="circle_loss", **kwargs):
        kwargs.pop("distance", None)
        kwargs.pop("p", None)
        super().__init__(distance="cosine", miner=miner, name=name, **kwargs)
        self.m = check_finite(m, "m")
        self.gamma = check_positive(gamma, "gamma")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return circle_loss_from_distances(labels, distances, self.m, self.gamma, self.miner, ref_labels)

    def get_config(self):
        config = super().get_config()
        config.update({"m": self.m, "gamma": self.gamma})
        return config
