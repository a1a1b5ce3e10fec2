"""Data-parallel `TripletModel` training on TensorFlow: `tf.distribute`, global-batch mining.

    KERAS_BACKEND=tensorflow python examples/distributed/train_tensorflow.py
    # no GPU? split the CPU into 2 logical devices:
    KERAS_BACKEND=tensorflow python examples/distributed/train_tensorflow.py --cpu-replicas 2

`tf.distribute.MirroredStrategy` runs one replica per local GPU (or logical CPU); Keras
splits each global P×K batch into consecutive slices, one per replica, and
`TripletModel`'s step gathers every replica's labels and embeddings before mining, so
the loss and the logged statistics are the global batch's and the update is one
device's.

Several hosts: `MultiWorkerMirroredStrategy`, the same script started on every worker
with its `TF_CONFIG` (here worker 0 of two; worker 1 gets `"index": 1`):

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        KERAS_BACKEND=tensorflow python examples/distributed/train_tensorflow.py --multi-worker
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402


def strategy_for(multi_worker=False, cpu_replicas=0):
    if multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas:  # before anything else touches the devices
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)],
        )
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def main(strategy, epochs=5, steps_per_epoch=None, mining="global", seed=0):
    import keras
    from sklearn.datasets import load_digits

    import keras_triplet

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    # Global batches of P = 8 digits × K = 8 images; every worker draws the same sequence
    # from the seed, and Keras gives each replica P / replicas whole classes.
    sampler = keras_triplet.PKSampler(y, classes_per_batch=8, samples_per_class=8, seed=seed)
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        embedder = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(32)]
        )
        model = keras_triplet.TripletModel(embedder, mining=mining)
        model.compile(optimizer="adam", loss=keras_triplet.losses.TripletLoss(margin=0.2, miner="semi-hard"))
    model.fit(
        sampler.as_dataset(x),
        steps_per_epoch=steps_per_epoch or sampler.steps_per_epoch,
        epochs=epochs,
        verbose=2,
        # K: fit checks that every replica's slice holds whole classes (per-replica mining).
        samples_per_class=sampler.samples_per_class,
    )
    retrieval = keras_triplet.metrics.retrieval_metrics(model.embed(x), y, ks=(1,))
    print(f"{strategy.num_replicas_in_sync} replicas, mining={mining}: MAP@R {retrieval['map@r']:.3f}")
    return retrieval


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mining", default="global", choices=("global", "per_replica"))
    parser.add_argument("--cpu-replicas", type=int, default=0)
    parser.add_argument("--multi-worker", action="store_true")
    args = parser.parse_args()
    main(strategy_for(args.multi_worker, args.cpu_replicas), epochs=args.epochs, mining=args.mining)
