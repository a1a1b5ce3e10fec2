"""The loss and the logged statistics of one training or evaluation step, as pure functions.

`TripletModel.compute_loss` reads the model's state (the cross-batch memory), calls
`batch_loss_and_statistics` and writes the state back; nothing here reads or writes a
variable, so the same code runs inside Keras' stateful TensorFlow / PyTorch steps and its
stateless JAX step. Reading order: `batch_loss_and_statistics` → `loss_and_statistics`
(no memory) or the memory branch → `in_batch_recall_at_1` (evaluation only).
"""

import numpy as np
from keras import ops

from keras_triplet._backend import compiled_mining, traced_value
from keras_triplet._validation import check_labels
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.losses.class_weights import reject_memory
from keras_triplet.losses.triplet import TripletLoss, switches_own_gradients
from keras_triplet.miners import NegativeSearchMiner, pair_masks, triplet_statistics
from keras_triplet.miners.search import with_negatives
from keras_triplet.models import distributed
from keras_triplet.models import memory as memory_module

STATISTICS = (
    "active_fraction",
    "positive_distance",
    "negative_distance",
    "hard_fraction",
    "embedding_norm",
)
RECALL_NAME = "recall@1"


def loss_and_statistics(loss_fn, labels, distances, search=None, statistics=True, fused=True):
    """A metric loss's value and the mining statistics of one `[B, B]` distance matrix,
    as a training step computes them: `(loss, miners.triplet_statistics(...))`.

    One search of the negatives (`miners.search.with_negatives`: direct for P×K
    batches, sorted otherwise) serves the loss's miner and the
    statistics; the statistics see the distances with gradients stopped. `search`
    (`"direct"` or `"sorted"`) forces one search, as `with_negatives` documents
    (benchmarks); None leaves the choice to it. `statistics`: whether to compute the
    statistics (`when_statistics`: True, False or a boolean scalar tensor); where they
    are not computed they are zeros. `fused`: whether the step is compiled by XLA
    (`model.jit_compile`), which fuses the direct search's loop over its columns; False
    (eager PyTorch, TensorFlow graphs without XLA, `run_eagerly`) has a small direct
    search, the miner's and the statistics' questions alike, compare all its columns at
    once instead (`with_negatives(fused=...)`, `DirectNegatives(broadcast=True)`).

    Example:

    >>> import numpy as np
    >>> from keras_triplet import losses
    >>> loss_fn = losses.TripletLoss(margin=0.2, miner="batch-hard")
    >>> x = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> value, stats = loss_and_statistics(loss_fn, np.array([0, 0, 1, 1], "int32"), loss_fn.pairwise(x))
    >>> round(float(value), 4)  # hinges 0.7, 0.7, 2.2, 0.7
    1.075
    >>> float(stats["hard_fraction"])  # 5 of the 8 triplets have d(a, n) < d(a, p)
    0.625
    """
    blocked = ops.stop_gradient(distances)

    def compute(negatives):
        value = loss_fn.compute_from_distances(labels, distances, negatives=negatives)
        # The loss's questions to `negatives` are cached in it: the statistics reuse
        # them, also from inside `when_statistics`' `ops.cond` (nothing asks it after).
        return value, when_statistics(
            statistics,
            loss_fn,
            lambda: triplet_statistics(
                labels,
                blocked,
                margin=_margin(loss_fn),
                negatives=negatives,
            ),
        )

    if not _searches(loss_fn) and _known_false(statistics):
        # Nothing asks the search this step (a loss whose miner does not search the
        # negatives, statistics skipped): do not build it (a sort on eager PyTorch).
        return compute(None)
    positive, negative = pair_masks(labels)
    forced = {} if search is None else {"search": search}
    # A searching triplet loss reads the search's distances alone, the statistics `blocked`.
    triplet = _searches(loss_fn) and isinstance(loss_fn, TripletLoss)
    own = triplet and switches_own_gradients(loss_fn.miner)
    picks = triplet and loss_fn.miner.single_negative
    return with_negatives(
        distances, negative, positive, compute, fused=fused, own_gradients=own, picks=picks, **forced
    )


def _searches(loss_fn):
    """Whether `loss_fn` asks questions of the negative search (a triplet loss whose
    miner chooses among the negatives: semi-hard, batch-all)."""
    return isinstance(getattr(loss_fn, "miner", None), NegativeSearchMiner)


def _known_false(statistics):
    """Whether `statistics` (`when_statistics`' argument) is known to be false now:
    False, or a concrete false tensor (an eager step's `statistics_freq` test); a
    compiled step's tensor has no value yet."""
    if statistics is True or statistics is False:
        return not statistics
    value = traced_value(statistics)
    return value is not None and not bool(value)


def when_statistics(statistics, loss_fn, compute):
    """The float32 statistics of `statistics_of(loss_fn)` (but `embedding_norm`) from
    `compute()` (a dict of `triplet_statistics`) when `statistics`, else zeros.

    `statistics` is a Python bool, or a boolean scalar tensor (a training step that logs
    the statistics every N steps: `TripletModel(statistics_freq=N)`), then an `ops.cond`:
    compiled, both branches are built and only one runs; eagerly (PyTorch), the one.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> from keras_triplet import losses
    >>> loss_fn = losses.TripletLoss(margin=0.2)
    >>> def compute():
    ...     return {"hard_fraction": 0.5, "positive_distance": 1.0, "negative_distance": 2.0,
    ...             "active_fraction": 0.75}
    >>> float(when_statistics(ops.convert_to_tensor(False), loss_fn, compute)["hard_fraction"])
    0.0
    >>> float(when_statistics(True, loss_fn, compute)["hard_fraction"])
    0.5
    """
    names = [name for name in statistics_of(loss_fn) if name != "embedding_norm"]

    def computed():
        stats = compute()
        return {name: ops.cast(stats[name], "float32") for name in names}

    def zeros():
        zero = ops.zeros((), "float32")  # one immutable scalar for every name
        return {name: zero for name in names}

    if statistics is True:
        return computed()
    if statistics is False:
        return zeros()
    # Nothing differentiates the statistics; said outside the `cond` so that no gradient
    # reaches it: TensorFlow's gradient of a `cond` adds the branches' intermediates to
    # its outputs, which XLA cannot compile at a dynamic batch size (a partial last
    # batch) when the other branch has none.
    return {name: ops.stop_gradient(value) for name, value in ops.cond(statistics, computed, zeros).items()}


def _margin(loss_fn):
    return 0.0 if loss_fn.margin is None else loss_fn.margin


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


def batch_loss_and_statistics(
    loss_fn,
    labels,
    embeddings,
    memory_state=None,
    training=False,
    mining="global",
    samples_per_class=None,
    statistics=True,
    fused=True,
):
    """Loss, statistics and the next memory state of one batch, from its labels and
    (normalised) embeddings: everything the metric loss sees starts here.

    Pure: the memory comes in as `memory_state` (`(embeddings, labels, count, pointer)`,
    see `memory.push`) and the new one goes out. With a memory and `training`, the loss
    is taken on the `[B, B + M]` distances between the batch and batch ++ memory; the
    statistics always describe the batch alone.

    Data parallelism starts here too (`distributed.py`): where a replica's step sees
    only its slice (`tf.distribute`, `torch.distributed`), every replica's labels and
    embeddings are gathered first, differentiably, so that with `mining="global"` the
    loss and the statistics are the global batch's (JAX's global arrays already hold
    it). With `mining="per_replica"` each replica's slice is mined alone and the loss and
    statistics are the means over the replicas. Either way the memory receives the whole
    global batch. The loss returned is not yet scaled for the framework's gradient
    aggregation (`distributed.loss_scale`, applied by the model). `samples_per_class`
    (`K` of P×K batches, when known) is checked against the replicas' slices under
    per-replica mining, where the shapes are static: each slice must hold whole classes.
    `statistics` (True, False or a boolean scalar tensor): whether to compute the
    statistics this step (`when_statistics`); zeros where not. `recall@1` (evaluation)
    is computed either way. `fused`: whether XLA compiles the step (`loss_and_statistics`).

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
    distributed.check_mining(mining)
    replicas = distributed.replicas()
    with_memory = training and memory_state is not None
    # Per replica, a slice that cuts a class in two mines it as two smaller classes.
    k = samples_per_class if mining == "per_replica" else None
    mapped = False  # whether `part` holds an axis of replicas' slices
    if replicas.sliced:  # tf.distribute / torch.distributed: this replica's slice only
        if embeddings.shape[0] is not None:  # static: checked when the step is traced
            distributed.check_batch_split(embeddings.shape[0] * replicas.count, replicas.count, k)
        global_batch = None
        if mining == "global" or with_memory:
            # Per replica, the memory still takes the global batch (detached by `push`).
            gathered = embeddings if mining == "global" else ops.stop_gradient(embeddings)
            global_batch = (distributed.gather(labels), distributed.gather(gathered))
            if embeddings.shape[0] is not None and embeddings.shape[-1] is not None:
                # The gather's static shape, lost by tf.distribute: the mining part is
                # compiled alone only for static shapes (`mined_loss_and_statistics`).
                rows = embeddings.shape[0] * replicas.count
                global_batch = (
                    ops.reshape(global_batch[0], (rows,)),
                    ops.reshape(global_batch[1], (rows, embeddings.shape[-1])),
                )
        part = global_batch if mining == "global" else (labels, embeddings)
    else:
        global_batch = part = (labels, embeddings)
        distributed.check_batch_split(embeddings.shape[0], replicas.count, k)
        if mining == "per_replica" and replicas.count > 1:
            # JAX's global arrays: the replicas' slices as one mapped axis (one traced
            # loss whatever the number of replicas, rather than a Python loop).
            share = embeddings.shape[0] // replicas.count
            part = (
                ops.reshape(labels, (replicas.count, share)),
                ops.reshape(embeddings, (replicas.count, share, embeddings.shape[-1])),
            )
            mapped = True

    def one_slice(part):
        return _slice_loss_and_statistics(
            loss_fn, *part, memory_state, with_memory, training, statistics, fused
        )

    if mapped:
        value, stats = ops.vectorized_map(one_slice, part)
        value, stats = ops.mean(value), {name: ops.mean(v) for name, v in stats.items()}
    else:
        value, stats = one_slice(part)
    if replicas.sliced and mining == "per_replica":
        # What a replica logs is the mean over the replicas (the gradient stays its own).
        names = sorted(stats)
        means = distributed.replica_mean(ops.stack([value] + [stats[n] for n in names]))
        value, stats = means[0], {name: means[i + 1] for i, name in enumerate(names)}
    new_memory = memory_module.push(memory_state, global_batch[1], global_batch[0]) if with_memory else None
    return value, stats, new_memory


def mined_loss_and_statistics(
    loss_fn, labels, embeddings, statistics=True, fused=True, search=None, gradient=True
):
    """`loss_and_statistics` of the embeddings' distance matrix, and that matrix with
    gradients stopped: `(loss, statistics, distances)`, the mining part of a step.

    Where the step is not compiled by XLA (`fused` False) but the backend can compile
    the mining part alone (TensorFlow graphs, static shapes:
    `_backend.compiled_mining`), the distances, the loss with its miner and the
    statistics, forward and backward, run as one XLA function, fused as under
    `jit_compile=True`; elsewhere as the step runs. `statistics` and `search`: as
    `loss_and_statistics` (a boolean tensor goes in as an argument). `gradient`: whether
    the loss is differentiated (training); compiled, its gradient is computed with it.

    Example:

    >>> import numpy as np
    >>> from keras_triplet import losses
    >>> loss_fn = losses.TripletLoss(margin=0.2, miner="batch-hard")
    >>> x = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> value, stats, d = mined_loss_and_statistics(loss_fn, np.array([0, 0, 1, 1], "int32"), x)
    >>> round(float(value), 4), float(d[0, 3])
    (1.075, 3.0)
    """
    flag = () if isinstance(statistics, bool) else (statistics,)

    def mine(compiled, embeddings, labels, *flag):
        distances = loss_fn.pairwise(embeddings)  # [B, B], computed once per step
        value, stats = loss_and_statistics(
            loss_fn,
            labels,
            distances,
            search=search,
            statistics=flag[0] if flag else statistics,
            fused=fused or compiled,
        )
        return value, (stats, ops.stop_gradient(distances))

    if fused:  # already compiled with the step
        value, (stats, distances) = mine(False, embeddings, labels, *flag)
    else:
        value, (stats, distances) = compiled_mining(mine, embeddings, labels, *flag, gradient=gradient)
    return value, stats, distances


def _slice_loss_and_statistics(
    loss_fn, labels, embeddings, memory_state, with_memory, training, statistics, fused
):
    """The float32 loss and statistics of one batch (or one replica's slice of it)."""
    from_embeddings = getattr(loss_fn, "compute_from_embeddings", None)
    if from_embeddings is None and not with_memory:
        value, stats, blocked = mined_loss_and_statistics(
            loss_fn, labels, embeddings, statistics, fused, gradient=training
        )
    else:
        distances = loss_fn.pairwise(embeddings)  # [B, B], computed once per step
        blocked = ops.stop_gradient(distances)
        if from_embeddings is not None:
            # Losses with class weights (proxies, class centres: losses/class_weights.py)
            # compare the embeddings with their weights, not with each other: they take the
            # embeddings; the [B, B] matrix feeds the statistics only. No cross-batch memory.
            if with_memory:
                reject_memory(loss_fn)
            value = from_embeddings(labels, embeddings)
        else:
            memory_embeddings, memory_labels = memory_state[0], memory_state[1]
            valid = memory_module.valid_mask(memory_state)
            memory_distances = loss_fn.pairwise(embeddings, ops.cast(memory_embeddings, embeddings.dtype))
            all_distances = ops.concatenate([distances, memory_distances], axis=1)
            ref_labels = ops.concatenate([labels, ops.where(valid, memory_labels, -1)], axis=0)
            value = loss_fn.compute_from_distances(labels, all_distances, ref_labels=ref_labels)
        stats = when_statistics(
            statistics, loss_fn, lambda: triplet_statistics(labels, blocked, margin=_margin(loss_fn))
        )
    # A diverged network's NaN / inf embeddings give a NaN loss, never a finite one.
    value = propagate_nonfinite(value, embeddings)

    stats = dict(stats)
    if not training:
        stats[RECALL_NAME] = in_batch_recall_at_1(labels, blocked)
    stats = {name: ops.cast(v, "float32") for name, v in stats.items()}
    return ops.cast(value, "float32"), stats
