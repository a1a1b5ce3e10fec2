"""The training-overhead benchmarks run on this backend, tiny and in this process:
`benchmarks/mining.py` (the mining part of a step, with and without the statistics) and
`benchmarks/training.py` (`fit`, with `--statistics-freq`). Their figures are not
checked: timings never go in assertions."""

import importlib.util
import os
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()


def run(script, args, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location(script, os.path.join(ROOT, "benchmarks", f"{script}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [script, *args])
    module.main()
    return capsys.readouterr().out


def test_mining_benchmark_smoke(capsys, monkeypatch):
    out = run(
        "mining",
        ["--classes-per-batch", "2", "--samples-per-class", "2", "--dim", "4", "--repeats", "1",
         "--miners", "semi-hard", "--step-ms", "50"],
        capsys, monkeypatch,
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith(f"| {BACKEND} (")]
    assert len(rows) == 1 and rows[0].count("|") == 12 and " % / " in rows[0], out


def test_training_benchmark_smoke(capsys, monkeypatch):
    out = run(
        "training",
        ["--batch-size", "4", "--classes-per-batch", "2", "--size", "4", "--dim", "4", "--steps", "1",
         "--repeats", "1", "--kinds", "batch-all", "--statistics-freq", "3"],
        capsys, monkeypatch,
    )  # fmt: skip
    assert f"| {BACKEND} | batch-all/3 | " in out, out
