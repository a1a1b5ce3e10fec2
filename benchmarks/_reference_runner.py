"""One benchmark measurement in a fresh process (used by ``benchmarks/losses.py``).

This file runs under three different interpreters, so it imports nothing but the
standard library and NumPy at module level:

* ``.venv-tfa/bin/python``  (TensorFlow 2.15 + tensorflow-addons 0.23): ``--impl tfa``
* ``.venv-pml/bin/python``  (torch + pytorch-metric-learning):           ``--impl pml``
* ``.venv/bin/python`` (keras_triplet): ``benchmarks/losses.py --worker`` imports the
  shared helpers below and measures our own losses.

A run: build the inputs, reset the peak-RSS counter, call the loss with its gradient
``warmup`` times (the first call traces / compiles), then time ``repeats`` calls and print
one JSON line on stdout. Memory is the peak resident set size during all calls minus the
resident set size just before the first call (imports and inputs excluded).

Example (what the orchestrator runs)::

    .venv-pml/bin/python benchmarks/_reference_runner.py --impl pml --loss batch-hard \
        --batch-size 256 --dim 128 --repeats 10
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

# Every loss the benchmark knows, by family. The triplet losses take a margin (--margin);
# the others run with pytorch-metric-learning 2.9's defaults, which are also ours.
TRIPLET_LOSSES = ("semi-hard", "batch-hard", "batch-all")
PAIR_LOSSES = (
    "contrastive",
    "multi-similarity",  # with its miner, MultiSimilarityMiner(epsilon=0.1)
    "circle",
    "lifted",
    "generalized-lifted",
    "npairs",
    "ntxent",
    "supcon",
)
# One trainable weight per class (C = --num-classes): the gradient covers them too.
CLASS_WEIGHT_LOSSES = ("proxy-anchor", "proxy-nca", "arcface", "cosface")
LOSSES = TRIPLET_LOSSES + PAIR_LOSSES + CLASS_WEIGHT_LOSSES


# --------------------------------------------------------------------------- inputs


def make_inputs(batch_size, dim, k=4, seed=0):
    """P×K labels (``k`` samples per class, classes contiguous) and L2-normalised
    standard-normal embeddings, both NumPy, reproducible from ``seed``."""
    if batch_size % k:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of k={k}; "
            "choose a batch size divisible by the samples per class"
        )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = (np.arange(batch_size) // k).astype(np.int32)
    return labels, x


def class_labels(labels, num_classes):
    """The P×K labels folded into ``[0, num_classes)`` (B = 4096 has 1024 classes of 4)."""
    return (labels % num_classes).astype(labels.dtype)


def class_weights(loss, num_classes, dim, seed=0):
    """The class weights of a class-weight loss in pytorch-metric-learning's layout
    (proxies ``[C, D]``, ArcFace / CosFace ``W`` ``[D, C]``), standard normal from ``seed``,
    so that both implementations start from the same values."""
    rng = np.random.default_rng(seed + 1)
    w = rng.standard_normal((num_classes, dim)).astype(np.float32)
    return w if loss in ("proxy-anchor", "proxy-nca") else np.ascontiguousarray(w.T)


# --------------------------------------------------------------------------- memory


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MB
    raise RuntimeError(f"{field} not found in /proc/self/status")


def rss_mb():
    """Current resident set size of this process in MB."""
    return _status_mb("VmRSS")


def peak_rss_mb():
    """Peak resident set size (since start or the last ``reset_peak_rss``) in MB."""
    return _status_mb("VmHWM")


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter to the current RSS (Linux >= 4.0).

    Returns False where that is not possible; the peak then also covers the imports,
    which can only make the reported extra memory larger, never smaller."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- timing


def measure(step, warmup=2, repeats=10, budget_s=30.0, clock="wall"):
    """Run ``step()`` (which must block until its results are computed and return
    ``(loss_value, grad_norm)`` as Python floats) and measure time and memory.

    ``clock="cpu"`` times the calls in this process's CPU time (``time.process_time``)
    instead of wall time: on a loaded machine a one-thread run's CPU time is what it
    would take alone, its wall time also counts the waits for a core.

    ``warmup`` calls are not timed (the first includes tracing / compilation; its time is
    reported as ``first_ms``). Then up to ``repeats`` timed calls, stopping early once
    ``budget_s`` seconds of timed calls have run (at least one call is always timed).
    """
    baseline = rss_mb()
    peak_reset = reset_peak_rss()
    if peak_reset:
        baseline = rss_mb()
    t0 = time.perf_counter()
    loss_value, grad_norm = step()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(warmup - 1, 0)):
        step()
    timer = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    spent = 0.0
    for _ in range(max(repeats, 1)):
        t0, w0 = timer(), time.perf_counter()
        step()
        dt = timer() - t0
        times.append(dt * 1e3)
        spent += time.perf_counter() - w0
        if spent > budget_s:
            break
    peak = peak_rss_mb()
    return {
        "ms": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "first_ms": first_ms,
        "clock": clock,
        "repeats": len(times),
        "baseline_mb": baseline,
        "peak_mb": peak,
        "extra_mb": max(peak - baseline, 0.0),
        "peak_reset": peak_reset,
        "loss": float(loss_value),
        "grad_norm": float(grad_norm),
    }


def emit(result):
    """Print the single JSON line the orchestrator looks for."""
    sys.stdout.write("BENCH_RESULT " + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def common_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--loss", choices=LOSSES, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=4, help="samples per class")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=1000, help="C of the class-weight losses")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--budget", type=float, default=30.0, help="stop timing after this many seconds (min. 1 call)"
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    return parser


def base_result(args, impl):
    return {
        "impl": impl,
        "loss_name": args.loss,
        "batch_size": args.batch_size,
        "dim": args.dim,
        "k": args.k,
        "margin": args.margin,
        "seed": args.seed,
        "num_classes": args.num_classes if args.loss in CLASS_WEIGHT_LOSSES else None,
        "python": platform.python_version(),
        "cores": len(os.sched_getaffinity(0)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


# --------------------------------------------------------------------------- tfa


def tfa_step(args):
    """tensorflow-addons 0.23 ``TripletSemiHardLoss`` / ``TripletHardLoss`` inside a
    ``tf.function`` (no XLA: tensorflow-addons' own losses are plain tf.functions)."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_addons as tfa

    if args.loss == "semi-hard":
        loss_obj = tfa.losses.TripletSemiHardLoss(margin=args.margin)
    elif args.loss == "batch-hard":
        loss_obj = tfa.losses.TripletHardLoss(margin=args.margin)
    else:
        raise SystemExit("tensorflow-addons has no batch-all triplet loss")

    labels_np, x_np = make_inputs(args.batch_size, args.dim, args.k, args.seed)
    labels = tf.constant(labels_np)
    x = tf.constant(x_np)

    @tf.function
    def loss_and_grad(labels, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_obj(labels, x)
        return loss, tf.norm(tape.gradient(loss, x))

    def step():
        loss, gnorm = loss_and_grad(labels, x)
        return loss.numpy(), gnorm.numpy()

    versions = {"tensorflow": tf.__version__, "tensorflow_addons": tfa.__version__, "numpy": np.__version__}
    return step, versions


# --------------------------------------------------------------------------- pml


def _pml_loss(name, args):
    """``(loss, miner)``: pytorch-metric-learning's module for one of our loss names, with
    its defaults (the miner is None but for multi-similarity and the triplet losses)."""
    from pytorch_metric_learning import losses, miners

    if name in TRIPLET_LOSSES:
        if name == "semi-hard":
            miner = miners.TripletMarginMiner(margin=args.margin, type_of_triplets="semihard")
        elif name == "batch-hard":
            miner = miners.BatchHardMiner()
        else:
            miner = miners.TripletMarginMiner(margin=args.margin, type_of_triplets="all")
        return losses.TripletMarginLoss(margin=args.margin), miner
    c, d = args.num_classes, args.dim
    make = {
        "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
        "multi-similarity": lambda: losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5),
        "circle": lambda: losses.CircleLoss(m=0.4, gamma=80),
        "lifted": lambda: losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0),
        "generalized-lifted": lambda: losses.GeneralizedLiftedStructureLoss(neg_margin=1.0, pos_margin=0.0),
        "npairs": lambda: losses.NPairsLoss(),
        "ntxent": lambda: losses.NTXentLoss(temperature=0.07),
        "supcon": lambda: losses.SupConLoss(temperature=0.1),
        "proxy-anchor": lambda: losses.ProxyAnchorLoss(c, d, margin=0.1, alpha=32),
        "proxy-nca": lambda: losses.ProxyNCALoss(c, d, softmax_scale=1),
        "arcface": lambda: losses.ArcFaceLoss(c, d, margin=28.6, scale=64),
        "cosface": lambda: losses.CosFaceLoss(c, d, margin=0.35, scale=64),
    }
    miner = miners.MultiSimilarityMiner(epsilon=0.1) if name == "multi-similarity" else None
    return make[name](), miner


def pml_step(args):
    """pytorch-metric-learning 2.9, eager, with ``loss.backward()``: for the triplet losses
    ``TripletMarginMiner(semihard | all)`` or ``BatchHardMiner``, then ``TripletMarginLoss``
    on the mined triplets; otherwise the loss of that name (multi-similarity with its
    ``MultiSimilarityMiner``), the class-weight losses from ``class_weights`` (whose
    gradient is computed too: they are parameters)."""
    import pytorch_metric_learning
    import torch

    loss_fn, miner = _pml_loss(args.loss, args)
    labels_np, x_np = make_inputs(args.batch_size, args.dim, args.k, args.seed)
    params = []
    if args.loss in CLASS_WEIGHT_LOSSES:
        labels_np = class_labels(labels_np, args.num_classes)
        param = loss_fn.proxies if args.loss in ("proxy-anchor", "proxy-nca") else loss_fn.W
        with torch.no_grad():
            param.copy_(torch.from_numpy(class_weights(args.loss, args.num_classes, args.dim, args.seed)))
        params = [param]
    labels = torch.from_numpy(labels_np.astype(np.int64))
    x = torch.from_numpy(x_np).requires_grad_(True)

    def step():
        x.grad = None
        for param in params:
            param.grad = None
        indices = miner(x, labels) if miner is not None else None
        loss = loss_fn(x, labels, indices)
        loss.backward()
        return loss.item(), x.grad.norm().item()

    versions = {
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "numpy": np.__version__,
    }
    return step, versions


STEPS = {"tfa": tfa_step, "pml": pml_step}


def main(argv=None):
    parser = common_args(__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=sorted(STEPS), required=True)
    args = parser.parse_args(argv)
    step, versions = STEPS[args.impl](args)
    result = base_result(args, args.impl)
    result["versions"] = versions
    result.update(measure(step, args.warmup, args.repeats, args.budget, args.clock))
    emit(result)


if __name__ == "__main__":
    main()
