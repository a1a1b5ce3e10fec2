"""Triplet loss with online mining."""

import functools

import keras
from keras import ops

from keras_triplet import miners as miners_lib
from keras_triplet._backend import SWITCH_BAND_SEARCHES
from keras_triplet._validation import check_choice, check_margin
from keras_triplet.losses.base import MetricLoss, prepare, propagate_nonfinite
from keras_triplet.miners.search import with_negatives

AVERAGES = ("auto", "triplets", "nonzero")


def triplet_loss_from_distances(
    labels, distances, miner, margin=1.0, soft_margin=False, average="auto", ref_labels=None, negatives=None
):
    """The triplet loss from a `[B, R]` distance matrix and a miner instance.

    See `triplet_loss` for the formula. Returns a float32 scalar. `negatives`: a
    `miners.search` object of this matrix to reuse (see `TripletMiner.mine`); without
    one, `miners.search.with_negatives` picks one.
    """
    average = check_options(miner, margin, soft_margin, average)
    return _mined_triplet_loss(labels, distances, miner, margin, soft_margin, average, ref_labels, negatives)


def check_options(miner, margin, soft_margin, average):
    """Validates the options of a triplet loss with this miner instance (the one place
    that does); returns `average` with `"auto"` resolved."""
    check_choice(average, AVERAGES, "average")
    if soft_margin and not miner.single_negative:
        raise ValueError(
            f"soft_margin=True needs a miner that picks one negative per positive pair "
            f"('batch-hard' or 'semi-hard'); {type(miner).__name__} picks many. Use the hinge "
            "form (soft_margin=False) with batch-all mining."
        )
    if isinstance(miner, miners_lib.BatchAllMiner) and miner.margin > margin and not soft_margin:
        raise ValueError(
            f"The BatchAllMiner's margin ({miner.margin}) exceeds the loss margin ({margin}): it "
            "would select triplets whose hinge loss is 0. Give both the same margin."
        )
    if average == "auto":
        return "nonzero" if not miner.single_negative else "triplets"
    return average


def switches_own_gradients(miner):
    """Whether the triplet loss with `miner` asks `with_negatives` for its choice as one
    switch with its own gradients (`own_gradients=True`): its arithmetic is
    differentiable in the search's distances alone (`mine_pairs` reads them from the
    search). Single-negative miners always; band miners (batch-all) where the backend
    says it pays (`_backend.SWITCH_BAND_SEARCHES`: their blocked sorted branch holds
    several `[B, R]` arrays inside the switch)."""
    return miner.single_negative or SWITCH_BAND_SEARCHES


def _mined_triplet_loss(
    labels, distances, miner, margin, soft_margin, average, ref_labels=None, negatives=None
):
    """The triplet loss for options already checked (`average` resolved)."""
    if negatives is None and isinstance(miner, miners_lib.NegativeSearchMiner):
        # Direct comparisons for P×K batches, a sort otherwise (miners/search/choice.py).
        positive, negative = miners_lib.pair_masks(labels, ref_labels)
        total, denominator = with_negatives(
            distances,
            negative,
            positive,
            lambda found: _summed_triplet_loss(
                labels, found.distances, miner, margin, soft_margin, average, ref_labels, found
            ),
            own_gradients=switches_own_gradients(miner),
            picks=miner.single_negative,
        )
    else:
        total, denominator = _summed_triplet_loss(
            labels, distances, miner, margin, soft_margin, average, ref_labels, negatives
        )
    # No mined triplet (or none with a loss): the numerator is 0 too, and so is the gradient.
    return total / ops.maximum(denominator, 1.0)


def _summed_triplet_loss(labels, distances, miner, margin, soft_margin, average, ref_labels, negatives):
    """`(Σ ℓ, N)`: the loss's numerator and its denominator (no gradient), apart so that a
    choice with its own gradients (`with_negatives(own_gradients=True)`), whose backward
    pass computes its branch again, needs no value of the branch that only the
    denominator reads (a band's distance sums, below). (`TripletModel`'s step divides
    inside its choice, beside the statistics.)"""
    # The selection in the miner's own layout (compact on eager PyTorch, one pair per
    # anchor for batch-hard): only sums follow.
    distances, selected = miner.mine_pairs(labels, distances, ref_labels=ref_labels, negatives=negatives)
    pair = selected["pair_mask"]
    count = selected["negative_count"]
    negative_sum = selected["negative_distance_sum"]
    # `pair` is 0/1 and the terms are finite: a product masks them (see miners.base.selection).
    if soft_margin:
        pair_loss = pair * ops.softplus(distances - negative_sum)
    elif miner.single_negative:
        pair_loss = pair * ops.relu(count * (distances + margin) - negative_sum)
    else:
        # Σ_n max(d(a,p) − d(a,n) + m, 0) over the mined negatives: a band miner only
        # selects negatives whose hinge is positive, so the sum has a closed form, ≥ 0 up
        # to rounding. Its value is clamped at 0 (exactly the `relu`'s), its gradient is
        # the sum's own: a `relu`'s would read the band's distance sums again in a
        # backward pass that computes the search again.
        hinges = count * (distances + margin) - negative_sum
        pair_loss = pair * (hinges + ops.stop_gradient(ops.relu(hinges) - hinges))
    if average == "nonzero":
        denominator = ops.sum(count * ops.cast(pair_loss > 0, count.dtype))
    else:
        denominator = ops.sum(count)
    return ops.sum(pair_loss), ops.stop_gradient(denominator)


def triplet_loss(
    y_true,
    y_pred,
    margin=1.0,
    distance="euclidean",
    miner="semi-hard",
    soft_margin=False,
    average="auto",
    p=None,
):
    """Triplet loss with online mining (Schroff et al., "FaceNet", CVPR 2015; Hermans et
    al., "In Defense of the Triplet Loss for Person Re-Identification", 2017).

    For each mined triplet (anchor `a`, positive `p`, negative `n`):

        ℓ = max(d(a, p) − d(a, n) + margin, 0)        (hinge, default)
        ℓ = log(1 + exp(d(a, p) − d(a, n)))            (soft_margin=True)

    The loss is `Σ ℓ / N`, with `N` the number of mined triplets (`average="triplets"`)
    or of mined triplets with `ℓ > 0` (`average="nonzero"`); `"auto"` picks `"nonzero"`
    for batch-all mining and `"triplets"` otherwise. A batch without any mined triplet
    gives 0.

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        margin: the hinge margin (>= 0); unused with `soft_margin=True`.
        distance: a metric of `keras_triplet.distances` (default `"euclidean"`).
        miner: `"semi-hard"` (FaceNet; tensorflow-addons' `TripletSemiHardLoss`),
            `"batch-hard"`, `"batch-all"`, or a `keras_triplet.miners` layer.
            docs/semantics.md says exactly which triplets each selects.
        soft_margin: softplus instead of the hinge (single-negative miners only).
        average: `"auto"`, `"triplets"` or `"nonzero"`.
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0, 0.0], [0.0, 1.0], [0.5, 0.0], [2.0, 0.0]], "float32")
    >>> round(float(triplet_loss(labels, emb, margin=1.0, miner="batch-hard")), 4)
    1.2205
    """
    margin = check_margin(margin)
    labels, distances, embeddings = prepare(y_true, y_pred, distance, p)
    miner = _functional_miner(miner, margin, distance, p)
    value = triplet_loss_from_distances(labels, distances, miner, margin, soft_margin, average)
    return propagate_nonfinite(value, embeddings)


def _functional_miner(miner, margin, distance, p):
    """`triplet_loss`'s miner: a named one is built once per options and kept (a miner is
    a Keras layer without state: its options alone decide what it selects), so that an
    eager step, called again and again, does not build a layer at every call."""
    if isinstance(miner, str):
        try:
            return _named_miner(miner, margin=margin, distance=distance, p=p)
        except TypeError:  # unhashable options (a `p` given as an array): built each time
            pass
    return miners_lib.get(miner, margin=margin, distance=distance, p=p)


_named_miner = functools.lru_cache(maxsize=64)(miners_lib.get)


@keras.saving.register_keras_serializable(package="keras_triplet")
class TripletLoss(MetricLoss):
    """Triplet loss with online mining, for `model.compile(loss=TripletLoss())`.

    See `keras_triplet.losses.triplet_loss` for the formula and arguments.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=TripletLoss(margin=0.5, miner="batch-hard"))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(TripletLoss(margin=0.5, miner="semi-hard")(labels, emb)), 4)
    0.1117
    """

    def __init__(
        self,
        margin=1.0,
        distance="euclidean",
        miner="semi-hard",
        soft_margin=False,
        average="auto",
        p=None,
        name="triplet_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, p=p, name=name, **kwargs)
        self.margin = check_margin(margin)
        self.miner = miners_lib.get(miner, margin=self.margin, distance=distance, p=p)
        self.soft_margin = bool(soft_margin)
        self.average = average
        # Checked at construction, not at every batch (get_config keeps "auto").
        self._average = check_options(self.miner, self.margin, self.soft_margin, average)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return _mined_triplet_loss(
            labels,
            distances,
            self.miner,
            self.margin,
            self.soft_margin,
            self._average,
            ref_labels=ref_labels,
            negatives=negatives,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "miner": keras.saving.serialize_keras_object(self.miner),
                "soft_margin": self.soft_margin,
                "average": self.average,
            }
        )
        return config
