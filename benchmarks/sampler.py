"""Throughput of the P×K samplers: batches/s and samples/s at B = P·K = 256.

Pipelines measured (``--pipelines``):

==================  =========================================================================
``indices``         ``PKSampler.batch_indices`` alone (NumPy; the cost of choosing batches)
``tf-arrays``       ``PKSampler.as_dataset(x)``: in-memory ``[N, 32, 32, 3]`` float32 array
``tf-items``        ``PKSampler.as_dataset(paths, load_fn=np.load)``: one small ``.npy`` file
                    (``32×32×3`` uint8, ~3 KB) per example in a temporary folder, loaded in
                    parallel (``num_parallel_calls=AUTOTUNE``, ``--items-per-call`` items
                    per ``tf.numpy_function`` call, default 16)
``py-arrays``       ``PKPyDataset(x, ...)`` indexed in a loop
``py-items``        ``PKPyDataset(paths, ..., load_fn=np.load)`` indexed in a loop (one
                    thread; Keras' ``workers=`` would add parallelism)
==================  =========================================================================

Each pipeline is iterated for ``--warmup`` batches (not timed: tracing, thread pools,
the first epoch's draw), then for ``--batches`` timed batches; the rate is the number
of timed batches over their wall time. The epoch boundary is crossed when ``--batches``
exceeds ``steps_per_epoch`` (its NumPy draw is included in the time).
The data set has ``--classes`` classes of ``--per-class`` examples.

Usage (from the repository root)::

    .venv/bin/python benchmarks/sampler.py
    .venv/bin/python benchmarks/sampler.py --batches 400 --pipelines tf-arrays tf-items
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_triplet.data import PKPyDataset, PKSampler  # noqa: E402

PIPELINES = ("indices", "tf-arrays", "tf-items", "py-arrays", "py-items")
SHAPE = (32, 32, 3)


def make_data(classes, per_class, folder, seed=0):
    """Labels, an in-memory float32 array and one uint8 `.npy` file per example."""
    rng = np.random.default_rng(seed)
    n = classes * per_class
    labels = rng.permutation(np.repeat(np.arange(classes), per_class))
    x = rng.random((n,) + SHAPE, dtype=np.float32)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"{i:06d}.npy")
        np.save(path, (x[i] * 255).astype(np.uint8))
        paths.append(path)
    return labels, x, paths


def rate(iterator, warmup, batches):
    """Batches per second over `batches` batches of `iterator`, after `warmup`."""
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def endless(pydataset):
    while True:
        for i in range(len(pydataset)):
            yield pydataset[i]
        pydataset.on_epoch_begin()
        pydataset.on_epoch_end()


def run(pipelines, classes, per_class, P, K, warmup, batches, items_per_call=None):
    folder = tempfile.mkdtemp(prefix="pk_bench_")
    try:
        labels, x, paths = make_data(classes, per_class, folder)
        sampler = PKSampler(labels, P, K, seed=0)
        rows = []
        for name in pipelines:
            if name == "indices":
                it = (sampler.batch_indices(s) for s in range(10**9))
            elif name == "tf-arrays":
                it = iter(sampler.as_dataset(x))
            elif name == "tf-items":
                it = iter(sampler.as_dataset(paths, load_fn=np.load, items_per_call=items_per_call))
            elif name == "py-arrays":
                it = endless(PKPyDataset(x, labels, P, K, seed=0))
            elif name == "py-items":
                it = endless(PKPyDataset(paths, labels, P, K, seed=0, load_fn=np.load))
            else:
                raise ValueError(f"unknown pipeline {name!r}; choose from {PIPELINES}")
            r = rate(it, warmup, batches)
            rows.append((name, r, r * P * K))
            del it
        return sampler, rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--classes-per-batch", type=int, default=64, help="P")
    parser.add_argument("--samples-per-class", type=int, default=4, help="K")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument(
        "--items-per-call",
        type=int,
        default=None,
        help="tf-items: items loaded per tf.numpy_function call (default 16)",
    )
    args = parser.parse_args(argv)

    P, K = args.classes_per_batch, args.samples_per_class
    sampler, rows = run(
        args.pipelines, args.classes, args.per_class, P, K, args.warmup, args.batches, args.items_per_call
    )
    cpus = os.cpu_count()
    print(
        f"PKSampler throughput, B = P·K = {P}·{K} = {P * K}, examples {SHAPE}, "
        f"{args.classes} classes × {args.per_class} = {args.classes * args.per_class} "
        f"examples, steps_per_epoch = {sampler.steps_per_epoch}"
    )
    print(f"{platform.platform()}, {cpus} CPUs, Python {platform.python_version()}, NumPy {np.__version__}")
    print()
    print(f"| {'pipeline':<10} | {'batches/s':>10} | {'samples/s':>11} |")
    print(f"|{'-' * 12}|{'-' * 12}|{'-' * 13}|")
    for name, batches_per_s, samples_per_s in rows:
        print(f"| {name:<10} | {batches_per_s:>10.1f} | {samples_per_s:>11.0f} |")
    return rows


if __name__ == "__main__":
    main()
