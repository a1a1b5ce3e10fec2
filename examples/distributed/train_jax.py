"""Data-parallel `TripletModel` training on JAX: every device, global-batch mining.

    KERAS_BACKEND=jax python examples/distributed/train_jax.py
    # no accelerator? pretend the CPU is 4 devices:
    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax python examples/distributed/train_jax.py

`keras.distribution.DataParallel` shards each global P×K batch over the devices and
traces the step over global arrays, so the loss mines the global batch and the update
is one device's.

Several hosts (or processes): start the same script on every one with the coordinator's
address, the number of processes and its own id; it calls
`keras.distribution.initialize` (`jax.distributed.initialize`), and each process feeds
its shard of every global batch, `PKPyDataset(..., num_shards=jax.process_count(),
shard_index=jax.process_index())` (`P` a multiple of the number of devices), with
`DataParallel(auto_shard_dataset=False)`: the data is sharded already. On CPU, JAX needs
`jax_cpu_collectives_implementation="gloo"` for collectives across processes (set
below). Two processes on one machine:

    KERAS_BACKEND=jax python examples/distributed/train_jax.py --coordinator localhost:12355 --num-processes 2 --process-id 0 &
    KERAS_BACKEND=jax python examples/distributed/train_jax.py --coordinator localhost:12355 --num-processes 2 --process-id 1

(`tests/test_distributed.py` checks that 2 processes train as one device.)
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_triplet  # noqa: E402


def initialize(coordinator, num_processes, process_id):
    """Joins the other processes (before anything else runs on JAX)."""
    import jax

    # CPU collectives across processes (no effect on GPU / TPU collectives). Asking JAX
    # for its backend here would start it, which initialize refuses.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator, num_processes, process_id)


def main(epochs=5, steps_per_epoch=None, mining="global", seed=0):
    import jax

    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    )
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    # P = 8 digits × K = 8 images: 64 per global batch, P a multiple of 1, 2, 4 or 8 devices;
    # each process feeds its shard (all of it with one process).
    data = keras_triplet.PKPyDataset(
        x,
        y,
        classes_per_batch=8,
        samples_per_class=8,
        seed=seed,
        num_shards=jax.process_count(),
        shard_index=jax.process_index(),
    )
    keras.utils.set_random_seed(seed)  # the same initial weights on every host
    embedder = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(32)]
    )
    model = keras_triplet.TripletModel(embedder, mining=mining)
    model.compile(optimizer="adam", loss=keras_triplet.losses.TripletLoss(margin=0.2, miner="semi-hard"))
    model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=2)
    if jax.process_count() > 1:
        # Keras' predict cannot fetch outputs that span other processes' devices: every
        # process embeds on its own devices, with a copy of the (replicated) weights.
        weights = model.get_weights()
        keras.distribution.set_distribution(None)
        model = keras_triplet.TripletModel(keras.models.clone_model(embedder))
        model.set_weights(weights)
    retrieval = keras_triplet.metrics.retrieval_metrics(model.embed(x), y, ks=(1,))
    print(f"{len(devices)} devices, mining={mining}: MAP@R {retrieval['map@r']:.3f}")
    return retrieval


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mining", default="global", choices=("global", "per_replica"))
    parser.add_argument("--coordinator", help="host:port of process 0, with several processes")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()
    if args.num_processes > 1:
        initialize(args.coordinator, args.num_processes, args.process_id)
    main(epochs=args.epochs, mining=args.mining)
