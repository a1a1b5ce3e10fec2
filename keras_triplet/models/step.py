"""The loss and the logged statistics of one training or evaluation step, as pure functions.

`TripletModel.compute_loss` reads the model's state (the cross-batch memory), calls
`batch_loss_and_statistics` and writes the state back; nothing here reads or writes a
variable, so the same code runs inside Keras' stateful TensorFlow / PyTorch steps and its
stateless JAX step. Reading order: `batch_loss_and_statistics` → `loss_and_statistics`
(no memory) or the memory branch → `in_batch_recall_at_1` (evaluation only).
"""

import numpy as np
from keras import ops

from keras_triplet import distances as distances_module
from keras_triplet._validation import check_labels
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.losses.class_weights import reject_memory
from keras_triplet.miners import pair_masks, triplet_statistics
from keras_triplet.miners.search import with_negatives
from keras_triplet.models import memory as memory_module

STATISTICS = (
    "active_fraction",
    "positive_distance",
    "negative_distance",
    "hard_fraction",
    "embedding_norm",
)
RECALL_NAME = "recall@1"


def loss_and_statistics(loss_fn, labels, distances, search=None):
    """A metric loss's value and the mining statistics of one `[B, B]` distance matrix,
    as a training step computes them: `(loss, miners.triplet_statistics(...))`.

    One search of the negatives (`miners.search.with_negatives`: direct for P×K
    batches on TensorFlow and JAX, sorted otherwise) serves the loss's miner and the
    statistics; the statistics see the distances with gradients stopped. `search`
    (`"direct"` or `"sorted"`) forces one search, as `with_negatives` documents
    (benchmarks); None leaves the choice to it.

    Example:

    >>> import numpy as np
    >>> from keras_triplet import losses
    >>> loss_fn = losses.TripletLoss(margin=0.2, miner="batch-hard")
    >>> x = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> value, stats = loss_and_statistics(loss_fn, np.array([0, 0, 1, 1]), loss_fn.pairwise(x))
    >>> round(float(value), 4)  # hinges 0.7, 0.7, 2.2, 0.7
    1.075
    >>> float(stats["hard_fraction"])  # 5 of the 8 triplets have d(a, n) < d(a, p)
    0.625
    """
    blocked = ops.stop_gradient(distances)

    def compute(negatives):
        value = loss_fn.compute_from_distances(labels, distances, negatives=negatives)
        return value, _applicable(loss_fn, triplet_statistics(labels, blocked, margin=_margin(loss_fn), negatives=negatives))

    positive, negative = pair_masks(labels)
    forced = {} if search is None else {"search": search}
    return with_negatives(distances, negative, positive, compute, **forced)


def _margin(loss_fn):
    return 0.0 if loss_fn.margin is None else loss_fn.margin


def _applicable(loss_fn, stats):
    """The statistics that apply to this loss: `active_fraction` (a non-zero hinge at
    the loss's triplet margin) only for losses that have a triplet margin."""
    return {name: value for name, value in stats.items() if name in statistics_of(loss_fn)}


def statistics_of(loss_fn):
    """The names of the statistics logged beside this loss (a subset of `STATISTICS`)."""
    if loss_fn.margin is None:
        return tuple(name for name in STATISTICS if name != "active_fraction")
    return STATISTICS


def in_batch_recall_at_1(labels, distances):
    """Fraction of the batch whose nearest *other* item (leave-one-out) has its label.

    `distances` is the `[B, B]` in-batch matrix; ties go to the lowest index.

    Example:

    >>> import numpy as np
    >>> from keras_triplet.distances import pairwise_distances
    >>> x = np.array([[0.0], [0.1], [1.0], [0.2]], "float32")
    >>> labels = np.array([0, 0, 1, 1])  # item 3 (at 0.2) is nearest to item 1, a miss
    >>> float(in_batch_recall_at_1(labels, pairwise_distances(x)))
    0.75
    """
    n = ops.shape(distances)[0]
    idx = ops.arange(n)
    self_pair = ops.expand_dims(idx, 1) == ops.expand_dims(idx, 0)
    big = ops.cast(np.finfo("float32").max, distances.dtype)
    nearest = ops.argmin(ops.where(self_pair, big, distances), axis=1)
    hit = ops.take(labels, nearest, axis=0) == labels
    return ops.mean(ops.cast(hit, "float32"))


def mean_norm(x):
    """Mean Euclidean norm of the rows of `x` (gradients stopped: it is logged)."""
    x = ops.stop_gradient(x)
    return ops.mean(ops.sqrt(ops.sum(ops.square(x), axis=-1)))


def batch_loss_and_statistics(loss_fn, labels, embeddings, memory_state=None, training=False):
    """Loss, statistics and the next memory state of one batch, from its labels and
    (normalised) embeddings: everything the metric loss sees starts here.

    Pure: the memory comes in as `memory_state` (`(embeddings, labels, count, pointer)`,
    see `memory.push`) and the new one goes out. With a memory and `training`, the loss
    is taken on the `[B, B + M]` distances between the batch and batch ++ memory; the
    statistics always describe the batch alone. A data-parallel step would gather every
    replica's `labels` and `embeddings` at the top of this function, before the distance
    matrix (JAX's global arrays already hold the global batch).

    Returns:
        `(loss, statistics, new_memory_state)`: the float32 loss; a dict with the
        float32 scalars of `statistics_of(loss_fn)` except `embedding_norm` (the model
        adds it: it is the norm *before* normalisation), plus `recall@1` when not
        training; and
        None unless training with a memory.

    Example:

    >>> import numpy as np
    >>> from keras_triplet import losses
    >>> x = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> loss, stats, _ = batch_loss_and_statistics(
    ...     losses.TripletLoss(margin=0.2, miner="batch-hard"), np.array([0, 0, 1, 1]), x)
    >>> round(float(loss), 4), sorted(stats)
    (1.075, ['active_fraction', 'hard_fraction', 'negative_distance', 'positive_distance', 'recall@1'])
    """
    labels = ops.cast(check_labels(labels, batch_size=embeddings.shape[0]), "int32")
    distances = loss_fn.pairwise(embeddings)  # [B, B], computed once per step
    blocked = ops.stop_gradient(distances)
    new_memory = None
    from_embeddings = getattr(loss_fn, "compute_from_embeddings", None)
    if from_embeddings is not None:
        # Losses with class weights (proxies, class centres: losses/class_weights.py)
        # compare the embeddings with their weights, not with each other: they take the
        # embeddings; the [B, B] matrix feeds the statistics only. No cross-batch memory.
        if training and memory_state is not None:
            reject_memory(loss_fn)
        value = from_embeddings(labels, embeddings)
        stats = _applicable(loss_fn, triplet_statistics(labels, blocked, margin=_margin(loss_fn)))
    elif training and memory_state is not None:
        memory_embeddings, memory_labels = memory_state[0], memory_state[1]
        valid = memory_module.valid_mask(memory_state)
        memory_distances = distances_module.pairwise_distances(
            embeddings,
            ops.cast(memory_embeddings, embeddings.dtype),
            metric=loss_fn.distance,
            p=loss_fn.p,
        )
        all_distances = ops.concatenate([distances, memory_distances], axis=1)
        ref_labels = ops.concatenate([labels, ops.where(valid, memory_labels, -1)], axis=0)
        value = loss_fn.compute_from_distances(labels, all_distances, ref_labels=ref_labels)
        new_memory = memory_module.push(memory_state, embeddings, labels)
        stats = _applicable(loss_fn, triplet_statistics(labels, blocked, margin=_margin(loss_fn)))
    else:
        value, stats = loss_and_statistics(loss_fn, labels, distances)
    # A diverged network's NaN / inf embeddings give a NaN loss, never a finite one.
    value = propagate_nonfinite(value, embeddings)

    stats = dict(stats)
    if not training:
        stats[RECALL_NAME] = in_batch_recall_at_1(labels, blocked)
    stats = {name: ops.cast(v, "float32") for name, v in stats.items()}
    return ops.cast(value, "float32"), stats, new_memory
