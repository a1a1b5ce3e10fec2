"""The benchmark scripts run: `benchmarks/gpu.py --smoke` and a tiny `benchmarks/losses.py` on
this backend, on the CPU, so that the GPU benchmark is known to work before a GPU is at hand
(their figures are not checked: timings never go in assertions)."""

import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_benchmark_smoke(tmp_path):
    backend = keras.backend.backend()
    output = tmp_path / "gpu.md"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--backends", backend, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = output.read_text()
    for miner in ("semi-hard", "batch-hard", "batch-all"):
        assert f"| {backend} | {miner} | " in table and " ms / " in table, table
    for app in ("audio", "signature"):
        assert f"| {backend} | {app} | float32 |" in table, table
        assert f"| {backend} | {app} | mixed_bfloat16 |" in table, table
    assert "FAILED" not in table, table


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="the loss zoo's smoke run is backend-agnostic Keras code: it runs once, in the "
    "PyTorch pass (the shortest; JAX compiles every fresh network, ~2 min)",
)
def test_loss_zoo_smoke(tmp_path):
    """`benchmarks/loss_zoo.py --smoke`: two losses on both tasks (tiny data, a few eager
    steps), every row of the tables there, and a rerun resumes (it trains nothing)."""
    backend = keras.backend.backend()
    command = [
        sys.executable, "benchmarks/loss_zoo.py", "--smoke",
        "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "FAILED" not in done.stdout, done.stdout
    for task, baseline in (("audio", "MFCC mean+std"), ("signature", "HOG")):
        assert f"**{task}**" in done.stdout, done.stdout
        assert f"| *baseline: {baseline}" in done.stdout, done.stdout
    assert done.stdout.count("| *untrained network* |") == 2, done.stdout
    for loss in ("triplet batch-hard", "proxy-anchor"):
        assert done.stdout.count(f"| {loss} | ") == 2, done.stdout
    runs = (tmp_path / "results" / "runs.jsonl").read_text().splitlines()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert (tmp_path / "results" / "runs.jsonl").read_text().splitlines() == runs
    assert ": val " not in again.stdout  # no run logged: every run was found


def test_loss_benchmark_smoke(tmp_path):
    """`benchmarks/losses.py` runs a pair loss (with its miner) and a class-weight loss on
    this backend, selected with `--losses`, `--impls` and `--batch-sizes`, tiny."""
    backend = keras.backend.backend()
    impl = {"tensorflow": "ours-tf", "jax": "ours-jax", "torch": "ours-torch"}[backend]
    output = tmp_path / "losses.md"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/losses.py",
            "--python",
            sys.executable,
            "--impls",
            impl,
            "--losses",
            "multi-similarity",
            "proxy-anchor",
            "--batch-sizes",
            "8",
            "--dim",
            "4",
            "--num-classes",
            "3",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--no-floor",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = output.read_text()
    for loss in ("multi-similarity", "proxy-anchor"):
        assert f"| {loss} | 8 | " in table and " ms / " in table, table
    assert "error" not in table, table
