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
    return tf.distribute.get_replica_context().all_gather(x, axis=0)


def loss_scale(count):
    """Keras' `tf.distribute` convention: each replica returns its loss divided by `R`."""
    return 1.0 / count


def replica_mean(x):
    """`x` as logged: Keras' metrics already average a value over the replicas."""
    return x
