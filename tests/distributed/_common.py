"""What the per-backend distributed checks share: the data, the model, one training run.

Each `*_checks.py` script runs in its own subprocess (the device set-up must happen
before the framework starts), trains the same small `TripletModel` on one device and
under data parallelism on the same global batches, and prints one JSON line of
differences that `tests/test_distributed.py` asserts on.
"""

import json

import keras
import numpy as np

from keras_triplet import TripletModel, losses
from keras_triplet.metrics import RetrievalEvaluation

GLOBAL_BATCH = 32  # P = 8 classes × K = 4
SAMPLES_PER_CLASS = 4
STEPS = 3
INPUT_DIM, EMBEDDING_DIM = 10, 8
LEARNING_RATE = 0.5  # plain SGD: a wrong gradient scale shows in the weights (Adam would hide it)

# (name, loss arguments, memory size, mining); the reference of a per-replica case mines
# each slice alone on one device.
CASES = [
    ("semi-hard", {"miner": "semi-hard"}, 0, "global"),
    ("batch-hard", {"miner": "batch-hard"}, 0, "global"),
    # Step 1 (empty memory) is plain batch-all; steps 2-3 read the global queue.
    ("batch-all+memory", {"miner": "batch-all"}, 48, "global"),
    ("semi-hard/per-replica", {"miner": "semi-hard"}, 0, "per_replica"),
    # A pair loss (every pair of the global batch and of the global queue).
    ("contrastive+memory", {"loss": "contrastive"}, 48, "global"),
]


def make_loss(loss_kwargs):
    """The case's metric loss: a triplet loss with these arguments, or a named pair loss."""
    kwargs = dict(loss_kwargs)
    if kwargs.pop("loss", "triplet") == "contrastive":
        return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, **kwargs)
    return losses.TripletLoss(margin=0.2, **kwargs)


def data():
    """`STEPS` global P×K batches, classes contiguous, each replica's slice whole classes."""
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, INPUT_DIM)).astype("float32")
    classes = GLOBAL_BATCH // SAMPLES_PER_CLASS
    y = np.concatenate(
        [np.repeat(rng.permutation(12)[:classes], SAMPLES_PER_CLASS) for _ in range(STEPS)]
    ).astype("int32")
    return x, y


def model(loss_kwargs, memory_size=0, mining="global", loss=None):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [
            keras.Input((INPUT_DIM,)),
            keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)),
            keras.layers.Dense(EMBEDDING_DIM),
        ]
    )
    triplet_model = TripletModel(embedder, memory_size=memory_size, mining=mining)
    triplet_model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=loss or make_loss(loss_kwargs),
    )
    return triplet_model


def sliced_loss(loss_kwargs, num_slices):
    """A plain Keras loss: the mean over `num_slices` consecutive slices of the triplet loss
    of each slice alone (what per-replica mining must equal, on one device)."""
    triplet = make_loss(loss_kwargs)

    def loss(y_true, y_pred):
        share = GLOBAL_BATCH // num_slices
        parts = [
            triplet(y_true[r * share : (r + 1) * share], y_pred[r * share : (r + 1) * share])
            for r in range(num_slices)
        ]
        return sum(parts) / num_slices

    return loss


class FirstLogs(keras.callbacks.Callback):
    """The logs of the first step (Keras' running means are that step's values)."""

    def __init__(self):
        super().__init__()
        self.logs = None

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.logs = {k: float(v) for k, v in (logs or {}).items()}


def weights(triplet_model):
    return np.concatenate([np.ravel(w) for w in triplet_model.embedder.get_weights()])


def train(triplet_model, x, y, batch_size=GLOBAL_BATCH, evaluation=False):
    """Fits `STEPS` steps; returns (first step's logs, flat weights, memory labels,
    end-of-epoch logs). `evaluation`: with a `RetrievalEvaluation` callback and a
    `model.embed` of the data (its mean absolute embedding is logged as `embed`)."""
    first = FirstLogs()
    callbacks = [first]
    if evaluation:
        # 90 rows: the last batch of 26 does not split over 4 devices (embed pads it).
        callbacks.append(RetrievalEvaluation(x[:90], y[:90], ks=(1,), batch_size=GLOBAL_BATCH))
    history = triplet_model.fit(
        x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=callbacks
    )
    memory = None
    if triplet_model.memory is not None:
        memory = np.asarray(keras.ops.convert_to_numpy(triplet_model.memory.labels.value)).tolist()
    end = {k: float(v[-1]) for k, v in history.history.items() if k.startswith("val_")}
    if evaluation:
        end["embed"] = triplet_model.embed(x[:90], batch_size=GLOBAL_BATCH)
    return first.logs, weights(triplet_model), memory, end


def compare(reference, distributed):
    """The largest differences between two `train` results, as JSON-ready floats."""
    (logs_1, w_1, memory_1, end_1), (logs_n, w_n, memory_n, end_n) = reference, distributed
    stats = {k: abs(logs_1[k] - logs_n[k]) for k in logs_1 if k in logs_n and k != "loss"}
    evaluation = {k: float(np.max(np.abs(end_1[k] - end_n[k]))) for k in end_1}
    return {
        "evaluation_diff": max(evaluation.values()) if evaluation else 0.0,
        "evaluation_names": sorted(evaluation),
        "first_loss": logs_1["loss"],
        "loss_diff": abs(logs_1["loss"] - logs_n["loss"]),
        "stat_diff": max(stats.values()) if stats else 0.0,
        "stat_names": sorted(stats),
        "weight_diff": float(np.max(np.abs(w_1 - w_n))),
        "weight_change": float(np.max(np.abs(w_1 - weights_at_start()))),
        "memory_equal": memory_1 == memory_n,
    }


_START = []


def weights_at_start():
    if not _START:
        _START.append(weights(model({"miner": "batch-all"})))
    return _START[0]


def run_example(backend, **kwargs):
    """Runs `examples/distributed/train_<backend>.py`'s `main` for 2 steps; its MAP@R."""
    import importlib.util
    import os

    path = os.path.join(
        os.path.dirname(__file__), "..", "..", "examples", "distributed", f"train_{backend}.py"
    )
    spec = importlib.util.spec_from_file_location(f"train_{backend}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return float(module.main(epochs=1, steps_per_epoch=2, **kwargs)["map@r"])


def emit(results):
    print("RESULTS " + json.dumps(results))


def bad_setup_errors(x, y):
    """What `fit` / `evaluate` raise for set-ups that cannot be split over the replicas
    (2 or 4): `{case: "ValueError: <message>"}`, any other outcome spelled out."""
    import tensorflow as tf

    from keras_triplet import PKPyDataset

    # 6 classes of 8; P = 3 classes × K = 4 = 12 rows: 2 replicas get 6 rows, 4 get 3,
    # neither whole classes of 4.
    px, py = x[:48], np.repeat(np.arange(6), 8).astype("int32")
    cases = {
        "last_batch": lambda m: m.fit(x[:91], y[:91], batch_size=32, verbose=0),
        "batch_size": lambda m: m.fit(x[:62], y[:62], batch_size=31, verbose=0),
        # Only a partial batch: the check fails before any step is compiled.
        "dataset_last_batch": lambda m: m.fit(
            tf.data.Dataset.from_tensor_slices((x[:27], y[:27])).batch(32), verbose=0
        ),
        "evaluate_last_batch": lambda m: m.evaluate(x[:91], y[:91], batch_size=32, verbose=0),
        "pk_dataset": lambda m: m.fit(
            PKPyDataset(px, py, classes_per_batch=3, samples_per_class=4), verbose=0
        ),
        "pk_hint": lambda m: m.fit(px, py, batch_size=12, samples_per_class=4, verbose=0),
    }
    if keras.backend.backend() == "jax":  # the step's own check, at trace time
        cases["pk_step"] = lambda m: m.fit(
            (batch for batch in [(px[:12], py[:12])]), steps_per_epoch=1, samples_per_class=4, verbose=0
        )
    errors = {}
    for name, call in cases.items():
        mining = "per_replica" if name.startswith("pk") else "global"
        try:
            call(model({"miner": "batch-all"}, mining=mining))
            errors[name] = "no error"
        except Exception as error:  # noqa: BLE001 - what is raised is the result
            errors[name] = f"{type(error).__name__}: {error}"
    return errors
