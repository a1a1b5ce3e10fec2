"""Ours on eager PyTorch against pytorch-metric-learning in ONE process, turn about.

`losses.py` runs every cell in a fresh process, which measures peak memory cleanly but
compares times taken minutes apart: on a shared machine the load moves between the two
runs of a cell. Here both steps of a cell run in the same process, alternating in rounds
(ours then PML, PML then ours), timed in CPU time on one thread, so both see the same
load, caches and allocator; the table gives the median of the rounds and PML ÷ ours
(above 1: ours is faster). The inputs, losses and parameters are `losses.py`'s (its
`_ours_step` and `_reference_runner.pml_step`).

pytorch-metric-learning comes from the reference environment's site-packages
(`tools/make_reference_envs.sh`), appended to the path, so the project's own torch,
numpy and keras are the ones imported: both venvs pin the same torch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/torch_vs_pml.py --batch-sizes 256 1024 --losses arcface cosface
"""

import argparse
import glob
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _reference_runner as runner  # noqa: E402  (stdlib + numpy only)

ALL_LOSSES = runner.PAIR_LOSSES + runner.CLASS_WEIGHT_LOSSES
# PML's lifted structure and NT-Xent build B³-sized arrays: beyond B = 256 they do not fit.
PML_CANNOT_RUN = {("lifted", 1024), ("lifted", 4096), ("ntxent", 1024), ("ntxent", 4096)}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", choices=ALL_LOSSES, default=list(ALL_LOSSES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds per cell (default 11)")
    parser.add_argument(
        "--calls-per-round", type=int, default=0, help="0: by batch size (at least ~20 ms a round)"
    )
    parser.add_argument(
        "--pml-site-packages",
        default=None,
        help="pytorch-metric-learning's site-packages (default: .venv-pml's)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ["KERAS_BACKEND"] = "torch"
    site = args.pml_site_packages or next(
        iter(glob.glob(os.path.join(ROOT, ".venv-pml/lib/python3*/site-packages"))), None
    )
    if site is None or not os.path.isdir(os.path.join(site, "pytorch_metric_learning")):
        raise SystemExit(
            "pytorch-metric-learning not found: run tools/make_reference_envs.sh or pass --pml-site-packages."
        )
    sys.path.append(site)
    import torch

    torch.set_num_threads(1)
    import losses as grid

    print(
        f"# ours (keras_triplet, eager PyTorch {torch.__version__}) against pytorch-metric-learning, one process, CPU time"
    )
    print(
        f"# rounds: {args.rounds}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| loss | B | ours ms | PML ms | PML ÷ ours | loss ours / PML |")
    print("|---|---|---|---|---|---|")
    for loss in args.losses:
        for b in args.batch_sizes:
            if (loss, b) in PML_CANNOT_RUN:
                print(f"| {loss} | {b} | | cannot run | | |", flush=True)
                continue
            cell = argparse.Namespace(
                loss=loss, batch_size=b, dim=128, k=4, margin=0.2, seed=0, num_classes=1000
            )
            ours, _ = grid._ours_step("ours-torch", cell)
            pml, _ = runner.pml_step(cell)
            value_ours, value_pml = ours()[0], pml()[0]
            ours(), pml()
            t0 = time.process_time()
            ours()
            once = max(time.process_time() - t0, 1e-4)
            n = args.calls_per_round or max(1, int(0.02 / once))
            times = {"ours": [], "pml": []}
            for r in range(args.rounds):
                order = (("ours", ours), ("pml", pml)) if r % 2 == 0 else (("pml", pml), ("ours", ours))
                for name, step in order:
                    t0 = time.process_time()
                    for _ in range(n):
                        step()
                    times[name].append((time.process_time() - t0) / n * 1e3)
            mo, mp = statistics.median(times["ours"]), statistics.median(times["pml"])
            print(
                f"| {loss} | {b} | {mo:.3g} | {mp:.3g} | {mp / mo:.2f} | {value_ours:.5f} / {value_pml:.5f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
