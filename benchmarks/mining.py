"""The mining part of one training step alone: the cost behind the mining overhead.

Times what `TripletModel`'s step adds over a plain loss, on a fixed batch of unit-norm
embeddings (B = P·K, default 16 × 16, D = 64): the distance matrix, the triplet loss with
its miner and the mining statistics over all triplets, forward and backward (gradient
with respect to the embeddings), compiled as the training step is (`jax.jit`;
`tf.function`, with XLA or without; PyTorch eager, one thread). Each row is measured with
the direct search (`miners.search.DirectNegatives`, what P×K batches get on every
backend) and with the sorted one (`SortedNegatives`, the fallback for large classes),
chosen with the `search=` argument of `miners.search.with_negatives` (in a compiled
function "direct" is the normal choice: a class too large for its static size would
still be sorted). The step is `models.step.loss_and_statistics` with that argument: one
search shared by the loss and the statistics. Two more columns time the search the
backend picks by itself with the statistics and without them (the steps that
`TripletModel(statistics_freq=N)` skips): their difference is what the statistics cost.
The last two time the whole step with the statistics each way a search can compare:
by the direct search's loop over the query columns (what XLA-compiled steps use:
`loss_and_statistics(fused=True)`) and, for small batches, all columns at once in one
`[B, M, R]` comparison per question (what steps that run op by op use: eager PyTorch up
to 2^18 entries, TensorFlow without XLA up to 2^22; `fused=False`, the miner's questions
and the statistics' alike). TensorFlow without XLA compiles the mining part alone with
XLA, as `TripletModel`'s step does (`models.step.mined_loss_and_statistics`,
`_backend.compiled_mining`): its direct and sorted columns and its own choice then run
inside one XLA function, whose search is the loop (`fused=False` asks for it; the
`fused=True` column, meaning "the step is compiled already", runs op by op there);
`--compile-mining false` times the op-by-op mining of earlier versions.
Every variant is compiled first, then they take turns
call by call, so that a drift of a shared machine's load hits all of them alike. Times
are medians of the process's CPU time (`time.process_time`, all threads), which other
jobs on a shared machine inflate far less than the wall-clock time (`--clock wall` for
that).

The last column times the harness alone (`call_alone`: the same compiled call and
gradient, of a loss with no distance matrix), which a training step pays once whatever
its loss. Subtract it, then divide by the time of a training step of your network
(BENCHMARKS.md has the small CNN's; `--step-ms` does both) to get the mining overhead
without the run-to-run noise of whole `fit` runs. With `OMP_NUM_THREADS` set, PyTorch
and TensorFlow's op pools (XLA's CPU kernels on TensorFlow) get that many threads, as
`benchmarks/training.py --threads` gives the whole step.

    KERAS_BACKEND=jax python benchmarks/mining.py
    KERAS_BACKEND=tensorflow python benchmarks/mining.py --jit-compile false
    OMP_NUM_THREADS=1 KERAS_BACKEND=torch python benchmarks/mining.py
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_triplet import losses  # noqa: E402
from keras_triplet.models.step import loss_and_statistics, mined_loss_and_statistics  # noqa: E402


def mining_step(loss_fn, search, statistics=True, fused=True, compile_mining=True):
    """Loss and statistics from embeddings, as `TripletModel`'s step computes them
    (`models.step.mined_loss_and_statistics`), with the given search of the negatives
    (None: the backend's own choice), with or without the statistics, counted as a step
    compiled by XLA searches (`fused`) or as one that runs op by op. `compile_mining`
    False: a TensorFlow graph without XLA runs the mining op by op too
    (`loss_and_statistics` on the distances), as before `_backend.compiled_mining`."""

    def step(x, y):
        if compile_mining:
            value, stats, _ = mined_loss_and_statistics(
                loss_fn, y, x, search=search, statistics=statistics, fused=fused
            )
            return value, stats
        distances = loss_fn.pairwise(x)
        return loss_and_statistics(loss_fn, y, distances, search=search, statistics=statistics, fused=fused)

    return step


def call_alone(x, y):
    """A step without mining: a loss of the embeddings alone (their mean square), called
    and differentiated as the mining steps are. Its time is the harness's own (calling a
    compiled function, reading its outputs back), which a training step pays once
    whatever its loss: the mining part of a step is a row's time less this one."""
    return ops.mean(ops.square(x)), {}


def runner(step, x, y, jit_compile):
    """A function running one forward + backward pass and waiting for its result."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad = jax.jit(jax.value_and_grad(lambda e, labels: step(e, labels), has_aux=True))
        return lambda: jax.block_until_ready(grad(x, y))
    if backend == "tensorflow":
        import tensorflow as tf

        xt, yt = tf.constant(x), tf.constant(y)

        @tf.function(jit_compile=jit_compile)
        def grad(e, labels):
            with tf.GradientTape() as tape:
                tape.watch(e)
                value, stats = step(e, labels)
            return tape.gradient(value, e), stats

        return lambda: [t.numpy() for t in tf.nest.flatten(grad(xt, yt))]
    import torch

    xt, yt = torch.tensor(x), torch.tensor(y)

    def run():
        e = xt.clone().requires_grad_(True)
        value, _ = step(e, yt)
        value.backward()
        return e.grad

    return run


def measure(runs, repeats, clock=time.process_time):
    """Median ms per call of each function of `runs` (a dict): each is compiled and
    warmed up first, then they take turns, one call each per round."""
    for run in runs.values():
        for _ in range(3):  # compile / warm up
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = clock()
            run()
            times[name].append(clock() - start)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes-per-batch", type=int, default=16)
    parser.add_argument("--samples-per-class", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls (median)")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--miners", default="semi-hard,batch-hard,batch-all")
    parser.add_argument(
        "--jit-compile",
        choices=["true", "false"],
        default="true",
        help="TensorFlow: tf.function with XLA (true) or without",
    )
    parser.add_argument(
        "--compile-mining",
        choices=["true", "false"],
        default="true",
        help="TensorFlow without XLA: the mining part compiled by XLA alone, as TripletModel's "
        "step does (true), or op by op (false)",
    )
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="time.process_time (default: the process's CPU time, robust to other jobs) or time.perf_counter",
    )
    parser.add_argument(
        "--step-ms", type=float, default=None, help="a training step's time: adds the overhead in %%"
    )
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    jit_compile = args.jit_compile == "true"
    backend = keras.backend.backend()
    if backend == "torch" and os.environ.get("OMP_NUM_THREADS"):
        import torch

        # As many threads as the other backends get (the default may ignore the variable).
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    elif backend == "tensorflow" and os.environ.get("OMP_NUM_THREADS"):
        import tensorflow as tf

        # TensorFlow's op pools (XLA's CPU kernels run in the intra-op one) ignore the
        # variable: as `benchmarks/training.py --threads N` sets them for the whole step.
        threads = int(os.environ["OMP_NUM_THREADS"])
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran (a test's process): its pools stay
            pass
    b = args.classes_per_batch * args.samples_per_class
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, args.dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(args.classes_per_batch), args.samples_per_class).astype("int32")
    compiled = {"jax": "jax.jit", "tensorflow": "XLA" if jit_compile else "tf.function", "torch": "eager"}[
        backend
    ]
    if backend == "tensorflow" and not jit_compile and args.compile_mining == "true":
        compiled += ", mining by XLA"
    print(
        f"backend={backend} ({compiled}) keras={keras.__version__} B={b} "
        f"(P={args.classes_per_batch} x K={args.samples_per_class}) D={args.dim} median of {args.repeats}"
    )
    print(f"{args.clock} time, ms")
    print()
    overhead = (
        "" if args.step_ms is None else f" overhead of {args.step_ms:g} ms, net of the call: with / without |"
    )
    print(
        "| backend | miner | direct (ms) | sorted (ms) | own choice, with statistics | without "
        f"| statistics | with statistics, fused=True (loop) | fused=False (at once) | call alone |{overhead}"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if overhead else ""))
    # What `TripletModel` passes: whether XLA compiles the step.
    fused = backend == "jax" or (backend == "tensorflow" and jit_compile)
    kinds = {
        "direct": ("direct", True, fused),
        "sorted": ("sorted", True, fused),
        "with": (None, True, fused),
        "without": (None, False, fused),
        "loop": (None, True, True),
        "at once": (None, True, False),
    }
    # The same for every miner: compiled once, timed in turns with each miner's runs.
    call = runner(call_alone, x, y, jit_compile)
    for miner in args.miners.split(","):
        loss_fn = losses.TripletLoss(margin=args.margin, miner=miner)
        runs = {
            name: runner(
                mining_step(loss_fn, search, statistics, by_xla, args.compile_mining == "true"),
                x,
                y,
                jit_compile,
            )
            for name, (search, statistics, by_xla) in kinds.items()
        }
        runs["call"] = call
        row = measure(runs, args.repeats, clock)
        line = (
            f"| {backend} ({compiled}) | {miner} | {row['direct']:.1f} | {row['sorted']:.1f} "
            f"| {row['with']:.1f} | {row['without']:.1f} | {row['with'] - row['without']:+.1f} "
            f"| {row['loop']:.1f} | {row['at once']:.1f} | {row['call']:.2f} |"
        )
        if args.step_ms is not None:
            with_, without = (100 * (row[k] - row["call"]) / args.step_ms for k in ("with", "without"))
            line += f" {with_:.1f} % / {without:.1f} % |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
