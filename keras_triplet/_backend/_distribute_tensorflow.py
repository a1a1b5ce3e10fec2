"""Data parallelism under `tf.distribute` (`MirroredStrategy`, `MultiWorkerMirroredStrategy`).

Why it is per backend: Keras' TensorFlow `train_step` runs once per replica (in threads
on one host, in processes over several) on that replica's slice of the global batch, and
only `tf.distribute`'s replica context can reach the other replicas.

How the gradient is kept right (measured against one device, `tests/test_distributed.py`):

* `ReplicaContext.all_gather` is differentiable: its gradient is the *sum over replicas*
  of the upstream gradients, restricted to this replica's own rows;
* Keras' convention under `tf.distribute` (its own losses follow it) is that a replica's
  loss is divided by the number of replicas `R`: the optimizer sums the replicas'
  gradients, and the loss tracker multiplies the logged value back by `R`.

Every replica computes the same global loss `L`; returning `L / R` gives each replica
`Σ_r (1/R) ∂L/∂e_own = ∂L/∂e_own` through the gather, and Keras' sum over replicas is
one device's `∂L/∂θ`.
"""

import tensorflow as tf


def replica_count():
    """The number of replicas in sync, inside a replica's step; 1 elsewhere (no strategy,
    or the cross-replica context, where no step runs)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return 1
    return int(context.num_replicas_in_sync)


def process_count():
    """1: under `MultiWorkerMirroredStrategy` every worker's `fit` receives *global*
    batches (tf.data shards the data, not the batches)."""
    return 1


def strategy_replica_count(model):
    """The replicas of the strategy `model` was built under, which split every batch that
    `model.fit` receives (Keras keeps that strategy as `model.distribute_strategy`)."""
    strategy = getattr(model, "distribute_strategy", None)
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def all_gather(x):
    """The replicas' `x` concatenated along axis 0 in replica order (differentiable)."""
    context = tf.distribute.get_replica_context()
    devices = getattr(context.strategy.extended, "worker_devices", ())
    if _multi_worker(context.strategy) and len(devices) == 1:
        # TensorFlow 2.21: with one replica per worker, `all_gather` sends each tensor to
        # its own `.device`, which is "" inside Keras' `tf.function` (no device scope),
        # and fails with "ValueError: destinations can not be empty". Pin it to the device.
        with tf.device(devices[0]):
            return context.all_gather(tf.identity(x), axis=0)
    return context.all_gather(x, axis=0)


def loss_scale(count):
    """Keras' `tf.distribute` convention: each replica returns its loss divided by `R`."""
    return 1.0 / count


def replica_mean(x):
    """`x` as logged: Keras' metrics already average a value over the replicas."""
    return x


# ---------------------------------------------------------------------------------------
# Keras 3.15 under `MultiWorkerMirroredStrategy`: two workarounds of Keras' TensorFlow
# trainer, whose code fails there for any Keras model (the first failure was seen with a
# plain `keras.Sequential` and `loss="mse"`; the second is in the same code path, after
# every step). Remove both (and their callers, `TripletModel._maybe_symbolic_build` and
# `TripletModel.compute_metrics`' call of `step_logs`) once a plain model's `fit` runs
# under `MultiWorkerMirroredStrategy` on two localhost workers (set up as in
# `tests/distributed/tensorflow_multiworker.py`).


def _multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def local_build_batch(model, iterator):
    """Works around a Keras 3.15 bug under `MultiWorkerMirroredStrategy`; None elsewhere.

    Keras' TensorFlow `_maybe_symbolic_build` (`keras/src/backend/tensorflow/trainer.py`)
    builds the model on the first batch, which it takes as
    `strategy.reduce("MEAN", batch, axis=None)`: `CollectiveAllReduceStrategy` cannot
    reduce the `(x, y)` tuple of `PerReplica` values (`ValueError: Attempt to convert a
    value (PerReplica:{...}) ... to a Tensor`), so `fit` fails before its first step for
    any Keras model. Only the batch's shapes matter to the build, so this returns the
    first batch's values on this worker's first replica instead. Remove it (and the
    override calling it, `TripletModel._maybe_symbolic_build`) once Keras' own
    `_maybe_symbolic_build` runs under `MultiWorkerMirroredStrategy`.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if iterator is None or not _multi_worker(strategy):
        return None
    for _, _, it in iterator:
        batch = next(it)
        return tf.nest.map_structure(
            lambda x: (
                strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues)
                else x
            ),
            batch,
        )
    return None


def step_logs(logs):
    """A step's logs as Keras 3.15 can reduce them under `MultiWorkerMirroredStrategy`.

    After each step Keras' `reduce_per_replica` (`keras/src/backend/tensorflow/trainer.py`)
    takes, under that strategy only, `strategy.reduce("MEAN", value, axis=0)` of every
    log, which fails on the scalars that every step logs (`ValueError: Invalid reduction
    dimension 0 for input with 0 dimensions`). A `[1]` log reduces to the scalar mean over
    the replicas (the same value on each: the statistics are the global batch's).
    Elsewhere the logs are returned as they are.
    """
    if not _multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
