"""Circle, lifted structure (both), N-pairs, NT-Xent and SupCon against golden values and
gradients from the real pytorch-metric-learning 2.9 (tests/fixtures/pml_softmax_losses.*,
made by tools/fixtures_pml_softmax_losses.py on the 22 batches of pml_inputs.npz).

The mapping (docs/semantics.md):

* `CircleLoss(m, gamma)` == `CircleLoss(m, gamma)` (cosine similarity);
* `LiftedStructureLoss` / `GeneralizedLiftedStructureLoss(neg_margin, pos_margin,
  distance=LpDistance(normalize_embeddings=False))` == ours with `distance="euclidean"`
  (PML's default distance normalises the embeddings first: on unit-norm embeddings,
  which `TripletModel` feeds a loss, the two defaults agree);
* `NPairsLoss()` (dot product) == `NPairsLoss()` (`distance="dot"`);
* `NTXentLoss(temperature)`, `SupConLoss(temperature)` (cosine similarity) == ours
  (`distance="cosine"`);
* with `PairMarginMiner(pos_margin, neg_margin, distance=D)`: `ThresholdMiner`, the same
  selection written on our "smaller is closer" matrix. One deliberate difference:
  pytorch-metric-learning's pair losses return 0 when the miner keeps at most one positive
  and at most one negative pair (`GenericPairLoss`); ours compute the loss on them.
"""

import json
import math
import os

import keras
import numpy as np
import pytest
import reference as ref
from conftest import fixture_sample, to_numpy, value_and_grad
from keras import ops

from keras_triplet import losses, miners

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Keep pairs at least this far (in the matrix's units) from a miner's threshold: float32
# and float64 may otherwise disagree on which side a pair falls.
THRESHOLD_GAP = 1e-5


@keras.saving.register_keras_serializable(package="keras_triplet_tests")
class ThresholdMiner(miners.PairMiner):
    """Keeps the positive pairs with `d > pos_above` and the negative pairs with
    `d < neg_below` (pytorch-metric-learning's `PairMarginMiner`, on distances)."""

    def __init__(self, pos_above, neg_below, **kwargs):
        super().__init__(**kwargs)
        self.pos_above, self.neg_below = float(pos_above), float(neg_below)

    def select(self, distances, positive, negative):
        return distances > self.pos_above, distances < self.neg_below

    def get_config(self):
        return {**super().get_config(), "pos_above": self.pos_above, "neg_below": self.neg_below}


def thresholds(case):
    """The PML miner's margins as `(pos_above, neg_below)` on our matrix (cosine:
    `d = 1 − s`; dot: `d = −s`; Lp: `d`)."""
    pm, nm = case["miner"]["pos_margin"], case["miner"]["neg_margin"]
    if case["distance"] == "cosine":
        return 1.0 - pm, 1.0 - nm
    if case["distance"] == "dot":
        return -pm, -nm
    return pm, nm


def library_loss(case):
    miner = None if case["miner"] is None else ThresholdMiner(*thresholds(case))
    params = dict(case["params"], miner=miner)
    if case["loss"] == "npairs":
        params["distance"] = case["distance"]  # "cosine" (PML's default) or "dot"
    return {
        "circle": losses.CircleLoss,
        "lifted_structure": losses.LiftedStructureLoss,
        "generalized_lifted_structure": losses.GeneralizedLiftedStructureLoss,
        "npairs": losses.NPairsLoss,
        "ntxent": losses.NTXentLoss,
        "supcon": losses.SupConLoss,
    }[case["loss"]](**params)


_MATRICES = {}


def reference_matrix(case, x):
    """The float64 matrix of the case's distance (cached: the reference is slow)."""
    key = (case["input"], case["distance"])
    if key not in _MATRICES:
        _MATRICES[key] = _matrix(case["distance"], x)
    return _MATRICES[key]


def _matrix(distance, x):
    if distance == "cosine":
        return ref.pairwise_distances(x, metric="cosine")
    if distance == "dot":
        return -ref.dot_products(x)
    return ref.pairwise_distances(x)


def reference_value(case, labels, x):
    d = reference_matrix(case, x)
    keep = None
    if case["miner"] is not None:
        pos_above, neg_below = thresholds(case)
        keep = lambda a, j, is_positive, v: v > pos_above if is_positive else v < neg_below  # noqa: E731
    fn = {
        "circle": ref.circle_loss_from_distances,
        "lifted_structure": ref.lifted_structure_loss_from_distances,
        "generalized_lifted_structure": ref.generalized_lifted_structure_loss_from_distances,
        "npairs": ref.npairs_loss_from_distances,
        "ntxent": ref.ntxent_loss_from_distances,
        "supcon": ref.supcon_loss_from_distances,
    }[case["loss"]]
    return fn(labels, d, keep=keep, **case["params"])


def near_threshold(case, x):
    if case["miner"] is None:
        return False
    d = reference_matrix(case, x)
    values = d[~np.eye(len(d), dtype=bool)]
    return values.size > 0 and any(np.min(np.abs(values - t)) < THRESHOLD_GAP for t in thresholds(case))


def pml_quirk(case):
    """pytorch-metric-learning's `GenericPairLoss` gives 0 when at most one positive and
    at most one negative pair are left (NPairsLoss is not a GenericPairLoss)."""
    return case["loss"] != "npairs" and case["num_pos"] <= 1 and case["num_neg"] <= 1


@pytest.fixture(scope="module")
def fixtures():
    names = ("pml_softmax_losses.json", "pml_softmax_losses.npz", "pml_inputs.npz")
    paths = [os.path.join(FIXTURES, n) for n in names]
    missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"pytorch-metric-learning fixtures missing: {', '.join(missing)} (regenerate with "
            "`.venv-pml/bin/python tools/fixtures_pml_softmax_losses.py`)"
        )
    with open(paths[0]) as f:
        doc = json.load(f)
    return doc, np.load(paths[1]), np.load(paths[2])


def _inputs(inputs, case):
    j = case["input"]
    return inputs[f"labels_{j}"], inputs[f"embeddings_{j}"]


def test_fixtures_cover_every_loss_and_layout(fixtures):
    doc, _, _ = fixtures
    assert doc["versions"]["pytorch_metric_learning"] == "2.9.0"
    names = {case["loss"] for case in doc["cases"]}
    assert names == {
        "circle",
        "lifted_structure",
        "generalized_lifted_structure",
        "npairs",
        "ntxent",
        "supcon",
    }
    assert {case["input"] for case in doc["cases"]} == set(range(22))
    assert sum(case["miner"] is not None for case in doc["cases"]) == len(doc["cases"]) // 2


def test_reference_matches_pml(fixtures):
    """The NumPy reference against the real package, so that a library failure below is real.
    Inputs with exact duplicates ("dup") are left out: PML's float32 distance between equal
    rows is rounding noise where the reference has exactly 0."""
    doc, _, inputs = fixtures
    kinds = [inp["embedding_kind"] for inp in doc["inputs"]]
    bad, checked = [], 0
    for case in doc["cases"]:
        labels, x = _inputs(inputs, case)
        x = x.astype(np.float64)
        if near_threshold(case, x) or kinds[case["input"]] == "dup":
            continue
        want = reference_value(case, labels, x)
        if pml_quirk(case) and want != 0.0:
            assert case["value"] == 0.0, case
            continue
        checked += 1
        if not math.isclose(want, case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], case["loss"], case["input"], case["value"], want))
    assert checked > 300
    assert not bad, f"reference vs PML (case, loss, input, PML, reference): {bad}"


def compared_rows(case, kind, x):
    """The rows of the gradient compared with PML's.

    Two conventions differ, both at points where the gradient is ill-conditioned:
    at an exactly zero embedding, normalising for the cosine similarity has gradient
    1/eps (PML's `F.normalize`: eps = 1e-12 on the norm; ours 1e-12 on the squared norm),
    so those rows are left out; and on exactly duplicated embeddings ("dup") PML's float32
    Euclidean distance is rounding noise where ours is exactly 0 (the `sqrt`'s gradient
    there is 0 here), so those cases compare values only.
    """
    if case["distance"] == "lp" and kind == "dup":
        return np.zeros(len(x), bool)
    if case["distance"] == "cosine":
        return np.any(x != 0, axis=1)
    return np.ones(len(x), bool)


def _configuration(case):
    return case["loss"], json.dumps(case["params"], sort_keys=True), json.dumps(case["miner"], sort_keys=True)


def test_values_and_gradients_match_pml(fixtures):
    doc, grads, inputs = fixtures
    kinds = [inp["embedding_kind"] for inp in doc["inputs"]]
    bad, checked = [], 0
    # All 528 cases on TensorFlow and PyTorch; a fifth on JAX, each loss, parameter set
    # and miner on four or five inputs.
    cases = fixture_sample(doc["cases"], jax_every=5, key=_configuration)
    for case in cases:
        labels, x = _inputs(inputs, case)
        if near_threshold(case, x.astype(np.float64)):
            continue
        loss = library_loss(case)
        labels_t = ops.convert_to_tensor(labels)
        value, grad = value_and_grad(lambda e: loss(labels_t, e), x)
        if pml_quirk(case) and case["num_pos"] + case["num_neg"] > 0:
            # Our documented form: the loss on the pairs kept (the reference's number).
            want = reference_value(case, labels, x.astype(np.float64))
            assert float(value) == pytest.approx(want, rel=1e-4, abs=1e-5), case
            continue
        checked += 1
        rows = compared_rows(case, kinds[case["input"]], x)
        want_grad, grad = grads[f"grad_{case['case']}"][rows], grad[rows]
        if not math.isclose(float(value), case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], case["loss"], case["input"], "value", case["value"], float(value)))
        elif np.max(np.abs(grad - want_grad), initial=0.0) > 1e-5 * max(
            1.0, np.max(np.abs(want_grad), initial=0.0)
        ):
            # 1e-5 of the gradient's scale: zero embeddings under the cosine similarity
            # have gradients of order 1e12 (the normalisation's 1/eps), in PML and here.
            worst = float(np.max(np.abs(grad - want_grad)))
            bad.append(
                (case["case"], case["loss"], case["input"], "grad", worst, float(np.max(np.abs(want_grad))))
            )
    assert checked > 0.75 * len(cases)
    assert not bad, f"{len(bad)} differ from PML (case, loss, input, what, PML, ours): {bad}"


def test_threshold_miner_round_trips():
    miner = ThresholdMiner(0.2, 0.9, distance="cosine")
    restored = ThresholdMiner.from_config(miner.get_config())
    assert restored.get_config() == miner.get_config()
    assert isinstance(keras.saving.serialize_keras_object(miner), dict)
    assert to_numpy(miner(np.array([0, 0, 1]), embeddings=np.eye(3, dtype="float32"))[0]).shape == (3, 3)
