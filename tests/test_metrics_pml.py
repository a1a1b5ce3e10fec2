"""retrieval_metrics against pytorch-metric-learning's AccuracyCalculator.

The fixtures come from the real package (tests/fixtures/pml_accuracy.json, written by
tools/fixtures_pml.py with pytorch-metric-learning 2.9.0): leave-one-out Euclidean kNN,
`precision_at_1`, `r_precision` and `mean_average_precision_at_r`, queries whose class
has no other member left out.
"""

import json
import os

import numpy as np
import pytest

from keras_triplet.metrics import retrieval_metrics

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
JSON = os.path.join(FIXTURES, "pml_accuracy.json")
INPUTS = os.path.join(FIXTURES, "pml_accuracy_inputs.npz")

if not (os.path.exists(JSON) and os.path.exists(INPUTS)):
    pytest.fail(
        "pytorch-metric-learning fixtures missing (tests/fixtures/pml_accuracy.json and "
        "pml_accuracy_inputs.npz; regenerate with tools/fixtures_pml.py)",
        pytrace=False,
    )

with open(JSON) as f:
    SPEC = json.load(f)

KEYS = {
    "precision@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
}


def _inputs(case):
    name = SPEC["inputs_file"]
    with np.load(os.path.join(FIXTURES, name), allow_pickle=False) as f:
        return f[f"embeddings_{case['set']}"], f[f"labels_{case['set']}"]


@pytest.mark.parametrize("case", SPEC["sets"], ids=lambda c: f"set{c['set']}")
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_matches_pytorch_metric_learning(case, chunk_size):
    x, y = _inputs(case)
    assert x.shape == (case["n"], case["dim"])
    got = retrieval_metrics(x, y, ks=(1,), metric="euclidean", chunk_size=chunk_size)
    for ours, theirs in KEYS.items():
        assert got[ours] == pytest.approx(case[theirs], abs=1e-6), ours
    assert got["recall@1"] == got["precision@1"]
    lone = int(sum(size == 1 for size in case["class_sizes"]))
    assert got["num_skipped_queries"] == lone
    assert got["num_queries"] == case["n"] - lone
