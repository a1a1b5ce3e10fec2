"""Multi-similarity loss (Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with
General Pair Weighting for Deep Metric Learning", CVPR 2019)."""

import keras
from keras import ops

from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss
from keras_triplet.losses.reductions import by_row_blocks, loss_with_matrix_gradient, masked_softmax
from keras_triplet.miners.pair_miner import check_pair_miner

# Metrics that are `1 − similarity`: the loss's `base` is a threshold on the similarity.
SIMILARITY_METRICS = ("cosine", "angular")


def _check_positive(value, name):
    value = float(value)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value}.")
    return value


def multi_similarity_loss_from_distances(
    labels, distances, alpha=2.0, beta=50.0, base=0.5, similarity=True, miner=None, ref_labels=None
):
    """The multi-similarity loss from a `[B, R]` distance matrix; see
    `multi_similarity_loss`. `similarity`: whether `distances` are `1 − s` (the cosine
    distance, `base` a similarity) or distances proper (`base` a distance)."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)
    # On a similarity s = 1 − d: α(base − s) = α(d − (1 − base)); on a distance: α(d − base).
    shift = 1.0 - base if similarity else base

    def rows(distances, positive, negative):
        # Per row, log(1 + Σ exp(z)) over the positives and over the negatives (0 without
        # any), each with its largest exponent (or 0) factored out so nothing overflows;
        # the pairs are disjoint, so one [b, R] matrix holds both exponents.
        exponents = ops.where(positive, alpha * (distances - shift), beta * (shift - distances))
        (positive_term, negative_term), softmax = masked_softmax(
            exponents, (positive, negative), with_zero=True
        )
        del exponents
        # ∂ℓ_a/∂d: the softmax weights (α and β cancel), + on positives, − on negatives.
        return positive_term / alpha + negative_term / beta, ops.where(positive, softmax, -softmax)

    def value_and_gradient(distances, positive, negative):
        row, gradient = by_row_blocks(rows, distances, positive, negative)
        return ops.mean(row), gradient, 1.0 / ops.cast(ops.shape(row)[0], row.dtype)

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def multi_similarity_loss(
    y_true, y_pred, alpha=2.0, beta=50.0, base=0.5, distance="cosine", miner=None, p=None
):
    """Multi-similarity loss (Wang et al., CVPR 2019; pytorch-metric-learning's
    `MultiSimilarityLoss`). With `s` the cosine similarity (`distance="cosine"`, default),
    for each anchor `a` of the batch:

        ℓ_a = 1/α · log(1 + Σ_{p ∈ P_a} exp(−α (s_ap − base)))
            + 1/β · log(1 + Σ_{n ∈ N_a} exp( β (s_an − base)))

    and `L = mean_a ℓ_a` over all `B` anchors (a term with no pair is 0). `P_a` / `N_a`
    are the anchor's positives and negatives, or those a `miner` keeps (the paper pairs
    the loss with `miners.MultiSimilarityMiner`). On a distance metric (`"euclidean"`,
    ...) the signs flip, as pytorch-metric-learning does on its `LpDistance`:
    `exp(α (d_ap − base))` and `exp(β (base − d_an))`. Each log-sum-exp factors out its
    largest term: finite at any scale, O(B²) memory.

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        alpha: the weight of the positive pairs (> 0).
        beta: the weight of the negative pairs (> 0).
        base: the similarity (or distance) threshold λ of both terms.
        distance: `"cosine"` (default, the paper's) or another metric of
            `keras_triplet.distances`.
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]], "float32")
    >>> round(float(multi_similarity_loss(labels, emb)), 4)
    0.4089
    """
    alpha, beta, base = _check_options(alpha, beta, base)
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    value = multi_similarity_loss_from_distances(
        labels, distances, alpha, beta, base, similarity=distance in SIMILARITY_METRICS, miner=miner
    )
    return propagate_nonfinite(value, embeddings)


def _check_options(alpha, beta, base):
    base = float(base)
    if base != base or abs(base) == float("inf"):
        raise ValueError(f"`base` must be a finite number; got {base}.")
    return _check_positive(alpha, "alpha"), _check_positive(beta, "beta"), base


@keras.saving.register_keras_serializable(package="keras_triplet")
class MultiSimilarityLoss(MinedPairLoss):
    """Multi-similarity loss for `model.compile(loss=MultiSimilarityLoss())`; see
    `multi_similarity_loss`. With its miner, as in the paper:
    `MultiSimilarityLoss(miner=miners.MultiSimilarityMiner(epsilon=0.1))`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_triplet import miners
    >>> loss = MultiSimilarityLoss(miner=miners.MultiSimilarityMiner(epsilon=0.1))
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=loss)
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]], "float32")
    >>> round(float(loss(labels, emb)), 4)  # 2 positive and 2 negative pairs mined
    0.2795
    """

    def __init__(
        self,
        alpha=2.0,
        beta=50.0,
        base=0.5,
        distance="cosine",
        miner=None,
        p=None,
        name="multi_similarity_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.alpha, self.beta, self.base = _check_options(alpha, beta, base)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return multi_similarity_loss_from_distances(
            labels,
            distances,
            self.alpha,
            self.beta,
            self.base,
            similarity=self.distance in SIMILARITY_METRICS,
            miner=self.miner,
            ref_labels=ref_labels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "base": self.base,
            }
        )
        return config
