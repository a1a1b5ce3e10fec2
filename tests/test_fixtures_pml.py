"""TripletLoss / AngularLoss configured to pytorch-metric-learning's semantics, against
golden numbers from the real package (tests/fixtures/pml_losses.json, pml_inputs.npz).

The mapping (docs/semantics.md):

* `TripletMarginMiner(m, type_of_triplets="all" | "hard" | "semihard")` +
  `TripletMarginLoss(m)` (reducer `AvgNonZeroReducer`) ==
  `TripletLoss(margin=m, miner=BatchAllMiner(margin=m, select="violating" | "hard" |
  "semi-hard"), average="nonzero")`; with PML's `MeanReducer`, `average="triplets"`;
* `BatchHardMiner()` + `TripletMarginLoss(m)` == `TripletLoss(margin=m, miner="batch-hard",
  average="nonzero")` (and `"triplets"` for the `MeanReducer`);
* `AngularLoss(alpha)` == `AngularLoss(alpha)` **on unit-norm embeddings** (what
  `TripletModel` feeds a loss). PML 2.9 L2-normalises the anchors and positives but not
  the negatives `x_n` in `(x_a + x_p)·x_n`; docs/semantics.md (and Wang et al.) normalise
  every embedding, so the two differ on raw embeddings. `test_angular_pml_quirk` pins
  that difference down with a variant of the reference.
"""

import json
import math
import os

import keras
import numpy as np
import pytest
import reference as ref
from conftest import to_numpy

from keras_triplet import losses, miners

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SELECT = {"all": "violating", "hard": "hard", "semihard": "semi-hard"}


@pytest.fixture(scope="module")
def fixtures():
    paths = [os.path.join(FIXTURES, n) for n in ("pml_losses.json", "pml_inputs.npz")]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"pytorch-metric-learning fixtures missing: {', '.join(map(os.path.basename, missing))} "
            "(regenerate with `bash tools/make_fixtures.sh pml`)"
        )
    with open(paths[0]) as f:
        doc = json.load(f)
    return doc, np.load(paths[1])


def _library_loss(case, average):
    if case["kind"] == "angular":
        return losses.AngularLoss(alpha=case["alpha"])
    m = case["margin"]
    if case["kind"] == "batch_hard_miner":
        return losses.TripletLoss(margin=m, miner="batch-hard", average=average)
    miner = miners.BatchAllMiner(margin=m, select=SELECT[case["type_of_triplets"]])
    return losses.TripletLoss(margin=m, miner=miner, average=average)


def pml_angular_loss(labels, x, alpha):
    """PML 2.9's AngularLoss: like ref.angular_loss, but the negatives are not normalised."""
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(x, dtype=np.float64)
    xn = ref.l2_normalize(x)
    t2 = math.tan(math.radians(alpha)) ** 2
    terms = []
    for a, p in ref.positive_pairs(labels):
        s = sum(
            math.exp(4 * t2 * float(np.dot(xn[a] + xn[p], x[n])) - 2 * (1 + t2) * float(np.dot(xn[a], xn[p])))
            for n in ref.negatives_of(labels, a)
        )
        terms.append(math.log1p(s))
    return sum(terms) / len(terms) if terms else 0.0


def _unit_norm(case):
    return case["kind"] != "angular" or case.get("inputs_unit_norm", False)


def _reference_value(case, labels, d, x, average):
    if case["kind"] == "angular":
        return ref.angular_loss(labels, x, case["alpha"])
    m = case["margin"]
    if case["kind"] == "batch_hard_miner":
        return ref.triplet_loss_from_distances(labels, d, m, miner="batch-hard", average=average)
    return ref.triplet_loss_from_distances(
        labels,
        d,
        m,
        miner="batch-all",
        average=average,
        miner_kwargs=dict(margin=m, select=SELECT[case["type_of_triplets"]]),
    )


def _reference_count(case, labels, d):
    if case["kind"] == "angular":
        return len(ref.positive_pairs(labels))
    if case["kind"] == "batch_hard_miner":
        return len(ref.batch_hard_triplets(labels, d))
    return len(ref.batch_all_triplets(labels, d, case["margin"], SELECT[case["type_of_triplets"]]))


def _kinds(doc):
    return [inp["embedding_kind"] for inp in doc["inputs"]]


def test_fixtures_against_reference(fixtures):
    """The reference against the real package, so that a library failure below is real.

    Inputs with exactly duplicated embeddings ("dup") are left out: PML's float32 distance
    between two equal rows is rounding noise where the reference has exactly 0.
    """
    doc, inputs = fixtures
    kinds = _kinds(doc)
    bad = []
    checked = 0
    cache = {}
    for case in doc["cases"]:
        j = case["input"]
        if kinds[j] == "dup" or not _unit_norm(case):
            continue
        labels = inputs[f"labels_{j}"]
        x = inputs[f"embeddings_{j}"].astype(np.float64)
        if j not in cache:
            cache[j] = ref.pairwise_distances(x)
        d = cache[j]
        for field, average in (("value", "nonzero"), ("value_mean", "triplets")):
            want = _reference_value(case, labels, d, x, average)
            checked += 1
            if not math.isclose(want, case[field], rel_tol=1e-5, abs_tol=1e-5):
                bad.append(
                    (case["case"], case["kind"], case.get("type_of_triplets"), field, case[field], want)
                )
        if case["num_mined"] != _reference_count(case, labels, d) and case["kind"] != "angular":
            bad.append(
                (
                    case["case"],
                    case["kind"],
                    "num_mined",
                    case["num_mined"],
                    _reference_count(case, labels, d),
                )
            )
    assert checked > 100
    assert not bad, f"reference vs PML (case, kind, type, field, PML, reference): {bad}"


def _check_library(fixtures, kinds_wanted):
    doc, inputs = fixtures
    bad = []
    checked = 0
    for case in doc["cases"]:
        if case["kind"] not in kinds_wanted or not _unit_norm(case):
            continue
        j = case["input"]
        labels = inputs[f"labels_{j}"]
        x = inputs[f"embeddings_{j}"]
        fields = (
            (("value", "nonzero"),)
            if case["kind"] == "angular"
            else (("value", "nonzero"), ("value_mean", "triplets"))
        )
        for field, average in fields:
            got = float(to_numpy(_library_loss(case, average)(labels, x)))
            checked += 1
            if not math.isclose(got, case[field], rel_tol=1e-5, abs_tol=1e-5):
                bad.append(
                    (
                        case["case"],
                        j,
                        case.get("type_of_triplets"),
                        case["margin"] or case["alpha"],
                        field,
                        case[field],
                        got,
                    )
                )
    assert checked > 0
    return bad


def test_triplet_margin_miner_cases(fixtures):
    bad = _check_library(fixtures, ("triplet_margin_miner",))
    assert not bad, f"{len(bad)} differ (case, input, type, margin, field, PML, ours): {bad}"


def test_batch_hard_miner_cases(fixtures):
    bad = _check_library(fixtures, ("batch_hard_miner",))
    assert not bad, f"{len(bad)} differ (case, input, type, margin, field, PML, ours): {bad}"


def test_angular_cases(fixtures):
    bad = _check_library(fixtures, ("angular",))
    assert not bad, f"{len(bad)} differ (case, input, type, alpha, field, PML, ours): {bad}"


def test_angular_pml_quirk(fixtures):
    """On raw (non-unit) embeddings PML's AngularLoss leaves the negatives unnormalised.

    Checks that this explains every angular case (so the unit-norm comparison above is not
    hiding anything else), and that on unit-norm inputs the two forms coincide.
    """
    doc, inputs = fixtures
    bad = []
    n_raw = 0
    for case in doc["cases"]:
        if case["kind"] != "angular":
            continue
        j = case["input"]
        labels = inputs[f"labels_{j}"]
        x = inputs[f"embeddings_{j}"].astype(np.float64)
        want = pml_angular_loss(labels, x, case["alpha"])
        n_raw += not case["inputs_unit_norm"]
        if not math.isclose(want, case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], j, case["alpha"], case["value"], want))
    assert not bad, f"PML's angular form (case, input, alpha, PML, reference variant): {bad}"
    assert n_raw > 0


def test_mined_counts(fixtures):
    """Our miners choose as many triplets as PML's (on inputs without duplicates)."""
    doc, inputs = fixtures
    kinds = _kinds(doc)
    bad = []
    for case in doc["cases"]:
        j = case["input"]
        if case["kind"] == "angular" or kinds[j] == "dup":
            continue
        labels = inputs[f"labels_{j}"]
        x = inputs[f"embeddings_{j}"]
        if case["kind"] == "batch_hard_miner":
            miner = miners.BatchHardMiner()
        else:
            miner = miners.BatchAllMiner(margin=case["margin"], select=SELECT[case["type_of_triplets"]])
        count = int(round(float(np.sum(to_numpy(miner(labels, embeddings=x)["negative_count"])))))
        if count != case["num_mined"]:
            bad.append(
                (
                    case["case"],
                    j,
                    case["kind"],
                    case["type_of_triplets"],
                    case["margin"],
                    case["num_mined"],
                    count,
                )
            )
    assert not bad, f"mined counts differ (case, input, kind, type, margin, PML, ours): {bad}"


def test_angular_loss_is_keras_serializable_with_pml_alpha():
    loss = losses.AngularLoss(alpha=35)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.alpha == pytest.approx(35.0)
