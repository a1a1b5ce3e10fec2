"""The benchmark scripts run: `benchmarks/gpu.py --smoke` and a tiny `benchmarks/losses.py` on
this backend, on the CPU, so that the GPU benchmark is known to work before a GPU is at hand
(their figures are not checked: timings never go in assertions)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
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


def test_memory_fit_extrapolates_a_quadratic(tmp_path):
    """`benchmarks/memory_fit.py` recovers `a + b·B + c·B²` from exact points and finds the
    largest multiple of 256 within the budget (pure Python: milliseconds)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import memory_fit
    finally:
        sys.path.pop(0)
    a, b, c = 50.0, 0.01, 16.0 / 2**20  # 16 bytes per B² entry, in MB
    runs = tmp_path / "runs.jsonl"
    with open(runs, "w") as f:
        for size in (1024, 2048, 4096, 8192):
            extra = a + b * size + c * size**2
            f.write(
                json.dumps(
                    {
                        "impl": "ours-jax",
                        "loss_name": "circle",
                        "batch_size": size,
                        "status": "ok",
                        "extra_mb": extra,
                    }
                )
                + "\n"
            )
        f.write(
            json.dumps({"impl": "ours-tf", "loss_name": "circle", "batch_size": 1024, "status": "killed"})
            + "\n"
        )
    cells = memory_fit.load([runs])
    assert list(cells) == [("ours-jax", "circle")]
    fitted = memory_fit.fit(cells[("ours-jax", "circle")])
    np.testing.assert_allclose(fitted, (a, b, c), rtol=1e-6)
    largest = memory_fit.largest_batch(fitted, 16 * 1024.0)
    assert largest % 256 == 0
    assert a + b * largest + c * largest**2 <= 16 * 1024 < a + b * (largest + 256) + c * (largest + 256) ** 2
    assert f"~{largest:,}".replace(",", " ") in memory_fit.table(cells)
    assert "> 8 192 (1× the largest point)" in memory_fit.table(cells, reach=1)
