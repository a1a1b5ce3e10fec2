"""Lifted structure losses, as pytorch-metric-learning defines the two losses of that name:
`LiftedStructureLoss` (Oh Song, Xiang, Jegelka and Savarese, "Deep Metric Learning via
Lifted Structured Feature Embedding", CVPR 2016) and `GeneralizedLiftedStructureLoss`
(Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017, page 4)."""

import keras
from keras import ops

from keras_triplet._backend import FUSES_ELEMENTWISE_STEPS, fori_loop
from keras_triplet.losses import reductions
from keras_triplet.losses.base import mined_pair_masks, prepare, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss, check_finite
from keras_triplet.losses.reductions import (
    by_row_blocks,
    loss_with_matrix_gradient,
    lowest,
    masked_softmax,
)
from keras_triplet.miners.pair_miner import check_pair_miner


def _any_pairs(positive, negative):
    """pytorch-metric-learning's pair losses give 0 unless the batch has a positive and
    a negative pair."""
    return ops.logical_and(ops.any(positive), ops.any(negative))


# --------------------------------------------------------------------------- lifted structure


def lifted_structure_loss_from_distances(
    labels, distances, neg_margin=1.0, pos_margin=0.0, miner=None, ref_labels=None
):
    """The lifted structure loss from a `[B, R]` distance matrix; see `lifted_structure_loss`."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)

    floor = lowest(distances.dtype)

    def row_logsumexp(distances, negative):
        # Each row's log Σ_n exp(neg_margin − d(i, n)) over its negatives, and its softmax
        # weights; the lowest float for a row without negatives (it then adds nothing:
        # exp(lowest − top) = 0).
        (row,), softmax = masked_softmax(neg_margin - distances, (negative,))
        return ops.where(ops.any(negative, axis=1), row, floor), softmax

    def pooled_rows(distances, positive, negative, anchor_row, other_row, count):
        # A positive pair (a, j) pools a's negatives and, when j is in the batch (the first
        # B columns), j's: log(Σ_a + Σ_j) = logaddexp of the two rows' log-sums, [b, R].
        anchor_row = ops.expand_dims(anchor_row, 1)
        top = ops.maximum(anchor_row, other_row)
        found = top > floor  # a or j has negatives
        anchor_share = ops.exp(anchor_row - top)
        pooled = anchor_share + ops.exp(other_row - top)
        negative_term = ops.where(found, top + ops.log(pooled), 0.0)
        del top
        # ∂ log(Σ_a + Σ_j) / ∂ log Σ_a: the anchor row's share of the pool (the rest is j's).
        anchor_share = ops.where(found, anchor_share / pooled, 0.0)
        del pooled
        hinge = ops.where(positive, ops.relu(negative_term + distances - pos_margin), 0.0)
        del negative_term
        squares = ops.sum(ops.square(hinge), axis=1)
        # (The softmax again, rather than a [B, R] array kept from the first pass.)
        _, softmax = row_logsumexp(distances, negative)
        # ∂ℓ/∂(negative_term + d) = hinge / count on each positive pair.
        hinge = hinge / count
        anchor_part = hinge * anchor_share
        to_anchor = ops.sum(anchor_part, axis=1)
        to_other = ops.sum(ops.where(found, hinge - anchor_part, 0.0), axis=0, keepdims=True)
        # Positives and negatives are disjoint: one [b, R] block holds the hinges and the
        # softmax weights.
        return squares, to_anchor, to_other, ops.where(positive, hinge, softmax)

    def value_and_gradient(distances, positive, negative):
        b, r = ops.shape(distances)[0], ops.shape(distances)[1]
        count = ops.maximum(ops.cast(ops.sum(positive), distances.dtype), 1.0)
        (row,) = by_row_blocks(lambda *blocks: row_logsumexp(*blocks)[:1], distances, negative)
        other_row = ops.expand_dims(ops.concatenate([row, ops.full((r - b,), floor, row.dtype)], axis=0), 0)
        squares, to_anchor, to_other, hinge_or_softmax = _pooled_by_blocks(
            lambda *blocks: pooled_rows(*blocks, other_row, count), distances, positive, negative, row
        )
        # ½ [·]₊² summed: the ½ is taken after the sum (exact: halving commutes with rounding).
        value = ops.sum(squares) / count / 2.0
        # Through the negative term, the hinges reach both rows' log-sums, then their
        # negatives' distances.
        to_row = -ops.expand_dims(to_anchor + ops.sum(to_other, axis=0)[:b], 1)
        gradient = ops.where(positive, hinge_or_softmax, to_row * hinge_or_softmax)
        used = _any_pairs(positive, negative)
        return ops.where(used, value, 0.0), gradient, ops.where(used, 1.0, 0.0)

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def _pooled_by_blocks(fn, distances, positive, negative, row):
    """`by_row_blocks(fn, ...)` for the pooled pass of `lifted_structure_loss_from_distances`
    (`fn` returns `[b]`, `[b]`, `[1, R]` column sums and a `[b, R]` block), under XLA in a
    loop over blocks of rows: the pass holds six `[B, R]` float32 arrays at once (the
    pooled log-sums, the anchor's share, the hinge, the softmax recomputed, their
    products), which XLA does not fuse away. A loop (not unrolled blocks, which XLA
    schedules side by side) holds one block's. Blocks divide `B`, so that the column sums
    count every row once."""
    b, r = distances.shape[0], distances.shape[1]
    static = isinstance(b, int) and isinstance(r, int)
    entries = reductions.BLOCK_ENTRIES  # read at the call: tests lower it
    if not (FUSES_ELEMENTWISE_STEPS and static) or b * r <= entries:
        return by_row_blocks(fn, distances, positive, negative, row)
    block = max(d for d in range(1, max(1, entries // r) + 1) if b % d == 0)
    dtype = distances.dtype
    init = (
        ops.zeros((b,), dtype),
        ops.zeros((b,), dtype),
        ops.zeros((1, r), dtype),
        ops.zeros((b, r), dtype),
    )

    def body(i, state):
        (squares, to_anchor, to_other, gradient), arrays = state
        start = i * block
        corner = [start, ops.zeros_like(start)]
        d, p, n = (ops.slice(x, corner, (block, r)) for x in arrays[:3])
        part = fn(d, p, n, ops.slice(arrays[3], [start], (block,)))
        return (
            ops.slice_update(squares, [start], part[0]),
            ops.slice_update(to_anchor, [start], part[1]),
            to_other + part[2],
            ops.slice_update(gradient, corner, part[3]),
        ), arrays

    return fori_loop(0, b // block, body, (init, (distances, positive, negative, row)))[0]


def lifted_structure_loss(
    y_true, y_pred, neg_margin=1.0, pos_margin=0.0, distance="euclidean", miner=None, p=None
):
    """Lifted structure loss (Oh Song et al., CVPR 2016), as pytorch-metric-learning's
    `LiftedStructureLoss`.

    For every ordered positive pair `(a, p)`:

        ℓ_ap = ½ [ log Σ_{(i, n): i ∈ {a, p}, y_n ≠ y_i} exp(neg_margin − d(i, n))
                   + d(a, p) − pos_margin ]₊²

    (the negatives of both `a` and `p`), averaged over the positive pairs; 0 when the
    batch has no positive pair or no negative pair. The `½` is pytorch-metric-learning's:
    each unordered pair is counted twice. With a `miner`, only the pairs it keeps; with
    cross-batch memory, a positive `p` from the memory brings no negatives of its own
    (only the batch has rows). Computed in O(B²): one log-sum-exp per row, pooled per pair.

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        neg_margin: the negative margin.
        pos_margin: the positive margin.
        distance: a metric of `keras_triplet.distances` (default `"euclidean"`, on the
            embeddings as given; pytorch-metric-learning's default distance normalises
            them first, as `TripletModel` does).
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(lifted_structure_loss(labels, emb)), 4)
    2.8165
    """
    neg_margin = check_finite(neg_margin, "neg_margin")
    pos_margin = check_finite(pos_margin, "pos_margin")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    value = lifted_structure_loss_from_distances(labels, distances, neg_margin, pos_margin, miner)
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class LiftedStructureLoss(MinedPairLoss):
    """Lifted structure loss for `model.compile(loss=LiftedStructureLoss())`; see
    `lifted_structure_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=LiftedStructureLoss(neg_margin=0.5))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(LiftedStructureLoss(neg_margin=0.5)(labels, emb)), 4)
    1.7577
    """

    def __init__(
        self,
        neg_margin=1.0,
        pos_margin=0.0,
        distance="euclidean",
        miner=None,
        p=None,
        name="lifted_structure_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.neg_margin = check_finite(neg_margin, "neg_margin")
        self.pos_margin = check_finite(pos_margin, "pos_margin")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return lifted_structure_loss_from_distances(
            labels, distances, self.neg_margin, self.pos_margin, self.miner, ref_labels
        )

    def get_config(self):
        config = super().get_config()
        config.update({"neg_margin": self.neg_margin, "pos_margin": self.pos_margin})
        return config


# --------------------------------------------------------------------------- generalized


def generalized_lifted_structure_loss_from_distances(
    labels, distances, neg_margin=1.0, pos_margin=0.0, miner=None, ref_labels=None
):
    """The generalized lifted structure loss from a `[B, R]` distance matrix; see
    `generalized_lifted_structure_loss`."""
    positive, negative = mined_pair_masks(labels, distances, miner, ref_labels)

    def rows(distances, positive, negative):
        # Positive and negative pairs are disjoint: one [b, R] matrix holds both exponents.
        (positive_term, negative_term), softmax = masked_softmax(
            ops.where(positive, distances - pos_margin, neg_margin - distances), (positive, negative)
        )
        row = positive_term + negative_term
        # ∂ℓ_a/∂d: the softmax weights, + on the positives and − on the negatives, where
        # the hinge is active.
        gradient = ops.where(ops.expand_dims(row > 0, 1), ops.where(positive, softmax, -softmax), 0.0)
        return row, gradient

    def value_and_gradient(distances, positive, negative):
        row, gradient = by_row_blocks(rows, distances, positive, negative)
        # The mean over the B anchors (one without pairs has ℓ_a = 0).
        return ops.mean(ops.relu(row)), gradient, 1.0 / ops.cast(ops.shape(row)[0], row.dtype)

    return loss_with_matrix_gradient(value_and_gradient, distances, positive, negative)


def generalized_lifted_structure_loss(
    y_true, y_pred, neg_margin=1.0, pos_margin=0.0, distance="euclidean", miner=None, p=None
):
    """Generalized lifted structure loss (Hermans et al. 2017, page 4), as
    pytorch-metric-learning's `GeneralizedLiftedStructureLoss`.

    For every anchor `a` of the batch:

        ℓ_a = [ log Σ_p exp(d(a, p) − pos_margin) + log Σ_n exp(neg_margin − d(a, n)) ]₊

    over its positives `p` and its negatives `n` (all, or those a `miner` keeps); a sum
    over an empty set contributes 0 (so an anchor without a positive still has the
    negative term, as in pytorch-metric-learning). The loss is the mean over the `B`
    anchors. Computed in O(B²).

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        neg_margin: the negative margin.
        pos_margin: the positive margin.
        distance: a metric of `keras_triplet.distances` (default `"euclidean"`, on the
            embeddings as given; pytorch-metric-learning's default distance normalises
            them first, as `TripletModel` does).
        miner: None (every pair) or a `keras_triplet.miners.PairMiner`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(generalized_lifted_structure_loss(labels, emb)), 4)
    1.6603
    """
    neg_margin = check_finite(neg_margin, "neg_margin")
    pos_margin = check_finite(pos_margin, "pos_margin")
    miner = check_pair_miner(miner)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    value = generalized_lifted_structure_loss_from_distances(labels, distances, neg_margin, pos_margin, miner)
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class GeneralizedLiftedStructureLoss(MinedPairLoss):
    """Generalized lifted structure loss for
    `model.compile(loss=GeneralizedLiftedStructureLoss())`; see
    `generalized_lifted_structure_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=GeneralizedLiftedStructureLoss(neg_margin=0.5))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(GeneralizedLiftedStructureLoss(neg_margin=0.5)(labels, emb)), 4)
    1.1603
    """

    def __init__(
        self,
        neg_margin=1.0,
        pos_margin=0.0,
        distance="euclidean",
        miner=None,
        p=None,
        name="generalized_lifted_structure_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, p=p, miner=miner, name=name, **kwargs)
        self.neg_margin = check_finite(neg_margin, "neg_margin")
        self.pos_margin = check_finite(pos_margin, "pos_margin")

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return generalized_lifted_structure_loss_from_distances(
            labels, distances, self.neg_margin, self.pos_margin, self.miner, ref_labels
        )

    def get_config(self):
        config = super().get_config()
        config.update({"neg_margin": self.neg_margin, "pos_margin": self.pos_margin})
        return config
