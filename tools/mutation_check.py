"""A small mutation check: does the test suite catch the bugs a user would care about?

Each mutant is a bug written by hand: text patches (file, exact original text,
replacement) or a runtime monkeypatch loaded as a pytest plugin. Each is applied to a
fresh copy of the repository (the files `git ls-files` lists, plus untracked ones that
git does not ignore) and only the tests that should catch it run there, on one backend.
A mutant is *caught* when those tests fail (pytest exit status 1). A patch whose original
text is not found exactly once is reported as NOT APPLIED, an error: the table below is
written against today's files and must follow them when code moves.

    python tools/mutation_check.py                      # all mutants, KERAS_BACKEND or jax
    python tools/mutation_check.py --backend torch      # another backend
    python tools/mutation_check.py --only hinge margin  # mutants whose name contains a word
    python tools/mutation_check.py --list               # the table, nothing run

Prints "mutant | backend | caught by | result" and the score; exits 1 unless every
mutant was applied and caught. Before the mutants, the same test selections run on the
unmutated copy: a selection that already fails would catch everything.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
STOP_AT_FIRST_FAILURE = True  # pytest -x: the first test that catches a mutant is enough


@dataclass
class Mutant:
    name: str
    tests: list  # pytest arguments: files or node ids, relative to the repository root
    patches: list = field(default_factory=list)  # (file, exact original text, replacement)
    plugin: str = ""  # source of a pytest plugin applying a runtime monkeypatch
    every_backend: bool = False  # run on all three backends, whatever --backend says


# Every Keras optimizer step a no-op: `apply` (TensorFlow and PyTorch trainers),
# `apply_gradients`, `stateless_apply` (JAX trainer), also for the loss-scale optimizer.
NO_OPTIMIZER_STEPS = """
import keras

def _apply(self, grads, trainable_variables=None):
    return None

def _apply_gradients(self, grads_and_vars):
    return self.iterations

def _stateless_apply(self, optimizer_variables, grads, trainable_variables):
    return list(trainable_variables), list(optimizer_variables)

for _cls in (keras.optimizers.Optimizer, keras.optimizers.LossScaleOptimizer):
    _cls.apply = _apply
    _cls.apply_gradients = _apply_gradients
    _cls.stateless_apply = _stateless_apply
"""

# ---------------------------------------------------------------------------------------
# THE TABLE. Paths and texts are those of today's files; update them when code moves.
# ---------------------------------------------------------------------------------------
MUTANTS = [
    Mutant(
        "optimizer steps are no-ops",
        tests=["tests/test_learning.py"],
        plugin=NO_OPTIMIZER_STEPS,
        every_backend=True,
    ),
    Mutant(
        "optimizer steps are no-ops (signature fine-tuning)",
        tests=["tests/test_signature_training.py::test_fine_tuned_model_learns_and_beats_raw_pixels"],
        plugin=NO_OPTIMIZER_STEPS,
        every_backend=True,
    ),
    Mutant(
        "signature train --init ignored (a new network instead)",
        tests=["tests/test_signature_training.py::test_fine_tuned_model_learns_and_beats_raw_pixels"],
        patches=[
            (
                "apps/signature_verification/training.py",
                "    if init is None:\n        model = build_model(",
                "    if True:\n        model = build_model(",
            )
        ],
    ),
    Mutant(
        "triplet hinge max(0, x) -> x",
        tests=["tests/test_losses.py"],
        patches=[
            (
                "keras_triplet/losses/triplet.py",
                "pair_loss = pair * ops.relu(count * (distances + margin) - negative_sum)",
                "pair_loss = pair * (count * (distances + margin) - negative_sum)",
            )
        ],
    ),
    Mutant(
        "triplet margin ignored",
        tests=["tests/test_losses.py"],
        patches=[
            (
                "keras_triplet/losses/triplet.py",
                "pair_loss = pair * ops.relu(count * (distances + margin) - negative_sum)",
                "pair_loss = pair * ops.relu(count * distances - negative_sum)",
            )
        ],
    ),
    Mutant(
        "semi-hard picks the closest negative, whatever d(a, p)",
        tests=["tests/test_miners.py", "tests/test_negatives.py"],
        patches=[
            (  # the sorted search: the first sorted negative
                "keras_triplet/miners/search/sorted_negatives.py",
                "first_farther = self.count_within(0.0, inclusive=True)",
                "first_farther = 0 * self.count_within(0.0, inclusive=True)",
            ),
            (  # the direct search: every negative lies above a threshold of -1
                "keras_triplet/miners/search/direct_negatives.py",
                "beyond = ops.stop_gradient(rows) > ops.expand_dims(self._thresholds, 2)",
                "beyond = ops.stop_gradient(rows) > ops.expand_dims(self._thresholds * 0.0 - 1.0, 2)",
            ),
        ],
    ),
    Mutant(
        "batch-hard picks the easiest positive",
        tests=["tests/test_miners.py"],
        patches=[
            (
                "keras_triplet/miners/batch_hard.py",
                "hardest_positive, has_positive = masked_argmax(distances, positive)",
                "hardest_positive, has_positive = masked_argmin(distances, positive)",
            )
        ],
    ),
    Mutant(
        "recall@K counts K + 1 neighbours",
        tests=["tests/test_metrics.py", "tests/test_metrics_pml.py"],
        patches=[
            (
                "keras_triplet/metrics/retrieval.py",
                "hits[kk].append(np.any(rel[:, :kk] > 0, axis=1).astype(np.float64))",
                "hits[kk].append(np.any(rel[:, :kk + 1] > 0, axis=1).astype(np.float64))",
            )
        ],
    ),
    Mutant(
        "MAP@R divided by the neighbours kept, not R",
        tests=["tests/test_metrics.py", "tests/test_metrics_pml.py"],
        patches=[
            (
                "keras_triplet/metrics/retrieval.py",
                "map_r.append(np.sum(precision_at_i * rel_r, axis=1) / r)",
                "map_r.append(np.sum(precision_at_i * rel_r, axis=1) / k)",
            )
        ],
    ),
    Mutant(
        "EER threshold at the ROC point after the crossing",
        tests=["tests/test_metrics.py"],
        patches=[
            (
                "keras_triplet/metrics/verification.py",
                "threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])",
                "threshold = thresholds[i]",
            )
        ],
    ),
    Mutant(
        "EER threshold at the ROC point before the crossing",
        tests=["tests/test_metrics.py"],
        patches=[
            (
                "keras_triplet/metrics/verification.py",
                "threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])",
                "threshold = thresholds[i - 1]",
            )
        ],
    ),
    Mutant(
        "index checksum skips the ids",
        tests=["tests/test_index.py"],
        patches=[
            (
                "keras_triplet/index/file_format.py",
                "    for name in sorted(arrays):\n        a = np.ascontiguousarray(arrays[name])",
                '    for name in sorted(n for n in arrays if n != "ids"):\n        a = np.ascontiguousarray(arrays[name])',
            )
        ],
    ),
    Mutant(
        "audio app's evaluate scores against permuted labels",
        tests=["tests/test_audio_app.py"],
        patches=[
            (
                "apps/audio_similarity/evaluation.py",
                'result = score_embeddings(emb, fs.labels, "euclidean")',
                'result = score_embeddings(emb, __import__("numpy").random.default_rng(0).permutation(fs.labels), "euclidean")',
            )
        ],
    ),
    Mutant(
        "signature app's evaluation scores against permuted writers",
        tests=["tests/test_signature_app.py"],
        patches=[
            (
                "apps/signature_verification/evaluation.py",
                "scores = protocol.verification_scores(embeddings, writers, genuine, references, rule, seed)",
                "scores = protocol.verification_scores(\n"
                "        embeddings, np.random.default_rng(0).permutation(writers), genuine, references, rule, seed)",
            )
        ],
    ),
]


# ---------------------------------------------------------------------------------------


def repository_files():
    """The files of the working tree that git tracks or would track (not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def fresh_copy(files, into):
    for path in files:
        target = os.path.join(into, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), target)


def apply_patches(copy, patches):
    """Applies each patch in `copy`; returns the reasons of those that could not be."""
    problems = []
    for path, original, replacement in patches:
        target = os.path.join(copy, path)
        if not os.path.exists(target):
            problems.append(f"{path}: file not found")
            continue
        with open(target, encoding="utf-8") as f:
            text = f.read()
        count = text.count(original)
        if count != 1:
            problems.append(f"{path}: original text found {count} times (expected once): {original[:60]!r}")
            continue
        with open(target, "w", encoding="utf-8") as f:
            f.write(text.replace(original, replacement))
    return problems


def run_pytest(copy, tests, backend, plugin="", timeout=1200):
    """`(exit status, failed test ids, seconds)` of pytest on `tests` in `copy`."""
    args = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    if STOP_AT_FIRST_FAILURE:
        args.insert(4, "-x")
    if plugin:
        with open(os.path.join(copy, "_mutant_plugin.py"), "w", encoding="utf-8") as f:
            f.write(plugin)
        args[4:4] = ["-p", "_mutant_plugin"]
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=copy, PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    try:
        out = subprocess.run(args, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, [], time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, flags=re.MULTILINE)
    if out.returncode not in (0, 1):
        failed.append(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:])
    return out.returncode, failed, time.perf_counter() - start


def check(mutant, backend, files, keep):
    """One row of the table: `(caught by, result)`."""
    copy = tempfile.mkdtemp(prefix="mutant-")
    try:
        fresh_copy(files, copy)
        problems = apply_patches(copy, mutant.patches)
        if problems:
            return "; ".join(problems), "NOT APPLIED"
        status, failed, seconds = run_pytest(copy, mutant.tests, backend, mutant.plugin)
        if status is None:
            return "timed out", "ERROR"
        if status == 1:
            return ", ".join(t.split("/")[-1] for t in failed) or "(failed)", f"caught ({seconds:.0f} s)"
        if status == 0:
            return "-", f"ESCAPED ({seconds:.0f} s)"
        return " ".join(failed), f"ERROR (pytest exit {status})"
    finally:
        if keep:
            print(f"  kept {copy}", file=sys.stderr)
        else:
            shutil.rmtree(copy, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "jax"),
        help="the backend of the mutants not marked every_backend (default: KERAS_BACKEND or jax)",
    )
    parser.add_argument(
        "--only", nargs="*", default=(), help="run the mutants whose name contains one of these words"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    parser.add_argument(
        "--keep", action="store_true", help="keep the mutated copies (their paths go to stderr)"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants and their tests; run nothing")
    parser.add_argument(
        "--dry-run", action="store_true", help="apply each mutant's patches to a copy; run no test"
    )
    parser.add_argument(
        "--every-failure",
        action="store_true",
        help="run every selected test (no -x), to list all the tests that catch a mutant",
    )
    args = parser.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.only or any(w in m.name for w in args.only)]
    runs = [(m, b) for m in mutants for b in (BACKENDS if m.every_backend else (args.backend,))]
    if args.list:
        for m, b in runs:
            print(f"{m.name} | {b} | {' '.join(m.tests)}")
        return 0
    files = repository_files()
    global STOP_AT_FIRST_FAILURE
    STOP_AT_FIRST_FAILURE = not args.every_failure
    if args.dry_run:
        bad = 0
        for m in mutants:
            copy = tempfile.mkdtemp(prefix="mutant-")
            try:
                fresh_copy(files, copy)
                problems = apply_patches(copy, m.patches)
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            bad += bool(problems)
            print(f"{m.name} | {'NOT APPLIED: ' + '; '.join(problems) if problems else 'applies'}")
        return 1 if bad else 0

    if not args.no_baseline:
        for backend in sorted({b for _, b in runs}):
            tests = sorted({t for m, b in runs if b == backend for t in m.tests})
            copy = tempfile.mkdtemp(prefix="mutant-baseline-")
            try:
                fresh_copy(files, copy)
                status, failed, seconds = run_pytest(copy, tests, backend)
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            print(f"baseline ({backend}, unmutated, {seconds:.0f} s): pytest exit {status}", flush=True)
            if status != 0:
                print(f"the selected tests fail without a mutant: {failed}", file=sys.stderr)
                return 2

    rows = []
    for mutant, backend in runs:
        caught_by, result = check(mutant, backend, files, args.keep)
        rows.append((mutant.name, backend, caught_by, result))
        print(f"{mutant.name} | {backend} | {caught_by} | {result}", flush=True)

    width = [max(len(r[i]) for r in rows + [("mutant", "backend", "caught by", "result")]) for i in range(4)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(("mutant", "backend", "caught by", "result"), width)))
    print("-|-".join("-" * w for w in width))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, width)))
    caught = sum(r[3].startswith("caught") for r in rows)
    not_applied = sum(r[3] == "NOT APPLIED" for r in rows)
    print(
        f"\nscore: {caught}/{len(rows)} mutants caught"
        + (f"; {not_applied} NOT APPLIED (update the table)" if not_applied else "")
    )
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
