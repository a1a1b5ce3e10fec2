"""Contrastive loss (Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an
Invariant Mapping", CVPR 2006), as pytorch-metric-learning defines `ContrastiveLoss`."""

import keras
from keras import ops

from keras_triplet._backend import count_true
from keras_triplet._validation import check_choice, check_margin
from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss
from keras_triplet.miners.pair_miner import check_pair_miner

AVERAGES = ("nonzero", "pairs")


def contrastive_loss_from_distances(
    labels, distances, pos_margin=0.0, neg_margin=1.0, miner=None, average="nonzero", ref_labels=None
):
    """The contrastive loss from a `[B, R]` distance matrix; see `contrastive_loss`."""
    if miner is None and ref_labels is None and average == "nonzero":
        # Every pair, counted where active: the diagonal (d = 0, never > pos_margin >= 0)
        # drops out of the positives by itself, without an off-diagonal mask.
        positive = ops.expand_dims(labels, 1) == ops.expand_dims(labels, 0)
        negative = ops.logical_not(positive)
    else:
        positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)
    # max(d − m, 0) is d − m on the pairs where d > m (for floats d − m > 0 iff d > m), so
    # the loss is linear in d on the active pairs: Σ w d + const, with w = 1 / n⁺ on the
    # active positive pairs, −1 / n⁻ on the active negative ones, 0 elsewhere. One [B, R]
    # product forward and one backward, where each hinge cost a `where` (and a second
    # one in its gradient) and a subtraction.
    positive_active = ops.logical_and(positive, distances > pos_margin)
    negative_active = ops.logical_and(negative, distances < neg_margin)
    n_pos, n_neg = count_true(positive_active), count_true(negative_active)
    dtype = distances.dtype
    if average == "nonzero":
        den_pos, den_neg = n_pos, n_neg
    else:
        den_pos, den_neg = count_true(positive), count_true(negative)
    den_pos = ops.maximum(ops.cast(den_pos, dtype), 1.0)
    den_neg = ops.maximum(ops.cast(den_neg, dtype), 1.0)
    # The two sets are disjoint: one nested `where` of scalars writes the [B, R] weights
    # in two passes, where casting each mask and dividing it made five.
    weights = ops.where(
        positive_active, 1.0 / den_pos, ops.where(negative_active, -1.0 / den_neg, ops.zeros((), dtype))
    )
    constant = neg_margin * ops.cast(n_neg, dtype) / den_neg
    if pos_margin:
        constant = constant - pos_margin * ops.cast(n_pos, dtype) / den_pos
    return ops.sum(weights * distances) + constant


def contrastive_loss(
    y_true,
    y_pred,
    pos_margin=0.0,
    neg_margin=1.0,
    distance="euclidean",
    miner=None,
    average="nonzero",
    p=None,
):
    """Contrastive loss (Hadsell, Chopra and LeCun, CVPR 2006), in pytorch-metric-learning's
    form (`ContrastiveLoss`, not squared):

        L = mean_{(a, p) positive} max(d(a, p) − pos_margin, 0)
          + mean_{(a, n) negative} max(neg_margin − d(a, n), 0)

    over every ordered positive pair and every ordered negative pair of the batch (or the
    pairs a `miner` keeps). Each mean is over the pairs with a loss > 0
    (`average="nonzero"`, pytorch-metric-learning's `AvgNonZeroReducer`) or over all of
    them (`average="pairs"`, its `MeanReducer`); a term without pairs is 0. O(B²).

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        pos_margin: positive pairs closer than this have no loss (>= 0).
        neg_margin: negative pairs farther than this have no loss (>= 0).
        distance: a metric of `keras_triplet.distances` (default `"euclidean"`;
            pytorch-metric-learning's default is the Euclidean distance of L2-normalised
            embeddings, what `TripletModel` feeds a loss).
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`, e.g.
            `miners.PairMarginMiner(pos_margin, neg_margin)`.
        average: `"nonzero"` (default) or `"pairs"`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0, 0.0], [0.0, 0.5], [0.3, 0.0], [2.0, 0.0]], "float32")
    >>> round(float(contrastive_loss(labels, emb, pos_margin=0.0, neg_margin=1.0)), 4)
    1.6585
    """
    pos_margin = check_margin(pos_margin, "pos_margin")
    neg_margin = check_margin(neg_margin, "neg_margin")
    check_choice(average, AVERAGES, "average")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    value = contrastive_loss_from_distances(labels, distances, pos_margin, neg_margin, miner, average)
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class ContrastiveLoss(MinedPairLoss):
    """Contrastive loss for `model.compile(loss=ContrastiveLoss())`; see `contrastive_loss`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_triplet import miners
    >>> loss = ContrastiveLoss(neg_margin=1.0, miner=miners.PairMarginMiner(pos_margin=0.6, neg_margin=0.4))
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=loss)
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0, 0.0], [0.0, 0.5], [0.3, 0.0], [2.0, 0.0]], "float32")
    >>> round(float(loss(labels, emb)), 4)  # pairs kept: d = 1.7 (positive), 0.3 (negative)
    2.4
    """

    def __init__(
        self,
        pos_margin=0.0,
        neg_margin=1.0,
        distance="euclidean",
        miner=None,
        average="nonzero",
        p=None,
        name="contrastive_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.pos_margin = check_margin(pos_margin, "pos_margin")
        self.neg_margin = check_margin(neg_margin, "neg_margin")
        self.average = check_choice(average, AVERAGES, "average")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return contrastive_loss_from_distances(
            labels,
            distances,
            self.pos_margin,
            self.neg_margin,
            self.miner,
            self.average,
            ref_labels=ref_labels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pos_margin": self.pos_margin,
                "neg_margin": self.neg_margin,
                "average": self.average,
            }
        )
        return config
