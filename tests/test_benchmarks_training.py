"""The training-overhead benchmarks run on this backend, tiny: `benchmarks/mining.py` (the
mining part of a step, with and without the statistics) and `benchmarks/training.py`
(`fit`, with `--statistics-freq`). Their figures are not checked: timings never go in
assertions."""

import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend(), OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_mining_benchmark_smoke():
    out = run(
        "benchmarks/mining.py", "--classes-per-batch", "2", "--samples-per-class", "2", "--dim", "4",
        "--repeats", "1", "--miners", "semi-hard", "--step-ms", "50",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith(f"| {keras.backend.backend()} (")]
    assert len(rows) == 1 and rows[0].count("|") == 9 and " % / " in rows[0], out


def test_training_benchmark_smoke():
    out = run(
        "benchmarks/training.py", "--batch-size", "4", "--classes-per-batch", "2", "--size", "4",
        "--dim", "4", "--steps", "1", "--repeats", "1", "--kinds", "triplet-model-mse,batch-all",
        "--statistics-freq", "1,3",
    )  # fmt: skip
    for kind in ("triplet-model-mse", "batch-all", "batch-all/3"):
        assert f"| {keras.backend.backend()} | {kind} | " in out, out
