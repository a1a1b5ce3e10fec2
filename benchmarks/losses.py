"""Speed and memory of our losses beside tensorflow-addons and pytorch-metric-learning.

For every (implementation, loss, batch size) the loss **and its gradient** with respect to
the embeddings (and to the class weights of the proxy and margin-softmax losses) are
computed in a fresh subprocess, so that peak memory is measured cleanly. A cell of the
table reads ``median ms / peak extra MB``:

* time: the median over the timed calls of one forward + backward pass, after warm-up
  (the first call, which traces / compiles, is not timed; its time is reported apart);
* memory: the peak resident set size during all calls minus the resident set size just
  before the first call (imports and inputs excluded, compilation included).

Losses (``--losses``): the triplet losses ``semi-hard``, ``batch-hard``, ``batch-all``
(``triplet_loss`` with that miner); the pair losses ``contrastive``, ``multi-similarity``
(with ``MultiSimilarityMiner``), ``circle``, ``lifted``, ``generalized-lifted``, ``npairs``,
``ntxent``, ``supcon``; the class-weight losses ``proxy-anchor``, ``proxy-nca``, ``arcface``,
``cosface`` (``--num-classes`` C, default 1000). Each through its public function with
pytorch-metric-learning 2.9's defaults, which are also ours.

Implementations (``--impls``):

==============  ===========================================================================
``ours-tf``     ``keras_triplet.losses`` on TensorFlow,
                ``tf.function(jit_compile=True)`` + ``tf.GradientTape``
``ours-jax``    the same on JAX, ``jax.jit(jax.value_and_grad(...))``
``ours-torch``  the same on PyTorch, eager, ``loss.backward()``
``tfa``         tensorflow-addons 0.23 ``TripletSemiHardLoss`` / ``TripletHardLoss`` in a
                ``tf.function`` (run in ``.venv-tfa``; the two triplet losses only)
``pml``         pytorch-metric-learning: ``TripletMarginMiner("semi-hard" | "all")`` or
                ``BatchHardMiner`` then ``TripletMarginLoss``; the loss of the same name
                otherwise; eager (run in ``.venv-pml``)
==============  ===========================================================================

Inputs: P×K labels with K = 4 samples per class and standard-normal embeddings
normalised to unit length, from a fixed seed; the same margin (0.2) for every triplet loss.

Runs whose predicted memory exceeds ``--memory-limit-gb`` are not started (the cell says
``cannot run (needs ~N GB)``); a watchdog also kills any run whose resident memory
grows past the limit plus 1 GB, and runs longer than ``--timeout`` seconds are stopped.

Usage (from the repository root)::

    .venv/bin/python benchmarks/losses.py --quick
    .venv/bin/python benchmarks/losses.py --threads 1 --impls ours-torch pml \
        --losses contrastive supcon --batch-sizes 256 1024
    .venv/bin/python benchmarks/losses.py --output benchmarks/results/losses_cpu.md

The reference environments are built by ``tools/make_reference_envs.sh``.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _reference_runner as runner  # noqa: E402  (stdlib + numpy only)

LOSSES = runner.LOSSES
DEFAULT_BATCH_SIZES = (256, 1024, 4096)
# Timed calls per run when --repeats is not given (each run also stops timing after
# --budget seconds of timed calls, with at least one timed call).
DEFAULT_REPEATS = {256: 20, 512: 10, 768: 5, 1024: 7, 2048: 5, 4096: 3}
MB = 2.0**20
GB = 2.0**30
INT32_MAX = 2**31 - 1

IMPLS = {
    "ours-tf": {
        "title": "ours, tensorflow (XLA)",
        "venv": ".venv",
        "backend": "tensorflow",
        "losses": LOSSES,
    },
    "ours-jax": {
        "title": "ours, jax (jit)",
        "venv": ".venv",
        "backend": "jax",
        "losses": LOSSES,
    },
    "ours-torch": {
        "title": "ours, torch (eager)",
        "venv": ".venv",
        "backend": "torch",
        "losses": LOSSES,
    },
    "tfa": {
        "title": "tensorflow-addons 0.23",
        "venv": ".venv-tfa",
        "backend": None,
        "losses": ("semi-hard", "batch-hard"),
    },
    "pml": {
        "title": "pytorch-metric-learning",
        "venv": ".venv-pml",
        "backend": None,
        "losses": LOSSES,
    },
}


# --------------------------------------------------------------------------- memory model


def predicted_bytes(impl, loss, b, d=128, k=4):
    """A conservative estimate of a run's peak extra memory, to decide whether to start it.

    The cubic coefficients were measured on this harness (Linux, float32):
    tensorflow-addons' semi-hard loss tiles the [B, B] distance matrix B times and keeps a
    few [B*B, B] float and bool tensors for the gradient: ~14.2 bytes per B^3 at B = 384
    and 512. pytorch-metric-learning's triplet miners build a [B, B, B] uint8 mask and
    ``torch.where`` it while B^3 < 2^31 (~1.3 bytes per B^3 at B = 1024), and otherwise
    loop over anchors; either way every candidate triplet (B (K-1) (B-K) of them) gets
    int64 indices and gathered distances (~90 bytes per triplet at B = 2048).
    Everything else is O(B^2): a few dozen [B, B] float32 tensors, over-estimated here
    as 64 of them, plus room for tracing / compilation.
    """
    quadratic = 64 * 4 * b * b + 4 * b * d * 8 + 400 * MB
    if impl == "tfa" and loss == "semi-hard":
        return 16.0 * b**3 + quadratic
    if impl == "pml" and loss in ("semi-hard", "batch-all"):
        triplets = b * (k - 1) * max(b - k, 0)
        cubic = 1.6 * b**3 if b**3 < INT32_MAX else 0.0
        return cubic + 120.0 * triplets + quadratic
    if impl == "pml" and loss in ("lifted", "ntxent"):
        # Its LiftedStructureLoss and NTXentLoss compare every positive pair with every
        # negative pair: a few [positive pairs, negative pairs] bool and float tensors
        # (B = 256: 768 × 64 512), ~30 bytes per entry (measured at B = 256).
        return 30.0 * (b * (k - 1)) * (b * max(b - k, 0)) + quadratic
    return quadratic


# --------------------------------------------------------------------------- one run


def _python_for(spec, args):
    override = {".venv": args.python, ".venv-tfa": args.python_tfa, ".venv-pml": args.python_pml}
    return override[spec["venv"]] or os.path.join(ROOT, spec["venv"], "bin", "python")


def _command(impl, loss, b, repeats, args):
    spec = IMPLS[impl]
    common = [
        "--loss",
        loss,
        "--batch-size",
        str(b),
        "--dim",
        str(args.dim),
        "--k",
        str(args.k),
        "--margin",
        str(args.margin),
        "--seed",
        str(args.seed),
        "--num-classes",
        str(args.num_classes),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(repeats),
        "--budget",
        str(args.budget),
        "--clock",
        args.clock,
    ]
    python = _python_for(spec, args)
    if spec["backend"]:
        cmd = [python, os.path.join(HERE, "losses.py"), "--worker", impl] + common
        if args.no_floor:
            cmd.append("--no-floor")
    else:
        cmd = [python, os.path.join(HERE, "_reference_runner.py"), "--impl", impl] + common
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if args.threads:
        n = str(args.threads)
        for var in (
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS",
        ):
            env[var] = n
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if spec["backend"]:
        env["KERAS_BACKEND"] = spec["backend"]
    else:
        env.pop("KERAS_BACKEND", None)
    return cmd, env


def _child_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def _loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_one(impl, loss, b, repeats, args):
    """Run one measurement in a subprocess; return a result dict with a ``status``."""
    base = {"impl": impl, "loss_name": loss, "batch_size": b}
    need = predicted_bytes(impl, loss, b, args.dim, args.k)
    base["predicted_gb"] = need / GB
    if need > args.memory_limit_gb * GB:
        return dict(base, status="skipped", reason=f"cannot run (needs ~{need / GB:.0f} GB)")
    cmd, env = _command(impl, loss, b, repeats, args)
    if args.verbose:
        print("  $", " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    kill_mb = (args.memory_limit_gb + 1.0) * 1024.0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.time()
        load0 = _loadavg()
        preexec = None
        if args.threads:
            cores = sorted(os.sched_getaffinity(0))[: args.threads]
            preexec = lambda: os.sched_setaffinity(0, cores)  # noqa: E731
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True, preexec_fn=preexec
        )
        status, reason, watch_peak = "ok", "", 0.0
        try:
            while proc.poll() is None:
                rss = _child_rss_mb(proc.pid)
                watch_peak = max(watch_peak, rss)
                if time.time() - t0 > args.timeout:
                    status, reason = "timeout", f"timeout (> {args.timeout:.0f} s)"
                elif rss > kill_mb:
                    status, reason = "killed", f"killed (> {kill_mb / 1024:.0f} GB)"
                elif _mem_available_mb() < 1024.0:
                    status, reason = "killed", "killed (machine out of memory)"
                if status != "ok":
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:  # stopped by the watchdog, Ctrl-C or SIGTERM
                os.killpg(proc.pid, 9)  # the session started for this child only
                proc.wait()
        wall = time.time() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    base.update(wall_s=wall, watch_peak_mb=watch_peak, load_start=load0, load_end=_loadavg())
    if status != "ok":
        return dict(base, status=status, reason=reason)
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT ") :])
            return dict(base, status="ok", **result)
    tail = "\n".join((stderr.strip().splitlines() or ["(no output)"])[-15:])
    return dict(base, status="error", reason=f"error (exit {proc.returncode})", log=tail)


# --------------------------------------------------------------------------- worker (ours)


def _floor_loss(labels, x):
    """The floor of any batch loss: the `[B, B]` Euclidean distance matrix alone (the same
    function the losses call), summed so that it has a gradient."""
    from keras import ops

    from keras_triplet.distances import pairwise_distances

    return ops.sum(pairwise_distances(x, metric="euclidean"))


def _our_loss(name, args):
    """``fn(labels, x, *weights)``: our loss of that name through its public function, with
    pytorch-metric-learning's defaults (the same as ours; the triplet losses with
    ``--margin``). The class-weight losses take their weights as an argument, so that the
    gradient covers them as pytorch-metric-learning's parameters."""
    from keras_triplet import losses, miners

    if name in runner.TRIPLET_LOSSES:
        return lambda labels, x: losses.triplet_loss(labels, x, margin=args.margin, miner=name)
    if name == "multi-similarity":
        miner = miners.MultiSimilarityMiner(epsilon=0.1)
        return lambda labels, x: losses.multi_similarity_loss(labels, x, miner=miner)
    return {
        "contrastive": losses.contrastive_loss,
        "circle": losses.circle_loss,
        "lifted": losses.lifted_structure_loss,
        "generalized-lifted": losses.generalized_lifted_structure_loss,
        "npairs": losses.npairs_loss,
        "ntxent": losses.ntxent_loss,
        "supcon": losses.supcon_loss,
        "proxy-anchor": losses.proxy_anchor_loss,
        "proxy-nca": losses.proxy_nca_loss,
        "arcface": losses.arcface_loss,
        "cosface": losses.cosface_loss,
    }[name]


def _ours_step(impl, args, floor=False):
    """forward + backward of our loss ``args.loss`` on one backend (of the distance matrix
    alone, summed, with ``floor=True``): the gradient with respect to the embeddings, and
    to the class weights for the losses that have them."""
    import keras

    labels_np, x_np = runner.make_inputs(args.batch_size, args.dim, args.k, args.seed)
    weights_np = ()
    if floor:
        loss_fn = _floor_loss
    else:
        loss_fn = _our_loss(args.loss, args)
        if args.loss in runner.CLASS_WEIGHT_LOSSES:
            labels_np = runner.class_labels(labels_np, args.num_classes)
            weights_np = (runner.class_weights(args.loss, args.num_classes, args.dim, args.seed),)
    backend = keras.backend.backend()
    versions = {"keras": keras.__version__}

    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
        labels, x = tf.constant(labels_np), tf.constant(x_np)
        weights = tuple(tf.constant(w) for w in weights_np)

        @tf.function(jit_compile=True)
        def loss_and_grad(labels, x, *weights):
            with tf.GradientTape() as tape:
                tape.watch(x)
                tape.watch(weights)
                loss = loss_fn(labels, x, *weights)
            grads = tape.gradient(loss, (x,) + weights)
            return loss, tf.norm(grads[0])

        def step():
            loss, gnorm = loss_and_grad(labels, x, *weights)
            return loss.numpy(), gnorm.numpy()

    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        versions["jax"] = jax.__version__
        labels, x = jnp.asarray(labels_np), jnp.asarray(x_np)
        weights = tuple(jnp.asarray(w) for w in weights_np)
        value_and_grad = jax.jit(
            jax.value_and_grad(lambda x, weights, labels: loss_fn(labels, x, *weights), argnums=(0, 1))
        )

        def step():
            loss, (grad, _) = jax.block_until_ready(value_and_grad(x, weights, labels))
            return float(loss), float(jnp.linalg.norm(grad))

    elif backend == "torch":
        import torch

        versions["torch"] = torch.__version__
        labels = torch.from_numpy(labels_np)
        x = torch.from_numpy(x_np).requires_grad_(True)
        weights = tuple(torch.from_numpy(w).requires_grad_(True) for w in weights_np)

        def step():
            for tensor in (x,) + weights:
                tensor.grad = None
            loss = loss_fn(labels, x, *weights)
            loss.backward()
            return loss.item(), x.grad.norm().item()

    else:
        raise SystemExit(f"unsupported KERAS_BACKEND {backend!r}")
    return step, versions


def worker_main(argv):
    parser = runner.common_args("one measurement of one of keras_triplet's losses")
    parser.add_argument("--worker", choices=[i for i in IMPLS if IMPLS[i]["backend"]], required=True)
    parser.add_argument("--no-floor", action="store_true", help="do not measure the floor")
    args = parser.parse_args(argv)
    step, versions = _ours_step(args.worker, args)
    result = runner.base_result(args, args.worker)
    result["versions"] = versions
    result.update(runner.measure(step, args.warmup, args.repeats, args.budget, args.clock))
    if args.no_floor:
        runner.emit(result)
        return
    # The floor, in the same process on the same backend, after the loss (so that its
    # memory does not count in the loss's peak): the time of the distance matrix alone.
    floor_step, _ = _ours_step(args.worker, args, floor=True)
    floor = runner.measure(floor_step, args.warmup, args.repeats, args.budget, args.clock)
    result.update(floor_ms=floor["ms"], floor_ms_min=floor["ms_min"], floor_ms_max=floor["ms_max"])
    # The ratio from calls of the loss and the floor taking turns, so that a drift of the
    # machine's load (or of the allocator's state) between the two runs above does not
    # move it: the floor alone moved 2-4x between runs of a loaded machine.
    paired = _paired_medians(step, floor_step, args.repeats, args.budget, args.clock)
    result.update(paired_ms=paired[0], paired_floor_ms=paired[1], floor_ratio=paired[0] / paired[1])
    runner.emit(result)


def _paired_medians(step, floor_step, rounds, budget, clock):
    """Median ms of `step` and of `floor_step` over rounds of one call each, in turns."""
    import statistics
    import time

    timer = time.process_time if clock == "cpu" else time.perf_counter
    times = ([], [])
    start = time.perf_counter()
    for _ in range(max(rounds or 1, 3)):
        for fn, out in ((step, times[0]), (floor_step, times[1])):
            t0 = timer()
            fn()
            out.append((timer() - t0) * 1e3)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times[0]), statistics.median(times[1])


def _times_floor(r):
    """The loss's time over the floor's: from the paired calls where measured."""
    return r["floor_ratio"] if r.get("floor_ratio") else r["ms"] / r["floor_ms"]


# --------------------------------------------------------------------------- report


def _cell(r):
    if r is None:
        return "not run"
    if r["status"] != "ok":
        return r["reason"]
    ms = r["ms"]
    text = f"{_ms(ms)} ms / {r['extra_mb']:.0f} MB"
    if r.get("floor_ms"):
        text += f" ({_times_floor(r):.1f}× floor)"
    return text


def _ms(ms):
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _floor_cell(results, impl, b):
    """The floor measured beside this implementation's losses at this B (median of the
    per-run floors: each loss's process measured it once)."""
    floors = [
        r["floor_ms"]
        for r in results
        if r["status"] == "ok" and r["impl"] == impl and r["batch_size"] == b and r.get("floor_ms")
    ]
    return f"{_ms(sorted(floors)[len(floors) // 2])} ms" if floors else ""


def _fmt_x(x):
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def make_table(results, impls, batch_sizes, losses):
    by_key = {(r["impl"], r["loss_name"], r["batch_size"]): r for r in results}
    header = ["loss", "B"] + [IMPLS[i]["title"] for i in impls]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # The floor of each of our backends: forward + backward of the [B, B] distance matrix
    # alone, measured in each loss's process (cells give their loss's ratio to it).
    if any(IMPLS[i]["backend"] for i in impls):
        for b in batch_sizes:
            cells = ["floor: distances alone", str(b)]
            cells += [_floor_cell(results, i, b) if IMPLS[i]["backend"] else "" for i in impls]
            if any(cells[2:]):
                lines.append("| " + " | ".join(cells) + " |")
    for loss in losses:
        for b in batch_sizes:
            if not any((i, loss, b) in by_key for i in impls):
                continue
            cells = [loss, str(b)]
            for impl in impls:
                if loss not in IMPLS[impl]["losses"]:
                    cells.append("— (no such loss)")
                else:
                    cells.append(_cell(by_key.get((impl, loss, b))))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def make_details(results):
    lines = [
        "| impl | loss | B | median ms (min–max, n) | floor ms | × floor | first call ms | extra MB | loss value | ‖grad‖ | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["status"] != "ok":
            continue
        lines.append(
            f"| {r['impl']} | {r['loss_name']} | {r['batch_size']} | {r['ms']:.1f} "
            f"({r['ms_min']:.1f}–{r['ms_max']:.1f}, {r['repeats']}) | "
            + (f"{r['floor_ms']:.2f} | {_times_floor(r):.1f} | " if r.get("floor_ms") else "| | ")
            + f"{r['first_ms']:.0f} | "
            f"{r['extra_mb']:.0f} | {r['loss']:.6f} | {r['grad_norm']:.4g} | "
            f"{r['load_start']:.1f}→{r['load_end']:.1f} |"
        )
    return "\n".join(lines)


def summarize(results, impls, batch_sizes, losses=LOSSES):
    """Speed-ups and the issue's targets, as Markdown bullet lines."""
    ok = {(r["impl"], r["loss_name"], r["batch_size"]): r for r in results if r["status"] == "ok"}
    ours = [i for i in impls if IMPLS[i]["backend"]]
    lines = []

    # 1. semi-hard at B = 1024, ours vs tensorflow-addons.
    if "tfa" in impls and ours:
        target_b = 1024
        tfa = ok.get(("tfa", "semi-hard", target_b))
        note = "measured"
        tfa_ms = tfa["ms"] if tfa else None
        if tfa is None:
            measured = sorted(b for (i, l, b) in ok if i == "tfa" and l == "semi-hard")
            if measured:
                b0 = measured[-1]
                tfa_ms = ok[("tfa", "semi-hard", b0)]["ms"] * (target_b / b0) ** 3
                note = (
                    f"tensorflow-addons could not run at B = {target_b}; its time is "
                    f"extrapolated as O(B^3) from B = {b0} "
                    f"({ok[('tfa', 'semi-hard', b0)]['ms']:.0f} ms)"
                )
        for impl in ours:
            r = ok.get((impl, "semi-hard", target_b))
            if r is None or tfa_ms is None:
                continue
            x = tfa_ms / r["ms"]
            verdict = "met" if x >= 10 else "NOT met"
            lines.append(
                f"- semi-hard, B = {target_b}, {IMPLS[impl]['title']}: {_fmt_x(x)} faster than "
                f"tensorflow-addons ({r['ms']:.1f} ms vs {tfa_ms:.0f} ms, {note}) — "
                f"target ≥ 10x: **{verdict}**"
            )
        # also every batch size where both ran
        for b in batch_sizes:
            tfa_b = ok.get(("tfa", "semi-hard", b))
            if tfa_b is None or b == target_b:
                continue
            parts = [
                f"{IMPLS[i]['title']} {_fmt_x(tfa_b['ms'] / ok[(i, 'semi-hard', b)]['ms'])}"
                for i in ours
                if (i, "semi-hard", b) in ok
            ]
            if parts:
                lines.append(
                    f"- semi-hard, B = {b}, speed-up over tensorflow-addons "
                    f"({tfa_b['ms']:.0f} ms): " + ", ".join(parts)
                )

    # 2. B = 4096 memory.
    big = max(batch_sizes)
    if big >= 4096:
        for impl in ours:
            for loss in losses:
                r = ok.get((impl, loss, big))
                if r is None:
                    res = [
                        x
                        for x in results
                        if (x["impl"], x["loss_name"], x["batch_size"]) == (impl, loss, big)
                    ]
                    why = res[0]["reason"] if res else "not run"
                    lines.append(
                        f"- B = {big}, {loss}, {IMPLS[impl]['title']}: {why} — target < 512 MB: **NOT met**"
                    )
                    continue
                verdict = "met" if r["extra_mb"] < 512 else "NOT met"
                lines.append(
                    f"- B = {big}, {loss}, {IMPLS[impl]['title']}: {r['extra_mb']:.0f} MB "
                    f"extra — target < 512 MB (issue 16; issue 2 asked < 1 GB): **{verdict}**"
                )
        if "tfa" in impls:
            r = [
                x
                for x in results
                if (x["impl"], x["loss_name"], x["batch_size"]) == ("tfa", "semi-hard", big)
            ]
            if r:
                lines.append(f"- B = {big}, semi-hard, tensorflow-addons: {_cell(r[0])}")

    # 3. issue 16: the triplet losses' forward + backward within 3x of the distance matrix alone.
    for impl in ours:
        for loss in [name for name in losses if name in runner.TRIPLET_LOSSES]:
            for b in batch_sizes:
                r = ok.get((impl, loss, b))
                if r is None or not r.get("floor_ms"):
                    continue
                x = _times_floor(r)
                lines.append(
                    f"- {loss}, B = {b}, {IMPLS[impl]['title']}: {x:.1f}× the floor "
                    f"({r['ms']:.1f} ms vs {r['floor_ms']:.2f} ms) — target ≤ 3×: "
                    f"**{'met' if x <= 3 else 'NOT met'}**"
                )

    # 4. torch backend vs pytorch-metric-learning.
    if "ours-torch" in impls and "pml" in impls:
        everything = {(r["impl"], r["loss_name"], r["batch_size"]): r for r in results}
        for loss in losses:
            for b in batch_sizes:
                o, p = ok.get(("ours-torch", loss, b)), ok.get(("pml", loss, b))
                failed = everything.get(("pml", loss, b))
                if o is not None and p is None and failed is not None:
                    lines.append(
                        f"- torch, {loss}, B = {b}: ours {o['ms']:.1f} ms; pytorch-metric-learning "
                        f"{failed['reason']} — target ≤: **met**"
                    )
                    continue
                if o is None or p is None:
                    continue
                verdict = "met" if o["ms"] <= p["ms"] else "NOT met"
                lines.append(
                    f"- torch, {loss}, B = {b}: ours {o['ms']:.1f} ms vs pytorch-metric-learning "
                    f"{p['ms']:.1f} ms ({_fmt_x(p['ms'] / o['ms'])}) — target ≤: **{verdict}**"
                )
    return "\n".join(lines)


def machine_info():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            ram_gb = int(f.readline().split()[1]) / 2**20
    except OSError:
        ram_gb = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {ram_gb:.0f} GB RAM, {platform.system()} {platform.release()}"


def versions_line(results):
    seen = {}
    for r in results:
        for k, v in (r.get("versions") or {}).items():
            seen.setdefault(k, set()).add(v)
        if r.get("python"):
            seen.setdefault("python", set()).add(r["python"])
    return ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(seen.items()))


def git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:  # noqa: BLE001 - informational only
        return ""


def report(results, args, impls, batch_sizes, losses, started, elapsed):
    cmd = " ".join(
        shlex.quote(a)
        for a in [
            os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else sys.executable,
            "benchmarks/losses.py",
        ]
        + sys.argv[1:]
    )
    parts = [
        "# Metric-learning losses: forward + backward time and peak extra memory (CPU)",
        "",
        f"- command: `{cmd}`",
        f"- date: {started:%Y-%m-%d %H:%M} UTC, total {elapsed / 60:.1f} min; repository commit {git_commit() or '?'} (with uncommitted work)",
        f"- machine: {machine_info()}",
        f"- versions: {versions_line(results)}",
        f"- inputs: D = {args.dim}, K = {args.k} samples per class (P = B/K), unit-length "
        f"standard-normal embeddings, seed {args.seed}, float32; triplet margin {args.margin}; "
        f"the other losses with pytorch-metric-learning 2.9's defaults (multi-similarity with "
        f"its miner); proxy and margin-softmax losses with C = {args.num_classes} classes "
        f"(labels mod C), standard-normal class weights, their gradient included",
        "- cell: median "
        + ("CPU time (`--clock cpu`)" if args.clock == "cpu" else "time")
        + " of one forward + backward pass after "
        f"{args.warmup} untimed warm-up call(s) / peak RSS during all calls minus RSS before "
        f"the first (compilation included); each cell is a fresh process; runs predicted "
        f"to need more than {args.memory_limit_gb:g} GB are not started",
        f"- threads: {'every run limited to ' + str(args.threads) + ' core(s) (CPU affinity, OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS)' if args.threads else 'all cores (library defaults)'}",
        "",
        make_table(results, impls, batch_sizes, losses),
        "",
        "## Targets (issues 2 and 16)",
        "",
        summarize(results, impls, batch_sizes, losses) or "- (not enough implementations run to compare)",
        "",
        "## Details",
        "",
        make_details(results),
        "",
        "`load avg` is the machine's 1-minute load average when the run started and ended; "
        "with 2 cores, values above ~2 mean other processes competed for the CPU.",
    ]
    errors = [r for r in results if r["status"] == "error"]
    for r in errors:
        parts += [
            "",
            f"Error in {r['impl']} {r['loss_name']} B={r['batch_size']}:",
            "```",
            r.get("log", ""),
            "```",
        ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Speed and memory of metric-learning losses: ours on three backends beside "
        "tensorflow-addons and pytorch-metric-learning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES))
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=4, help="samples per class")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-classes", type=int, default=1000, help="C of the proxy and margin-softmax losses"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time the calls in wall time or in the process's CPU time (with --threads 1, CPU "
        "time is what a call would take on an idle machine: use it on a loaded one)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="do not measure the distance-matrix floor beside our losses (halves their runs)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per run (default: by batch size, "
        + ", ".join(f"{b}: {n}" for b, n in DEFAULT_REPEATS.items())
        + ")",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls (the first compiles)")
    parser.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="stop timing a run after this many seconds of timed calls (at least 1 call)",
    )
    parser.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS))
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--quick", action="store_true", help="B = 256 only, 5 timed calls, 1 warm-up call")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="limit every run to this many cores (CPU affinity and the "
        "OpenMP / TensorFlow thread pools); 0 = all cores",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=12.0, help="do not start a run predicted to need more"
    )
    parser.add_argument(
        "--extra",
        nargs="+",
        default=[],
        metavar="B:IMPL:LOSS",
        help="extra cells to run besides the grid, e.g. 768:tfa:semi-hard "
        "(a measured point near B = 1024 for an implementation that cannot "
        "run there)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="run nothing: write the report from a --json file of an earlier run",
    )
    parser.add_argument("--output", help="also write the Markdown report to this file")
    parser.add_argument("--json", help="also write every run's raw result (JSON lines) here")
    parser.add_argument("--python", help="interpreter for ours (default .venv/bin/python)")
    parser.add_argument("--python-tfa", help="default .venv-tfa/bin/python")
    parser.add_argument("--python-pml", help="default .venv-pml/bin/python")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each command")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes = [256]
        args.repeats = args.repeats or 5
        args.warmup = 1
    extra = []
    for item in args.extra:
        try:
            b, impl, loss = item.split(":")
            b = int(b)
        except ValueError:
            parser.error(f"--extra {item!r}: expected B:IMPL:LOSS, e.g. 768:tfa:semi-hard")
        if impl not in IMPLS or loss not in IMPLS[impl]["losses"]:
            parser.error(f"--extra {item!r}: unknown implementation or loss it does not have")
        extra.append((b, impl, loss))
    args.extra = extra
    bad = [b for b in args.batch_sizes + [e[0] for e in extra] if b <= 0 or b % args.k]
    if bad:
        parser.error(f"batch sizes {bad} are not positive multiples of --k {args.k}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return worker_main(argv)
    args = parse_args(argv)
    # Turn SIGTERM into an exception so that a running child is killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    impls, losses = list(args.impls), list(args.losses)
    batch_sizes = sorted(set(args.batch_sizes))
    for impl in impls:
        python = _python_for(IMPLS[impl], args)
        if not os.path.exists(python):
            print(
                f"warning: {python} not found; {impl} will fail "
                "(build the reference environments with tools/make_reference_envs.sh)",
                file=sys.stderr,
            )
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    results = []
    json_file = open(args.json, "w") if args.json and not args.from_json else None
    cells = [
        (loss, b, impl)
        for loss in losses
        for b in batch_sizes
        for impl in impls
        if loss in IMPLS[impl]["losses"]
    ]
    cells += [(loss, b, impl) for b, impl, loss in args.extra if (loss, b, impl) not in cells]
    table_sizes = sorted(set(batch_sizes) | {b for b, _, _ in args.extra})
    if args.from_json:
        with open(args.from_json) as f:
            results = [json.loads(line) for line in f if line.strip()]
        cells = []
        table_sizes = sorted({r["batch_size"] for r in results})
        impls = [i for i in impls if any(r["impl"] == i for r in results)]
    try:
        for loss, b, impl in cells:
            repeats = args.repeats or DEFAULT_REPEATS.get(b, 5)
            r = run_one(impl, loss, b, repeats, args)
            results.append(r)
            if json_file:
                json_file.write(json.dumps(r, sort_keys=True) + "\n")
                json_file.flush()
            note = (
                f" (first call {r['first_ms']:.0f} ms, loss {r['loss']:.5f})" if r["status"] == "ok" else ""
            )
            print(
                f"[{time.time() - t0:6.0f} s] {loss:10s} B={b:<5d} {impl:10s} {_cell(r)}{note}",
                file=sys.stderr,
                flush=True,
            )
            if r["status"] == "error" and args.verbose:
                print(r.get("log", ""), file=sys.stderr)
    finally:
        if json_file:
            json_file.close()
    text = report(results, args, impls, table_sizes, losses, started, time.time() - t0)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
