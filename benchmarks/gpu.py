"""The GPU benchmark: the loss grid and both apps' training throughput, per backend, as a
Markdown table.

On a machine with a CUDA GPU, from the repository root::

    .venv/bin/python benchmarks/gpu.py --output benchmarks/results/gpu.md

It runs, for each backend (TensorFlow, JAX, PyTorch), in a fresh subprocess each:

* **the loss grid**: forward + backward of the semi-hard, batch-hard and batch-all triplet
  losses at B = 1 024 … 65 536 (D = 128, P×K labels with K = 4) — TensorFlow and JAX
  compiled with XLA, PyTorch eager — with the median time and the peak device memory of
  the calls (the first call, which compiles, is timed apart). A batch size stops growing
  for a loss once it runs out of memory or past ``--max-seconds`` per call;
* **training throughput**: samples per second of ``TripletModel.fit`` on each app's
  network (the audio log-mel CNN, the signature CNN) at their input sizes, without mining
  (the same ``TripletModel`` step with a plain MSE loss to a fixed target per class: the
  network's own cost) and with semi-hard mining, in float32 and under mixed precision
  (``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU).

``--smoke`` runs the same code on tiny sizes, on whatever device there is: the test suite
runs it on the CPU (``tests/test_benchmarks.py``), so the script is known to work before
a GPU is at hand. It fits half of the eight app × precision × mode runs, chosen so that
every app, precision and mode meet each other once. Without a GPU the memory column reads
"—" (the CPU's resident memory is ``benchmarks/losses.py``'s business).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BACKENDS = ("tensorflow", "jax", "torch")
MINERS = ("semi-hard", "batch-hard", "batch-all")
GRID_SIZES = (1024, 4096, 16384, 65536)
SMOKE_SIZES = (32,)
DIM = 128
K = 4


# ----------------------------------------------------------------------------- worker side
# (runs in a subprocess with KERAS_BACKEND set; prints one JSON object per line)


def _device_kind():
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return "gpu" if jax.default_backend() == "gpu" else "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _device_name():
    import keras

    if _device_kind() == "cpu":
        return platform.processor() or platform.machine()
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return details.get("device_name", "GPU")


def _reset_peak_memory():
    """Resets the device's peak-memory counter where the backend has one."""
    import keras

    if _device_kind() != "gpu":
        return
    if keras.backend.backend() == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")


def _peak_memory_mb():
    """Peak device memory since the last reset, in MB, or None (CPU). JAX reports the
    peak of the whole process: its column is an upper bound."""
    import keras

    if _device_kind() != "gpu":
        return None
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use", 0) / 2**20 or None


def _loss_and_gradient_fn(loss):
    """A function `(labels, embeddings) -> (loss, gradient)`, compiled as users run it:
    XLA on TensorFlow and JAX, eager on PyTorch (the backend-specific part of a
    benchmark: how each framework takes a gradient)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(labels, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(labels, x)
            return value, tape.gradient(value, x)

        return step
    if backend == "jax":
        import jax

        value_and_grad = jax.jit(jax.value_and_grad(lambda x, labels: loss(labels, x)))
        return lambda labels, x: value_and_grad(x, labels)

    def step(labels, x):
        x = x.detach().requires_grad_(True)
        value = loss(labels, x)
        value.backward()
        return value, x.grad

    return step


def _block(values):
    import keras

    for value in values:
        keras.ops.convert_to_numpy(value)


def run_loss_grid(sizes, repeats, max_seconds):
    import keras
    import numpy as np

    from keras_triplet import losses

    rng = np.random.default_rng(0)
    for miner in MINERS:
        loss = losses.TripletLoss(margin=0.2, miner=miner)
        step = _loss_and_gradient_fn(loss)
        for b in sizes:
            labels = np.repeat(np.arange(b // K), K).astype("int32")
            x = rng.normal(size=(b, DIM)).astype("float32")
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            labels_t, x_t = keras.ops.convert_to_tensor(labels), keras.ops.convert_to_tensor(x)
            row = {"kind": "loss", "loss": miner, "batch": b}
            try:
                _reset_peak_memory()
                start = time.perf_counter()
                _block(step(labels_t, x_t))
                row["first_s"] = time.perf_counter() - start
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    _block(step(labels_t, x_t))
                    times.append(time.perf_counter() - start)
                    if sum(times) > max_seconds * repeats:
                        break
                row["median_ms"] = 1e3 * float(np.median(times))
                row["peak_mb"] = _peak_memory_mb()
            except Exception as error:  # out of memory: report it and stop growing B
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
            print(json.dumps(row), flush=True)
            if "error" in row or row["median_ms"] / 1e3 > max_seconds:
                break


def _app_networks(smoke):
    sys.path.insert(0, ROOT)
    from apps.audio_similarity.model import build_embedder as audio_embedder
    from apps.signature_verification.model import build_embedder as signature_embedder

    if smoke:
        return {
            "audio": (lambda: audio_embedder(frames=32, n_mels=16, width=4), (32, 16, 1)),
            "signature": (lambda: signature_embedder(input_shape=(32, 64, 1), width=0.25), (32, 64, 1)),
        }
    return {
        "audio": (lambda: audio_embedder(), (96, 64, 1)),
        "signature": (lambda: signature_embedder(), (64, 128, 1)),
    }


def run_fit_throughput(smoke, batch_size, steps, repeats):
    import keras
    import numpy as np

    from keras_triplet import TripletModel, losses

    mixed = "mixed_float16" if _device_kind() == "gpu" else "mixed_bfloat16"
    for a, (app, (build, shape)) in enumerate(_app_networks(smoke).items()):
        for p, precision in enumerate(("float32", mixed)):
            for m, mode in enumerate(("no mining (MSE)", "semi-hard")):
                if smoke and (a + p + m) % 2:
                    # Half the runs, every pair of app, precision and mode still met
                    # once: each fit compiles a fresh network, the most of a smoke run.
                    continue
                keras.config.set_dtype_policy(precision)
                keras.utils.set_random_seed(0)
                rng = np.random.default_rng(0)
                n = batch_size * steps
                x = rng.normal(size=(n, *shape)).astype("float32")
                y = np.repeat(np.arange(n // K) % 64, K).astype("int32")
                model = TripletModel(build())
                if mode == "semi-hard":
                    loss, target = losses.TripletLoss(margin=0.2), y
                else:
                    loss = "mse"
                    target = np.eye(64, model.embedder.output_shape[-1], dtype="float32")[y]
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
                if not smoke:  # compile first, untimed (a smoke run only checks that it runs)
                    model.fit(x[: 2 * batch_size], target[: 2 * batch_size], batch_size=batch_size, verbose=0)
                rates = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model.fit(x, target, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
                    rates.append(n / (time.perf_counter() - start))
                keras.config.set_dtype_policy("float32")
                row = {
                    "kind": "fit",
                    "app": app,
                    "precision": precision,
                    "mode": mode,
                    "batch": batch_size,
                    "samples_per_s": float(np.median(rates)),
                }
                print(json.dumps(row), flush=True)


def worker(args):
    import keras

    print(
        json.dumps(
            {
                "kind": "device",
                "backend": keras.backend.backend(),
                "device": _device_kind(),
                "name": _device_name(),
                "keras": keras.__version__,
            }
        ),
        flush=True,
    )
    sizes = SMOKE_SIZES if args.smoke else tuple(int(b) for b in args.sizes.split(","))
    run_loss_grid(sizes, repeats=2 if args.smoke else args.repeats, max_seconds=args.max_seconds)
    run_fit_throughput(
        args.smoke,
        batch_size=16 if args.smoke else args.fit_batch,
        steps=1 if args.smoke else args.fit_steps,
        repeats=1 if args.smoke else args.repeats,
    )


# ----------------------------------------------------------------------------- driver side


def run_backend(backend, args):
    """Runs the worker for one backend; returns its rows (and the error text, if it failed)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--sizes", args.sizes]
    command += ["--repeats", str(args.repeats), "--max-seconds", str(args.max_seconds)]
    command += ["--fit-batch", str(args.fit_batch), "--fit-steps", str(args.fit_steps)]
    command += ["--smoke"] if args.smoke else []
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    error = None
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    return rows, error


def _cell(row):
    if "error" in row:
        return "out of memory" if "memory" in row["error"].lower() else row["error"]
    memory = "—" if row.get("peak_mb") is None else f"{row['peak_mb']:.0f} MB"
    return f"{row['median_ms']:.1f} ms / {memory}"


def markdown(results, args):
    lines = [f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`", ""]
    devices = {b: next((r for r in rows if r["kind"] == "device"), None) for b, (rows, _) in results.items()}
    for backend, device in devices.items():
        if device:
            lines.append(f"- {backend}: {device['device']} ({device['name']}), keras {device['keras']}")
    for backend, (_, error) in results.items():
        if error:
            lines.append(f"- {backend}: FAILED: {error}")
    sizes = sorted({r["batch"] for rows, _ in results.values() for r in rows if r["kind"] == "loss"})
    lines += ["", "**Loss grid** (forward + backward, D = 128; median time / peak device memory)", ""]
    lines.append("| backend | loss | " + " | ".join(f"B = {b:,}" for b in sizes) + " |")
    lines.append("|---|---|" + "---:|" * len(sizes))
    for backend, (rows, _) in results.items():
        for miner in MINERS:
            cells = {r["batch"]: _cell(r) for r in rows if r["kind"] == "loss" and r["loss"] == miner}
            if cells:
                lines.append(
                    f"| {backend} | {miner} | " + " | ".join(cells.get(b, "not run") for b in sizes) + " |"
                )
    lines += ["", "**Training throughput** (`TripletModel.fit`, samples/s, median of the timed epochs)", ""]
    lines.append("| backend | app | precision | no mining (MSE) | semi-hard | mining overhead |")
    lines.append("|---|---|---|---:|---:|---:|")
    for backend, (rows, _) in results.items():
        fits = [r for r in rows if r["kind"] == "fit"]
        for app, precision in dict.fromkeys((r["app"], r["precision"]) for r in fits):
            rate = {
                r["mode"]: r["samples_per_s"] for r in fits if (r["app"], r["precision"]) == (app, precision)
            }
            plain, mined = rate.get("no mining (MSE)"), rate.get("semi-hard")
            overhead = f"{100 * (plain / mined - 1):+.0f} %" if plain and mined else ""
            plain, mined = (f"{r:.0f}" if r else "not run" for r in (plain, mined))
            lines.append(f"| {backend} | {app} | {precision} | {plain} | {mined} | {overhead} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device (the test suite's run)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--sizes", default=",".join(str(b) for b in GRID_SIZES), help="loss-grid batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls / epochs (median)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="stop growing B past this per call")
    parser.add_argument("--fit-batch", type=int, default=256)
    parser.add_argument("--fit-steps", type=int, default=20, help="batches per timed epoch")
    parser.add_argument("--output", help="also write the Markdown table to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = {}
    for backend in args.backends.split(","):
        print(f"[gpu.py] {backend} ...", file=sys.stderr, flush=True)
        results[backend] = run_backend(backend, args)
    table = markdown(results, args)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)
    return 1 if any(error for _, error in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
