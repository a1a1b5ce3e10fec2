"""Data parallelism where the step sees the global batch (JAX, any backend without replicas).

Keras' `keras.distribution.DataParallel` on JAX traces one step over *global* arrays,
sharded along the batch: the loss already sees every replica's rows and `jax.grad` of
the global loss is one device's gradient. Nothing is gathered and nothing is rescaled.
"""


def process_count():
    """How many processes each feed their own part of every global batch (JAX's
    multi-process `keras.distribution`, after `keras.distribution.initialize()`)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def strategy_replica_count(model):
    """Replicas that split each batch `model.fit` receives by a strategy of their own
    (`tf.distribute`); none here."""
    return 1


def replica_count():
    """How many replicas each hold a slice of this step's batch that this code cannot see."""
    return 1


def all_gather(x):
    return x


def loss_scale(count):
    return 1.0


def replica_mean(x):
    return x


def step_logs(logs):
    """A step's logs, as they are (a Keras 3.15 workaround under `tf.distribute` only)."""
    return logs
