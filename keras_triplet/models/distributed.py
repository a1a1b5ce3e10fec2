"""Data-parallel training: what one step sees of the global batch, and the mining switch.

Metric learning mines *within* a batch, so data parallelism changes what a loss means: a
replica that mines only its own slice of the global batch finds fewer negatives, and
its update is not one device's (tensorflow-addons and TF Similarity did this). Here every
step mines the **global** batch by default, and the weights after `k` steps are one
device's on the same global batches:

* JAX, `keras.distribution.DataParallel`: Keras traces the step over global arrays, so
  the loss already sees the global batch; nothing to do.
* TensorFlow, `tf.distribute.MirroredStrategy` / `MultiWorkerMirroredStrategy`: each
  replica's step sees its slice; `batch_loss_and_statistics` gathers every replica's
  labels and embeddings (differentiably) before the distance matrix.
* PyTorch, `torch.distributed` (`torchrun`) after `data_parallel(model)`: the same gather
  across ranks, and gradient averaging hooks in place of DDP's.

How each backend keeps the gradient right is told in `keras_triplet/_backend/`
(`_distribute_*.py`), the only place that reaches another replica.

`mining="per_replica"` (`TripletModel(..., mining="per_replica")`) is the cheaper,
tensorflow-addons behaviour: each replica's slice is mined alone, and the loss (and each
statistic) is the mean over the replicas of its slice's value, whatever the backend
(on JAX's global arrays the step cuts the batch into the replicas' slices itself). The
cross-batch memory is one global queue in both modes: every replica pushes the whole
global batch, so all hold the same queue.
"""

import re
from typing import NamedTuple

import keras
import numpy as np

from keras_triplet import _backend

MINING = ("global", "per_replica")


def check_mining(mining):
    """`mining` if it is one of `MINING`, else a one-line ValueError."""
    if mining not in MINING:
        raise ValueError(
            f"mining must be 'global' (mine the global batch, as one device would) or "
            f"'per_replica' (mine each replica's slice alone); got {mining!r}."
        )
    return mining


class Replicas(NamedTuple):
    """The data parallelism around the current step.

    `count`: how many replicas share the global batch (1: none). `sliced`: whether this
    code sees only its own replica's slice (`tf.distribute`, `torch.distributed`) rather
    than global arrays (JAX's `keras.distribution`, one device).
    """

    count: int
    sliced: bool


def replicas():
    """The `Replicas` of the step being traced or run.

    Example:

    >>> replicas()  # one device, no distribution
    Replicas(count=1, sliced=False)
    """
    count = _backend.distribute.replica_count()
    if count > 1:
        return Replicas(count, True)
    distribution = keras.distribution.distribution()
    if distribution is not None:
        mesh = distribution.device_mesh
        name = distribution.batch_dim_name
        if name in mesh.axis_names:
            return Replicas(int(mesh.shape[list(mesh.axis_names).index(name)]), False)
    return Replicas(1, False)


def check_batch_split(batch_size, num_replicas, samples_per_class=None):
    """One-line ValueErrors for a global batch that data parallelism cannot split.

    `batch_size` is the global batch (None: unknown, not checked). With
    `samples_per_class=K` (P×K batches) each replica's slice must also hold whole
    classes, a multiple of `K` rows, or per-replica mining would cut classes in two.

    Example:

    >>> check_batch_split(32, 4, samples_per_class=4)  # slices of 8 = 2 classes × 4
    >>> check_batch_split(32, 4, samples_per_class=16)
    Traceback (most recent call last):
    ...
    ValueError: A P×K batch of 32 = 2 classes × 16 cannot be sharded over 4 replicas: each replica's slice of 8 rows must hold whole classes (a multiple of K=16); make the number of classes per batch P a multiple of 4.
    """
    if batch_size is None or num_replicas <= 1:
        return
    batch_size, num_replicas = int(batch_size), int(num_replicas)
    if batch_size % num_replicas:
        raise ValueError(
            f"The global batch of {batch_size} does not split evenly over {num_replicas} "
            f"replicas: use a global batch size that is a multiple of {num_replicas}."
        )
    if samples_per_class:
        k, share = int(samples_per_class), batch_size // num_replicas
        if share % k:
            raise ValueError(
                f"A P×K batch of {batch_size} = {batch_size // k} classes × {k} cannot be "
                f"sharded over {num_replicas} replicas: each replica's slice of {share} rows "
                f"must hold whole classes (a multiple of K={k}); make the number of classes "
                f"per batch P a multiple of {num_replicas}."
            )


def fed_replicas(model):
    """How many replicas split each batch that `model.fit` receives in this process.

    `tf.distribute`: the strategy's replicas (every worker's `fit` receives global
    batches). JAX's `keras.distribution`: the devices along the batch axis of this
    process (each process feeds its own part of the global batch). Under
    `torch.distributed` each rank's `fit` already receives its own slice: 1.

    Example:

    >>> import keras
    >>> fed_replicas(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))  # one device
    1
    """
    count = _backend.distribute.strategy_replica_count(model)
    if count > 1:
        return count
    if _backend.distribute.replica_count() > 1:  # torch.distributed: slices are fed
        return 1
    return max(1, replicas().count // _backend.distribute.process_count())


def samples_per_class_of(x):
    """`K` of the P×K batches `x` yields when it says so (a `PKPyDataset`), else None."""
    sampler = getattr(x, "sampler", None)
    k = getattr(sampler, "samples_per_class", None)
    return int(k) if isinstance(k, (int, np.integer)) else None


def check_fit_data(x, batch_size, num_replicas, samples_per_class=None, steps=None):
    """The batches `fit` / `evaluate` will cut from `x`, checked against the replicas
    before the framework sees them: one-line ValueErrors (see `check_batch_split`) for a
    batch, the last, partial one included, that does not split evenly over
    `num_replicas`, or (`samples_per_class=K`, P×K batches under per-replica mining)
    whose replicas' slices would cut classes.

    Checked: in-memory arrays (or a tuple / dict of them) cut into `batch_size` rows
    (Keras' default 32; `steps` batches when given), a `PKPyDataset` (every batch full),
    a `tf.data.Dataset` whose batch size is static (`drop_remainder=True`, or
    `PKSampler.as_dataset`). A `tf.data.Dataset` whose last batch may be partial comes
    back with a check of each batch's rows in its pipeline, which fails, with the same
    message, on the batch that does not split (before any step sees it). Any other input
    (a generator, a `PyDataset`) comes back unchecked.

    Returns:
        `x`, or the checked `tf.data.Dataset`.

    Example:

    >>> import numpy as np
    >>> x = check_fit_data(np.ones((32, 3)), 8, 4)  # 4 batches of 8, 2 rows per replica
    >>> x = check_fit_data(np.ones((30, 3)), 8, 4)
    Traceback (most recent call last):
    ...
    ValueError: The last batch holds 6 rows (30 rows in batches of 8) and does not split evenly over 4 replicas: keep a multiple of the batch size (the first 24 rows), or pad the data to one.
    """
    if num_replicas <= 1 or x is None:
        return x
    k = samples_per_class
    if samples_per_class_of(x) is not None:  # PKPyDataset: every batch is full
        check_batch_split(x.sampler.batch_size, num_replicas, k)
        return x
    if type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
        return _check_dataset(x, num_replicas, k)
    leaves = keras.tree.flatten(x)
    if not leaves or not all(isinstance(v, np.ndarray) and v.ndim for v in leaves):
        return x
    n, batch_size = len(leaves[0]), int(batch_size or 32)
    check_batch_split(min(batch_size, n), num_replicas, k)
    last = n % batch_size
    if last and n > batch_size and (steps is None or steps * batch_size > n - last):
        try:
            check_batch_split(last, num_replicas, k)
        except ValueError:
            raise ValueError(
                f"The last batch holds {last} rows ({n} rows in batches of {batch_size}) and "
                f"does not split evenly over {num_replicas} replicas"
                + (f" in slices of whole classes of K={k}" if k else "")
                + f": keep a multiple of the batch size (the first {n - last} rows), or pad "
                "the data to one."
            ) from None
    return x


def _check_dataset(dataset, num_replicas, samples_per_class):
    """`check_fit_data` of a `tf.data.Dataset` (see there)."""
    import tensorflow as tf

    leaves = tf.nest.flatten(dataset.element_spec)
    rows = leaves[0].shape[0] if leaves and leaves[0].shape.rank else None
    if rows is not None:
        check_batch_split(rows, num_replicas, samples_per_class)
        return dataset
    multiple = num_replicas * (samples_per_class or 1)
    message = (
        f"A batch of the tf.data.Dataset does not split evenly over {num_replicas} replicas"
        + (f" in slices of whole classes of K={samples_per_class}" if samples_per_class else "")
        + f" (the last, partial batch?): batch with drop_remainder=True and a batch size "
        f"that is a multiple of {multiple}."
    )

    def check(*batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        with tf.control_dependencies([tf.debugging.assert_equal(size % multiple, 0, message=message)]):
            return tf.nest.map_structure(tf.identity, batch if len(batch) > 1 else batch[0])

    return dataset.map(check)


_DATASET_SPLIT = re.compile(r"A batch of the tf\.data\.Dataset does not split evenly[^\]\n]*?of \d+\.")


def raise_split_error_of(error):
    """The one-line ValueError of `_check_dataset`'s check when `error` (what the
    framework raised out of the input pipeline) carries it; nothing otherwise."""
    found = _DATASET_SPLIT.search(str(error))
    if found:
        raise ValueError(found.group(0)) from None


def pad_for_replicas(x, batch_size):
    """`(x, batch_size, n)` for a prediction over global arrays: JAX's `keras.distribution`
    shards every batch over the devices, so the last, partial batch of `n` rows must be
    a multiple of their number too. In-memory arrays (or a tuple / dict of them) get
    copies of their last row appended and a batch size rounded to a multiple of the
    replicas; keep the first `n` outputs. Anything else, and anything on one device,
    comes back unchanged, with `n = None` (keep every output).

    Example:

    >>> import numpy as np
    >>> x, batch_size, n = pad_for_replicas(np.ones((5, 2)), 256)  # one device
    >>> x.shape, batch_size, n
    ((5, 2), 256, None)
    """
    count = replicas().count
    leaves = keras.tree.flatten(x)
    if count == 1 or not leaves or not all(isinstance(v, np.ndarray) for v in leaves):
        return x, batch_size, None
    n = len(leaves[0])
    pad = -n % count
    batch_size = max(count, int(batch_size) // count * count)
    if pad:
        x = keras.tree.map_structure(lambda v: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]), x)
    return x, batch_size, n


def gather(x):
    """Every replica's `x`, concatenated along axis 0 in replica order (differentiable)."""
    return _backend.distribute.all_gather(x)


def loss_scale():
    """The factor the returned loss needs so that the framework's aggregation of the
    replicas' gradients gives one device's update (1 outside `tf.distribute`)."""
    count = _backend.distribute.replica_count()
    return 1.0 if count == 1 else _backend.distribute.loss_scale(count)


def replica_mean(x):
    """What a replica logs of a per-replica value `x`: its mean over the replicas (the
    gradient stays `x`'s own). Identity without replicas, and under `tf.distribute`,
    whose metrics average over the replicas themselves."""
    if _backend.distribute.replica_count() == 1:
        return x
    return _backend.distribute.replica_mean(x)


def data_parallel(model):
    """Prepares `model` for data-parallel `fit` under `torch.distributed` (PyTorch backend).

    Keras 3.15's PyTorch `fit` has no data-parallel mode, so under `torchrun` every
    process runs its own `model.fit` on its shard of each global batch (e.g.
    `PKSampler(..., num_shards=world_size, shard_index=rank)`, or consecutive slices of
    the global batch). This call, once the model is built and the process group
    initialised, makes the training match one process on the global batches:

    * every rank starts from rank 0's weights (a broadcast);
    * each step gathers all ranks' labels and embeddings before mining (differentiable:
      each rank's rows keep their own gradient path). The gather is turned on for the
      whole process, not for `model` alone: from this call on, every `TripletModel`
      step (and `step.batch_loss_and_statistics`) in this process gathers across the
      ranks, so every rank must run the same steps in the same order;
    * each trainable parameter's gradient is averaged over the ranks (hooks, as
      `torch.nn.parallel.DistributedDataParallel` does), which with the gather's
      backward gives one process's gradient.

    When Keras' own PyTorch data parallelism (`keras.distribution.DataParallel`) is in
    use, do not call this: the step then sees global arrays as on JAX, and
    `TripletModel` needs nothing more. On TensorFlow and JAX use the framework's engine
    (`tf.distribute`, `keras.distribution`); this raises a ValueError there.

    Returns:
        `model`.
    """
    if keras.backend.backend() != "torch":
        raise ValueError(
            "data_parallel(model) is for the PyTorch backend (torch.distributed); on "
            f"{keras.backend.backend()} use "
            + (
                "tf.distribute.MirroredStrategy / MultiWorkerMirroredStrategy."
                if keras.backend.backend() == "tensorflow"
                else "keras.distribution.set_distribution(keras.distribution.DataParallel())."
            )
        )
    if keras.distribution.distribution() is not None:
        raise ValueError(
            "A keras.distribution is set: Keras already runs the step data-parallel over "
            "global arrays; data_parallel(model) is for torchrun without it."
        )
    if not model.trainable_weights:
        raise ValueError(
            "data_parallel(model) needs a built model (its weights are broadcast from rank "
            "0): give the embedder a keras.Input, or call model.build(input_shape) first."
        )
    _backend.distribute.activate(model)
    return model
