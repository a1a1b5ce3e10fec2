#!/usr/bin/env bash
# Build the two reference virtualenvs used to make golden fixtures and to benchmark
# against the original implementations:
#
#   .venv-tfa  Python 3.11, tensorflow(-cpu) 2.15, tensorflow-addons 0.23.0, numpy<2
#   .venv-pml  Python 3.11, torch 2.13.0 (local CPU build), pytorch-metric-learning 2.9.0,
#              faiss-cpu (PML's AccuracyCalculator imports faiss)
#
# Both live in the repository root (git-ignored through `.venv-*`). The script is
# idempotent: an environment whose imports already work is left alone.
#
# Usage: bash tools/make_reference_envs.sh [tfa|pml ...]   (default: both)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
TFA_VENV="$ROOT/.venv-tfa"
PML_VENV="$ROOT/.venv-pml"

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tfa pml)

tfa_ok() {
    [ -x "$TFA_VENV/bin/python" ] && "$TFA_VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import warnings
warnings.filterwarnings("ignore")
import tensorflow as tf
import tensorflow_addons as tfa
assert tf.__version__.startswith("2.15"), tf.__version__
assert tfa.__version__ == "0.23.0", tfa.__version__
EOF
}

pml_ok() {
    [ -x "$PML_VENV/bin/python" ] && "$PML_VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import torch
import pytorch_metric_learning
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
assert torch.__version__.startswith("2.13.0"), torch.__version__
EOF
}

build_tfa() {
    if tfa_ok; then
        echo "[make_reference_envs] .venv-tfa already works; skipping"
        return
    fi
    echo "[make_reference_envs] building .venv-tfa"
    rm -rf "$TFA_VENV"
    "$PYTHON" -m venv "$TFA_VENV"
    "$TFA_VENV/bin/pip" install -q --upgrade pip
    # tensorflow-cpu is the small CPU-only wheel; fall back to the full wheel if it is missing.
    if ! "$TFA_VENV/bin/pip" install -q "tensorflow-cpu==2.15.*" "tensorflow-addons==0.23.0" "numpy<2"; then
        "$TFA_VENV/bin/pip" install -q "tensorflow==2.15.*" "tensorflow-addons==0.23.0" "numpy<2"
    fi
    tfa_ok || { echo "[make_reference_envs] .venv-tfa: import tensorflow_addons failed" >&2; exit 1; }
}

build_pml() {
    if pml_ok; then
        echo "[make_reference_envs] .venv-pml already works; skipping"
        return
    fi
    echo "[make_reference_envs] building .venv-pml"
    rm -rf "$PML_VENV"
    "$PYTHON" -m venv "$PML_VENV"
    "$PML_VENV/bin/pip" install -q --upgrade pip
    # torch==2.13.0 is pinned on purpose: it is the local CPU build (no CUDA download).
    "$PML_VENV/bin/pip" install -q "torch==2.13.0" "pytorch-metric-learning==2.9.0" faiss-cpu
    pml_ok || { echo "[make_reference_envs] .venv-pml: import pytorch_metric_learning failed" >&2; exit 1; }
}

for t in "${targets[@]}"; do
    case "$t" in
        tfa) build_tfa ;;
        pml) build_pml ;;
        *) echo "unknown target '$t' (expected tfa or pml)" >&2; exit 2 ;;
    esac
done

for t in "${targets[@]}"; do
    case "$t" in
        tfa) "$TFA_VENV/bin/python" -c 'import warnings; warnings.filterwarnings("ignore"); import numpy, tensorflow as tf, tensorflow_addons as tfa; print(f"[make_reference_envs] .venv-tfa: tensorflow {tf.__version__}, tensorflow-addons {tfa.__version__}, numpy {numpy.__version__}")' 2>/dev/null ;;
        pml) "$PML_VENV/bin/python" -c 'import numpy, torch, pytorch_metric_learning as pml, faiss; print(f"[make_reference_envs] .venv-pml: torch {torch.__version__}, pytorch-metric-learning {pml.__version__}, faiss {faiss.__version__}, numpy {numpy.__version__}")' ;;
    esac
done
