"""ContrastiveLoss, MultiSimilarityLoss, PairMarginMiner and MultiSimilarityMiner against
golden numbers from pytorch-metric-learning 2.9 (tests/fixtures/pml_pair_losses.json /
.npz, written by tools/fixtures_pml_pair_losses.py): values, gradients with respect to
the embeddings and the mined pairs, on the 22 input batches, to 1e-5.

The mapping (docs/semantics.md, "Contrastive and multi-similarity"):

* PML's `LpDistance(normalize_embeddings=False)` is `distance="euclidean"`, its
  `CosineSimilarity()` is `distance="cosine"` (`d = 1 − s`); PML's default reducer of
  `ContrastiveLoss` (`AvgNonZeroReducer`) is `average="nonzero"`, `MeanReducer` is
  `average="pairs"`;
* `PairMarginMiner(pos_margin, neg_margin)` and `MultiSimilarityMiner(epsilon)` are ours
  with the same arguments (on the cosine, ours compares `d = 1 − s`: the same pairs).

One deliberate difference: PML returns 0 when it is given at most one positive and at
most one negative pair (`GenericPairLoss.compute_loss`); ours computes the loss of that
pair. Those cases are checked against the reference instead (`test_pml_zero_quirk`).
"""

import json
import math
import os

import numpy as np
import pytest
import reference as ref
from conftest import FULL_FIXTURES, to_numpy, value_and_grad
from keras import ops

from keras_triplet import losses, miners

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
DISTANCE = {"lp": "euclidean", "cosine": "cosine"}


@pytest.fixture(scope="module")
def fixtures():
    paths = [
        os.path.join(FIXTURES, n) for n in ("pml_pair_losses.json", "pml_pair_losses.npz", "pml_inputs.npz")
    ]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"pytorch-metric-learning fixtures missing: {', '.join(map(os.path.basename, missing))} "
            "(regenerate with `bash tools/make_fixtures.sh pml`)"
        )
    with open(paths[0]) as f:
        doc = json.load(f)
    return doc, np.load(paths[1]), np.load(paths[2])


def library_miner(case):
    distance = DISTANCE[case["distance"]]
    if case["miner"] == "pair_margin":
        return miners.PairMarginMiner(case["miner_pos_margin"], case["miner_neg_margin"], distance=distance)
    if case["miner"] == "multi_similarity":
        return miners.MultiSimilarityMiner(epsilon=case["epsilon"], distance=distance)
    return None


def library_loss(case):
    distance = DISTANCE[case["distance"]]
    miner = library_miner(case)
    if case["loss"] == "contrastive":
        average = "pairs" if case["reducer"] == "mean" else "nonzero"
        return losses.ContrastiveLoss(
            case["pos_margin"], case["neg_margin"], distance=distance, miner=miner, average=average
        )
    return losses.MultiSimilarityLoss(
        case["alpha"], case["beta"], case["base"], distance=distance, miner=miner
    )


def reference_value(case, labels, x):
    distance = DISTANCE[case["distance"]]
    d = ref.pairwise_distances(x, metric=distance)
    if case["miner"] == "pair_margin":
        pos_margin, neg_margin = case["miner_pos_margin"], case["miner_neg_margin"]
        miner = lambda y, d, r: ref.pair_margin_miner(y, d, r, pos_margin, neg_margin)  # noqa: E731
    elif case["miner"] == "multi_similarity":
        miner = lambda y, d, r: ref.multi_similarity_miner(y, d, r, case["epsilon"])  # noqa: E731
    else:
        miner = None
    if case["loss"] == "contrastive":
        average = "pairs" if case["reducer"] == "mean" else "nonzero"
        return ref.contrastive_loss_from_distances(
            labels, d, case["pos_margin"], case["neg_margin"], average, miner=miner
        )
    return ref.multi_similarity_loss_from_distances(
        labels, d, case["alpha"], case["beta"], case["base"], similarity=distance == "cosine", miner=miner
    )


def pml_zero_quirk(case):
    """PML's `GenericPairLoss` returns 0 when given at most one pair of each kind."""
    return case["num_pos"] <= 1 and case["num_neg"] <= 1


def _kinds(doc):
    return [inp["embedding_kind"] for inp in doc["inputs"]]


def test_reference_against_pml(fixtures):
    """The reference itself against PML (inputs with exact duplicates left out: PML's
    float32 distance between equal rows is rounding noise where the reference has 0)."""
    doc, _, inputs = fixtures
    kinds = _kinds(doc)
    bad, checked = [], 0
    for case in doc["cases"]:
        j = case["input"]
        if kinds[j] == "dup" or pml_zero_quirk(case):
            continue
        want = reference_value(case, inputs[f"labels_{j}"], inputs[f"embeddings_{j}"].astype(np.float64))
        checked += 1
        if not math.isclose(want, case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], j, case["loss"], case["miner"], case["value"], want))
    assert checked > 200
    assert not bad, f"reference vs PML (case, input, loss, miner, PML, reference): {bad}"


def test_values(fixtures):
    doc, _, inputs = fixtures
    bad = []
    for case in doc["cases"]:
        if pml_zero_quirk(case):
            continue
        j = case["input"]
        labels, x = inputs[f"labels_{j}"], inputs[f"embeddings_{j}"]
        got = float(to_numpy(library_loss(case)(labels, x)))
        if not math.isclose(got, case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append(
                (
                    case["case"],
                    j,
                    case["loss"],
                    case["distance"],
                    case["miner"],
                    case["reducer"],
                    case["value"],
                    got,
                )
            )
    assert not bad, f"{len(bad)} differ (case, input, loss, distance, miner, reducer, PML, ours): {bad}"


def test_pml_zero_quirk(fixtures):
    """Where PML returns 0 for a lone pair of each kind, ours is the reference's value."""
    doc, _, inputs = fixtures
    seen = 0
    for case in doc["cases"]:
        if not pml_zero_quirk(case):
            continue
        j = case["input"]
        labels, x = inputs[f"labels_{j}"], inputs[f"embeddings_{j}"]
        got = float(to_numpy(library_loss(case)(labels, x)))
        want = reference_value(case, labels, x.astype(np.float64))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5), case
        seen += 1
    assert seen > 0


def test_gradients(fixtures):
    """Every fourth case by default (all with KERAS_TRIPLET_FULL_FIXTURES=1). Left out:
    the cosine cases on inputs with zero vectors, where PML's `normalize` of a zero row
    has a gradient of ~1e10 (its epsilon) and ours is finite (tests/test_losses_pairs.py
    checks it is)."""
    doc, arrays, inputs = fixtures
    kinds = _kinds(doc)
    bad, checked = [], 0
    for case in doc["cases"]:
        key = f"grad_{case['case']}"
        j = case["input"]
        if not case["has_grad"] or pml_zero_quirk(case):
            continue
        if case["distance"] == "cosine" and kinds[j] == "zeros":
            continue
        if not FULL_FIXTURES and case["case"] % 4:
            continue
        labels, x = ops.convert_to_tensor(inputs[f"labels_{j}"]), inputs[f"embeddings_{j}"]
        loss = library_loss(case)
        _, grad = value_and_grad(lambda e: loss(labels, e), x)
        checked += 1
        if not np.allclose(grad, arrays[key], rtol=1e-4, atol=1e-5):
            bad.append(
                (case["case"], j, case["loss"], case["miner"], float(np.max(np.abs(grad - arrays[key]))))
            )
    assert checked > 50
    assert not bad, f"gradients differ (case, input, loss, miner, max abs error): {bad}"


def test_mined_pairs(fixtures):
    doc, arrays, inputs = fixtures
    kinds = _kinds(doc)
    bad, checked = [], 0
    for case in doc["cases"]:
        j = case["input"]
        if case["miner"] is None or kinds[j] == "dup":
            continue
        labels, x = inputs[f"labels_{j}"], inputs[f"embeddings_{j}"]
        positive, negative = library_miner(case)(labels, embeddings=x)
        checked += 1
        for name, got in (("pos", positive), ("neg", negative)):
            want = arrays[f"{name}_{case['case']}"]
            got = to_numpy(got).astype(bool)
            if not np.array_equal(got, want):
                bad.append((case["case"], j, case["miner"], name, int(np.sum(got != want))))
    assert checked > 50
    assert not bad, f"mined pairs differ (case, input, miner, kind, #entries): {bad}"
