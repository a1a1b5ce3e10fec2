"""Training throughput: `TripletModel.fit` with online mining vs a plain loss.

Measures samples per second of `fit` for the same small CNN (28×28×1 inputs, B = 256,
P = 16 classes × K = 16) trained

* `softmax`: as a classifier (a Dense head, sparse categorical cross-entropy), a plain
  `keras.Model`: the cost of the network alone, no mining;
* `triplet-model-mse`: as a `TripletModel` compiled with a plain (non-metric) loss
  (MSE to a fixed target per class): the TripletModel step without any distance matrix;
* `semi-hard` / `batch-hard` / `batch-all`: `TripletModel` with `TripletLoss` and that
  miner (one distance matrix, the mining statistics at `TripletModel`'s default,
  `statistics_freq="auto"`: every 10th step); `semi-hard/1`,
  `semi-hard/10` etc.: the same with `TripletModel(statistics_freq=1)` (every step) or
  `10` (`--statistics-freq auto,1,10` adds those kinds for every miner).

The mining overhead is the extra time per sample of a mining run over a plain-loss run,
`plain samples/s / mining samples/s − 1`, against both plain baselines: the
`TripletModel` trained with MSE (the same network and step, a loss that needs no
mining) and the softmax classifier. The kinds take turns within each round of timed
epochs, and the median over rounds is reported: samples per second (wall clock) and the
process's CPU time per step (`time.process_time`, all threads), which other jobs on a
shared machine inflate far less; the overhead is given by both.

Run once per backend (compiled as Keras compiles `fit` by default; `--jit-compile true`
adds XLA on TensorFlow):

    KERAS_BACKEND=jax python benchmarks/training.py
    KERAS_BACKEND=tensorflow python benchmarks/training.py
    KERAS_BACKEND=torch python benchmarks/training.py

Whole-`fit` comparisons vary by ±10 % from run to run on a small machine;
`benchmarks/mining.py` times the mining part of the step alone.

Synthetic data: the numbers measure compute, not learning.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_triplet import TripletModel, losses  # noqa: E402


def small_cnn(size, dim):
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(dim),
        ],
        name="cnn",
    )


def make_model(kind, size, dim, classes, jit_compile):
    keras.utils.set_random_seed(0)
    embedder = small_cnn(size, dim)
    if kind == "softmax":
        model = keras.Sequential([embedder, keras.layers.Dense(classes)])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif kind == "triplet-model-mse":
        model = TripletModel(embedder)
        loss = "mse"
    else:
        miner, _, freq = kind.partition("/")
        model = TripletModel(embedder, statistics_freq=int(freq) if freq else "auto")
        loss = losses.TripletLoss(margin=0.2, miner=miner)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit_compile)
    return model


def data(n_batches, batch_size, classes_per_batch, size, dim, classes, seed=0):
    rng = np.random.default_rng(seed)
    k = batch_size // classes_per_batch
    x = rng.normal(size=(n_batches * batch_size, size, size, 1)).astype("float32")
    y = np.concatenate(
        [np.repeat(rng.choice(classes, classes_per_batch, replace=False), k) for _ in range(n_batches)]
    ).astype("int32")
    targets = np.eye(classes, dim, dtype="float32")[y]
    return x, y, targets


def prepare(kind, args, x, y, targets):
    """A compiled model of this kind, warmed up (traced / compiled) on full-size batches."""
    model = make_model(kind, args.size, args.dim, args.classes, args.jit_compile)
    target = targets if kind == "triplet-model-mse" else y
    model.fit(
        x[: 2 * args.batch_size],
        target[: 2 * args.batch_size],
        batch_size=args.batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    return model, target


def measure_all(kinds, args):
    """Median samples/s and CPU ms per step, per kind. The kinds take turns, one timed
    epoch each per round, so that drifts of the machine's speed hit all of them alike."""
    x, y, targets = data(
        args.steps, args.batch_size, args.classes_per_batch, args.size, args.dim, args.classes
    )
    models = {kind: prepare(kind, args, x, y, targets) for kind in kinds}
    rates = {kind: [] for kind in kinds}
    cpu = {kind: [] for kind in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            model, target = models[kind]
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(x, target, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
            rates[kind].append(len(x) / (time.perf_counter() - start))
            cpu[kind].append(1000 * (time.process_time() - start_cpu) / args.steps)
    median = {kind: float(np.median(r)) for kind, r in rates.items()}
    return median, {kind: float(np.median(c)) for kind, c in cpu.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--classes-per-batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--kinds", default="softmax,triplet-model-mse,semi-hard,batch-hard,batch-all")
    parser.add_argument(
        "--statistics-freq",
        default="auto",
        help="comma-separated TripletModel(statistics_freq=...) values: each mining kind "
        "runs once per value (e.g. auto,1,10; auto: the default)",
    )
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="model.compile(jit_compile=...): auto (default, as Keras runs it: jax.jit on "
        "JAX, no XLA on TensorFlow's CPU) or true (XLA on TensorFlow too); PyTorch always "
        "runs eagerly",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of TensorFlow's op pools / PyTorch (default: the framework's own)",
    )
    args = parser.parse_args()
    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    elif args.threads and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)
    args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    if keras.backend.backend() == "torch" and args.jit_compile is True:
        args.jit_compile = False  # torch.compile: slower than eager here (see BENCHMARKS.md)

    backend = keras.backend.backend()
    freqs = [f if f == "auto" else int(f) for f in args.statistics_freq.split(",")]
    kinds = []
    for kind in args.kinds.split(","):
        if kind in ("softmax", "triplet-model-mse") or "/" in kind:
            kinds.append(kind)
        else:
            kinds.extend(kind if f == "auto" else f"{kind}/{f}" for f in freqs)
    print(
        f"backend={backend} keras={keras.__version__} B={args.batch_size} "
        f"(P={args.classes_per_batch} x K={args.batch_size // args.classes_per_batch}) "
        f"input={args.size}x{args.size}x1 dim={args.dim} steps={args.steps} "
        f"repeats={args.repeats} (median) jit_compile={args.jit_compile} threads={args.threads or 'default'}"
    )
    results, cpu = measure_all(kinds, args)
    for kind in kinds:
        print(f"  {kind:<18} {results[kind]:10.0f} samples/s {cpu[kind]:8.1f} CPU ms/step", flush=True)

    def overhead(kind, base):
        if base not in results or kind in ("softmax", "triplet-model-mse"):
            return ""
        return f"{100 * (results[base] / results[kind] - 1):+.1f}%"

    def cpu_overhead(kind):
        if "triplet-model-mse" not in cpu or kind in ("softmax", "triplet-model-mse"):
            return ""
        return f"{100 * (cpu[kind] / cpu['triplet-model-mse'] - 1):+.1f}%"

    print()
    print(
        "| backend | training | samples/s | time per sample vs TripletModel + MSE | vs softmax "
        "classifier | CPU ms/step | CPU time vs TripletModel + MSE |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        print(
            f"| {backend} | {kind} | {results[kind]:.0f} | {overhead(kind, 'triplet-model-mse')} "
            f"| {overhead(kind, 'softmax')} | {cpu[kind]:.1f} | {cpu_overhead(kind)} |"
        )


if __name__ == "__main__":
    main()
