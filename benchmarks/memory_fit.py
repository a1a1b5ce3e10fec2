"""The largest batch whose loss fits in a memory budget, extrapolated from measured points.

Reads the JSON lines of ``benchmarks/losses.py --json`` (peak extra memory of one forward +
backward pass per implementation, loss and batch size), fits ``a + b·B + c·B²`` MB to each
(implementation, loss) by least squares, and reports the largest ``B`` (a multiple of
``--multiple``) whose predicted peak stays within ``--budget-gb``. Batch losses hold a few
``[B, B]`` arrays, so the quadratic term dominates at large ``B``; ``c`` is kept ``≥ 0``
(a negative fit, measurement noise, falls back to a line).

The prediction is an **extrapolation** from the measured points (which the table lists),
for the machine and backend they were measured on: on a GPU the constants differ (other
kernels, allocators and fusions; compilation memory is host memory there).

Usage (from the repository root)::

    .venv/bin/python benchmarks/losses.py --threads 1 --warmup 1 --repeats 1 --no-floor \\
        --batch-sizes 1024 2048 4096 --json runs.jsonl
    .venv/bin/python benchmarks/memory_fit.py runs.jsonl --budget-gb 16
"""

import argparse
import json
import math
import sys

IMPL_TITLES = {"ours-tf": "TF (XLA)", "ours-jax": "JAX (jit)", "ours-torch": "torch (eager)"}


def load(paths):
    """`{(impl, loss): {B: extra MB}}` from JSON-lines files; a later run of the same cell
    replaces an earlier one (re-measured after a change)."""
    cells = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r.get("status") != "ok" or r.get("extra_mb") is None:
                    continue
                cells.setdefault((r["impl"], r["loss_name"]), {})[int(r["batch_size"])] = float(r["extra_mb"])
    return cells


def fit(points):
    """`(a, b, c)`: the least-squares `a + b·B + c·B²` (MB) through `{B: MB}`, `c ≥ 0`
    (else the least-squares line, `c = 0`); a constant for a single point."""
    xs = sorted(points)
    ys = [points[x] for x in xs]
    if len(xs) == 1:
        return ys[0], 0.0, 0.0
    if len(xs) >= 3:
        a, b, c = _least_squares(xs, ys, 3)
        if c >= 0:
            return a, b, c
    a, b = _least_squares(xs, ys, 2)
    return a, b, 0.0


def _least_squares(xs, ys, terms):
    """The polynomial coefficients (constant first) of the least-squares fit, solved from
    the normal equations on `B` scaled to thousands (well conditioned)."""
    scale = 1000.0
    rows = [[(x / scale) ** k for k in range(terms)] for x in xs]
    normal = [[sum(r[i] * r[j] for r in rows) for j in range(terms)] for i in range(terms)]
    rhs = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(terms)]
    solution = _solve(normal, rhs)
    return [coefficient / scale**k for k, coefficient in enumerate(solution)]


def _solve(matrix, rhs):
    """Gaussian elimination with partial pivoting (a 2×2 or 3×3 system)."""
    n = len(rhs)
    m = [list(row) + [value] for row, value in zip(matrix, rhs)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[col][col] != 0:
                factor = m[r][col] / m[col][col]
                m[r] = [u - factor * v for u, v in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def largest_batch(coefficients, budget_mb, multiple=256):
    """The largest multiple of `multiple` with `a + b·B + c·B² ≤ budget_mb`, or None if
    not even `multiple` fits; `math.inf` if the fit never reaches the budget."""
    a, b, c = coefficients
    if c > 0:
        top = (
            (-b + math.sqrt(b * b - 4 * c * (a - budget_mb))) / (2 * c)
            if b * b >= 4 * c * (a - budget_mb)
            else 0
        )
    elif b > 0:
        top = (budget_mb - a) / b
    else:
        return math.inf
    found = int(top // multiple) * multiple
    return found if found >= multiple else None


def table(cells, budget_gb=16.0, multiple=256, reach=8):
    """The Markdown table: per loss and implementation, the measured points, the fit and
    the predicted largest batch (shown as a lower bound beyond `reach` times the largest
    measured batch: a fit that far out says little more than "not the limit")."""
    budget_mb = budget_gb * 1024.0
    lines = [
        f"| loss | backend | measured peak extra MB (B: MB) | fit a + b·B + c·B² (MB) | "
        f"largest B within {budget_gb:g} GB (extrapolated) |",
        "|---|---|---|---|---|",
    ]
    losses = list(dict.fromkeys(loss for _, loss in cells))  # in the order first measured
    for loss in losses:
        for impl in sorted(IMPL_TITLES, key=list(IMPL_TITLES).index):
            points = cells.get((impl, loss))
            if not points:
                continue
            measured = ", ".join(f"{x}: {points[x]:.0f}" for x in sorted(points))
            if len(points) < 3:
                lines.append(f"| {loss} | {IMPL_TITLES[impl]} | {measured} | (fewer than 3 points) | — |")
                continue
            a, b, c = fit(points)
            found = largest_batch((a, b, c), budget_mb, multiple)
            formula = f"{a:.0f} {_signed(b * 1e3, 2)}e-3·B {_signed(c * 1e6, 2)}e-6·B²"
            farthest = reach * max(points)
            if found is None:
                shown = f"< {multiple}"
            elif found > farthest:
                shown = f"> {farthest:,} ({reach}× the largest point)".replace(",", " ")
            else:
                shown = f"~{found:,}".replace(",", " ")
            lines.append(f"| {loss} | {IMPL_TITLES[impl]} | {measured} | {formula} | {shown} |")
    return "\n".join(lines)


def _signed(value, digits):
    return f"{'−' if value < 0 else '+'} {abs(value):.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jsonl", nargs="+", help="JSON lines of benchmarks/losses.py --json")
    parser.add_argument("--budget-gb", type=float, default=16.0, help="memory budget (default 16)")
    parser.add_argument("--multiple", type=int, default=256, help="round B down to this (default 256)")
    parser.add_argument(
        "--reach", type=int, default=8, help="extrapolate at most this many times the largest B (default 8)"
    )
    args = parser.parse_args(argv)
    cells = load(args.jsonl)
    if not cells:
        raise SystemExit("no successful runs in " + ", ".join(args.jsonl))
    print(table(cells, args.budget_gb, args.multiple, args.reach))


if __name__ == "__main__":
    sys.exit(main())
