"""Data-parallel step time: global-batch mining against per-replica mining, 1, 2 and 4 devices.

For each number of devices and each miner, times `TripletModel.train_on_batch` on one
global P×K batch (B = 256 = 32 classes × 8, a 64 → 256 → 64 MLP, SGD) with
`mining="global"` (every replica's labels and embeddings gathered, one `[B, B]`
distance matrix) and `mining="per_replica"` (each replica mines its `[B/R, B/R]` slice
alone), and reports the median step time (the two take turns within each round) and
the overhead of global over per-replica mining. On TensorFlow it also times the gather alone (`ReplicaContext.all_gather` of the
`[B/R, D]` embeddings and `[B/R]` labels, in a `tf.function` under the strategy).

    KERAS_BACKEND=jax python benchmarks/distributed.py          # keras.distribution.DataParallel
    KERAS_BACKEND=tensorflow python benchmarks/distributed.py   # tf.distribute.MirroredStrategy

The devices are virtual CPU devices (`--xla_force_host_platform_device_count`, logical
TensorFlow CPUs) that share the machine's cores: the absolute times say nothing about
real accelerators; the overhead of global over per-replica mining is what to read.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_DEVICES = 4
BACKEND = os.environ.get("KERAS_BACKEND", "jax")
if BACKEND == "jax":
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={MAX_DEVICES}")
elif BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration() for _ in range(MAX_DEVICES)],
    )
else:
    sys.exit("benchmarks/distributed.py runs on KERAS_BACKEND=jax or tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_triplet import TripletModel, losses  # noqa: E402

INPUT_DIM, DIM = 64, 64


def data(classes, per_class):
    rng = np.random.default_rng(0)
    y = np.repeat(rng.permutation(4 * classes)[:classes], per_class).astype("int32")
    x = rng.normal(size=(y.size, INPUT_DIM)).astype("float32")
    return x, y


def make_model(miner, mining):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [keras.Input((INPUT_DIM,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(DIM)]
    )
    model = TripletModel(embedder, mining=mining)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=losses.TripletLoss(margin=0.2, miner=miner))
    return model


def time_calls(fns, steps, rounds):
    """Median ms per call of each of `fns`, which take turns within each round (so that
    a busy machine slows them alike)."""
    for fn in fns:
        fn()
        fn()  # compiled and warm
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            spent.append((time.perf_counter() - start) / steps * 1e3)
    return [statistics.median(spent) for spent in times]


def in_context(devices):
    """A context manager placing models and steps on `devices` (None: the default)."""
    if BACKEND == "jax":
        import contextlib

        import jax

        distribution = (
            keras.distribution.DataParallel(devices=jax.devices()[:devices]) if devices > 1 else None
        )

        @contextlib.contextmanager
        def scope():
            keras.distribution.set_distribution(distribution)
            try:
                yield None
            finally:
                keras.distribution.set_distribution(None)

        return scope()
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    return strategy.scope()


def step_function(model, x, y):
    """One training step on the global batch `(x, y)`, as `fit` runs it. (Under
    `tf.distribute`, `train_on_batch` hands every replica the whole batch; `fit` splits
    it, from a distributed dataset.)"""
    if BACKEND == "jax":
        return lambda: model.train_on_batch(x, y)
    strategy = model.distribute_strategy
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    model.make_train_function()
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), model.train_function(iterator))


def gather_ms(devices, batch, steps, rounds):
    """TensorFlow: one all_gather of the replicas' embeddings and labels."""
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    share = batch // devices
    embeddings = tf.random.normal((share, DIM))
    labels = tf.zeros((share,), "int32")

    @tf.function
    def gather():
        def replica():
            context = tf.distribute.get_replica_context()
            return context.all_gather(embeddings, axis=0), context.all_gather(labels, axis=0)

        return strategy.run(replica)

    def run():
        embeddings, _ = strategy.experimental_local_results(gather())[0]
        return embeddings.numpy()

    return time_calls([run], steps, rounds)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=32, help="P (a multiple of 4)")
    parser.add_argument("--per-class", type=int, default=8, help="K")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--miners", default="semi-hard,batch-all")
    parser.add_argument("--devices", default=f"1,2,{MAX_DEVICES}", help="comma-separated, at most 4")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device_counts = [int(d) for d in args.devices.split(",")]
    x, y = data(args.classes, args.per_class)
    batch = x.shape[0]
    if not args.rows_only:
        print(
            f"backend {BACKEND}, global batch {batch} = {args.classes} × {args.per_class}, MLP {INPUT_DIM}→256→{DIM}"
        )
        head = "| devices | miner | global ms/step | per-replica ms/step | global over per-replica |"
        if BACKEND == "tensorflow":
            head += " gather ms |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1), flush=True)
    if BACKEND == "tensorflow" and len(device_counts) > 1:
        # One process per device count: a second MirroredStrategy over other logical
        # devices in the same process fails inside TensorFlow's collectives.
        for devices in device_counts:
            argv = [a for a in sys.argv[1:] if not a.startswith("--devices")]
            subprocess.run(
                [sys.executable, __file__, *argv, f"--devices={devices}", "--rows-only"], check=True
            )
        return
    for devices in device_counts:
        gather = (
            f" {gather_ms(devices, batch, args.steps * 5, args.rounds):.2f} |"
            if BACKEND == "tensorflow"
            else ""
        )
        for miner in args.miners.split(","):
            with in_context(devices):
                models = [make_model(miner, mining) for mining in ("global", "per_replica")]
                steps = [step_function(model, x, y) for model in models]
                ms = dict(zip(("global", "per_replica"), time_calls(steps, args.steps, args.rounds)))
            overhead = ms["global"] / ms["per_replica"] - 1
            print(
                f"| {devices} | {miner} | {ms['global']:.2f} | {ms['per_replica']:.2f} | "
                f"{overhead:+.0%} |{gather}",
                flush=True,
            )


if __name__ == "__main__":
    main()
