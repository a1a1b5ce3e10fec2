"""N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
Objective", NeurIPS 2016), as pytorch-metric-learning defines `NPairsLoss`."""

import keras
from keras import ops

from keras_triplet._backend import INDEX_DTYPE, compact_rows
from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.distances import check_metric, pairwise_distances, pairwise_similarities
from keras_triplet.losses.base import mined_pair_masks, propagate_nonfinite
from keras_triplet.losses.mined_pair_loss import MinedPairLoss
from keras_triplet.losses.reductions import masked_logsumexp, mean_over
from keras_triplet.miners.pair_miner import check_pair_miner

DOT = "dot"


def check_distance(distance, p=None):
    """`"dot"` (the dot product of the embeddings as given) or a metric of
    `keras_triplet.distances`."""
    if distance == DOT:
        if p is not None:
            raise ValueError(f"`p` only applies to the 'minkowski' metric, not to {distance!r}.")
        return distance
    try:
        return check_metric(distance, p)
    except ValueError as error:
        raise ValueError(f"{error} (or 'dot', the dot product of the embeddings as given)") from None


def npairs_matrix(embeddings, distance="cosine", p=None, references=None):
    """The `[B, B]` (or `[B, R]` against `references`) matrix the N-pair loss reads,
    smaller is closer: `−x_i·x_j` for `"dot"`, else the distance."""
    if distance == DOT:
        return -pairwise_similarities(embeddings, references)
    return pairwise_distances(embeddings, references, metric=distance, p=p)


def _class_tuples(labels):
    """`(anchors, positives)`: for each class with two members or more, the positions of
    its first member and of its second (in batch order), the tuples pytorch-metric-learning
    picks without a miner; or None where shapes must stay static (every backend but eager
    PyTorch, `_backend.compact_rows`) or when no class has two members."""
    b = ops.shape(labels)[0]
    # Sorted by (label, position), each class's members are adjacent and in batch order.
    # The keys are distinct, so the sort need not be stable; they are int64 where they are
    # used (compact_rows returns positions on PyTorch only, whose INDEX_DTYPE is int64).
    index = ops.arange(b, dtype=INDEX_DTYPE)
    order = ops.argsort(ops.cast(labels, INDEX_DTYPE) * b + index)
    sorted_labels = ops.take(labels, order)
    same_as_next = sorted_labels[1:] == sorted_labels[:-1]
    first = ops.concatenate([ops.ones((1,), "bool"), ops.logical_not(same_as_next)])
    rows = compact_rows(ops.logical_and(first[:-1], same_as_next))
    if rows is None or ops.shape(rows)[0] == 0:
        return None
    return ops.take(order, rows), ops.take(order, rows + 1)


def _tuple_loss(logits):
    """The mean over the `P` tuples of `−log softmax(logits[k])[k]`, from the `[P, P]`
    logits of anchor `k` against positive `k'`."""
    return ops.mean(ops.logsumexp(logits, axis=1) - ops.diagonal(logits))


def npairs_loss_from_distances(labels, distances, miner=None, ref_labels=None):
    """The N-pair loss from a `[B, B]` matrix (smaller is closer); see `npairs_loss`."""
    if ref_labels is not None:
        raise NotImplementedError(
            "NPairsLoss does not support cross-batch memory (nor does pytorch-metric-learning's): "
            "its tuples are one positive pair per class of the batch."
        )
    tuples = _class_tuples(labels) if miner is None else None
    if tuples is not None:
        # Eager PyTorch: the [P, P] logits of the tuples, gathered (P = number of classes).
        anchors, positives = tuples
        return _tuple_loss(-ops.take(ops.take(distances, anchors, axis=0), positives, axis=1))
    return _masked_npairs_loss(labels, distances, miner)


def _masked_npairs_loss(labels, distances, miner):
    """The N-pair loss on the whole `[B, B]` matrix, its tuples as masks (static shapes)."""
    positive, _ = mined_pair_masks(labels, distances, miner)
    b = ops.shape(distances)[0]
    index = ops.arange(b)
    has_positive = ops.any(positive, axis=1)
    # One tuple per class: its first anchor (in batch order) that has a positive, with
    # that anchor's first positive, as pytorch-metric-learning picks them.
    same = ops.expand_dims(labels, 1) == ops.expand_dims(labels, 0)
    earlier = ops.logical_and(same, ops.expand_dims(index, 0) < ops.expand_dims(index, 1))
    anchor = ops.logical_and(
        has_positive,
        ops.logical_not(ops.any(ops.logical_and(earlier, ops.expand_dims(has_positive, 0)), axis=1)),
    )
    first_positive = ops.min(ops.where(positive, ops.expand_dims(index, 0), b), axis=1)
    first_positive = ops.minimum(first_positive, b - 1)  # rows without one are not anchors
    # Anchor a against every anchor's positive: the logits −d(a, p(a')), read transposed as
    # rows of the (symmetric) matrix, −d(p(a'), a) at [a', a], and reduced over a'. (A row
    # gather is contiguous, and so is its gradient's scatter; gathering columns strides
    # through the whole [B, B] matrix twice.)
    transposed_logits = -ops.take(distances, first_positive, axis=0)
    own = -ops.squeeze(ops.take_along_axis(distances, ops.expand_dims(first_positive, 1), axis=1), 1)
    both = ops.logical_and(ops.expand_dims(anchor, 1), ops.expand_dims(anchor, 0))
    row_loss = ops.where(anchor, masked_logsumexp(transposed_logits, both, axis=0) - own, 0.0)
    return mean_over(row_loss, anchor)


def npairs_loss_from_embeddings(labels, embeddings, distance="cosine", p=None, miner=None):
    """The N-pair loss of validated labels and embeddings; see `npairs_loss`. On eager
    PyTorch without a miner, only the `[P, P]` matrix of the `P` tuples is computed (the
    `[B, B]` one otherwise)."""
    tuples = _class_tuples(labels) if miner is None else None
    if tuples is None:
        return _masked_npairs_loss(labels, npairs_matrix(embeddings, distance, p), miner)
    anchors, positives = tuples
    matrix = npairs_matrix(
        ops.take(embeddings, anchors, axis=0), distance, p, references=ops.take(embeddings, positives, axis=0)
    )
    return _tuple_loss(-matrix)


def npairs_loss(y_true, y_pred, distance="cosine", miner=None, p=None):
    """N-pair loss (Sohn, NeurIPS 2016), multi-class form, as pytorch-metric-learning's
    `NPairsLoss`.

    From each class of the batch with at least two members, one pair `(a_k, p_k)`: its
    first member (in batch order) and that member's first positive (with a `miner`, the
    first pair it keeps for that class). With `s(i, j) = −d(i, j)` (for the default
    cosine distance, the cosine similarity up to a constant the softmax cancels) or
    `s(i, j) = x_i·x_j` (`distance="dot"`, the embeddings as given), each anchor is
    classified among the `K` positives:

        ℓ_k = −log( exp(s(a_k, p_k)) / Σ_{k'} exp(s(a_k, p_{k'})) )

    averaged over the `K` pairs; 0 when no class has two members. No temperature.
    pytorch-metric-learning's default, `DotProductSimilarity()`, normalises the embeddings
    first: it is the cosine similarity, our default. Sohn's paper uses the raw dot product
    with an L2 penalty on the embeddings (`"dot"`). O(B²) (on eager PyTorch without a miner,
    O(K²) for the K tuples). Cross-batch memory is not
    supported.

    Args:
        y_true: integer labels, `[B]` or `[B, 1]`.
        y_pred: embeddings, `[B, D]`.
        distance: a metric of `keras_triplet.distances` (default `"cosine"`) or `"dot"`.
        miner: None (every pair) or a `keras_triplet.miners.PairMiner` (its positive pairs
            choose the tuples; its negative pairs are not used).
        p: the order of the Minkowski distance.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(npairs_loss(labels, emb)), 4)
    0.6572
    """
    distance = check_distance(distance, p)
    miner = check_pair_miner(miner)
    embeddings = check_embeddings(y_pred)
    labels = check_labels(y_true, batch_size=embeddings.shape[0])
    value = npairs_loss_from_embeddings(labels, embeddings, distance, p, miner)
    return propagate_nonfinite(value, embeddings)


@keras.saving.register_keras_serializable(package="keras_triplet")
class NPairsLoss(MinedPairLoss):
    """N-pair loss for `model.compile(loss=NPairsLoss())`; see `npairs_loss`.

    With `distance="dot"`, `pairwise` returns `−x_i·x_j` (smaller is closer, like every
    matrix a training step shares), and `TripletModel` logs its statistics on that matrix.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=NPairsLoss())
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(NPairsLoss()(labels, emb)), 4)
    0.6572
    """

    def __init__(self, distance="cosine", miner=None, p=None, name="npairs_loss", **kwargs):
        distance = check_distance(distance, p)
        # The base validates a metric name; "dot" is not one, so it is set afterwards.
        super().__init__(
            distance="euclidean" if distance == DOT else distance, p=p, miner=miner, name=name, **kwargs
        )
        self.distance = distance

    def pairwise(self, embeddings, references=None):
        return npairs_matrix(embeddings, self.distance, self.p, references)

    def call(self, y_true, y_pred):
        embeddings = check_embeddings(y_pred)
        labels = check_labels(y_true, batch_size=embeddings.shape[0])
        value = npairs_loss_from_embeddings(labels, embeddings, self.distance, self.p, self.miner)
        return propagate_nonfinite(value, embeddings)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        return npairs_loss_from_distances(labels, distances, self.miner, ref_labels)
