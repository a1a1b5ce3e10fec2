"""keras_triplet.compat.tfa: the NumPy reference of tensorflow-addons 0.23's semantics and
the golden numbers from the real package (tests/fixtures/tfa_*.json / .npz)."""

import json
import math
import os

import keras
import numpy as np
import pytest
import reference as ref
from conftest import FULL_FIXTURES, make_batch, to_numpy, value_and_grad
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from keras import ops

from keras_triplet.compat import tfa

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
BATCH_SIZES = (1, 2, 5, 8)


def labels_strategy(max_classes=4):
    return st.sampled_from(BATCH_SIZES).flatmap(
        lambda b: st.lists(st.integers(0, max_classes - 1), min_size=b, max_size=b)
    )


def l1_numpy(x):
    return np.abs(x[:, None, :] - x[None, :, :]).sum(-1)


def l1_keras(x):
    return ops.sum(ops.abs(ops.expand_dims(x, 1) - ops.expand_dims(x, 0)), axis=-1)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
@settings(max_examples=15)  # parametrized: fewer examples per case
@given(
    labels=labels_strategy(),
    seed=st.integers(0, 2**31 - 1),
    margin=st.sampled_from([0.2, 1.0]),
    kind=st.sampled_from(["semihard", "hard", "hard-soft"]),
)
def test_matches_reference(metric, labels, seed, margin, kind):
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3)
    d = ref._tfa_distances(x, metric)
    assume(ref.comparison_gap(d, [margin]) > 1e-4)
    x32 = x.astype("float32")
    if kind == "semihard":
        want = ref.tfa_triplet_semihard_loss(labels, x, margin, metric)
        got = tfa.TripletSemiHardLoss(margin=margin, distance_metric=metric)(labels, x32)
        fn = tfa.triplet_semihard_loss(labels, x32, margin=margin, distance_metric=metric)
    else:
        soft = kind == "hard-soft"
        want = ref.tfa_triplet_hard_loss(labels, x, margin, soft, metric)
        got = tfa.TripletHardLoss(margin=margin, soft=soft, distance_metric=metric)(labels, x32)
        fn = tfa.triplet_hard_loss(labels, x32, margin=margin, soft=soft, distance_metric=metric)
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert float(to_numpy(fn)) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_callable_distance_metric():
    labels = np.array([0, 0, 1, 1, 2, 2, 1, 0])
    x = make_batch(3, labels, dim=4)
    x32 = x.astype("float32")
    want = ref.tfa_triplet_semihard_loss(labels, x, 0.5, l1_numpy)
    got = tfa.TripletSemiHardLoss(margin=0.5, distance_metric=l1_keras)(labels, x32)
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    want = ref.tfa_triplet_hard_loss(labels, x, 0.5, False, l1_numpy)
    got = tfa.TripletHardLoss(margin=0.5, distance_metric=l1_keras)(labels, x32)
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_semihard_equals_triplet_loss_with_semi_hard_miner():
    from keras_triplet import losses

    labels = np.array([0, 0, 1, 1, 2, 2, 1, 0])
    x = make_batch(8, labels, dim=4).astype("float32")
    a = to_numpy(tfa.TripletSemiHardLoss(margin=0.7)(labels, x))
    b = to_numpy(losses.TripletLoss(margin=0.7, miner="semi-hard")(labels, x))
    assert float(a) == pytest.approx(float(b), rel=1e-6, abs=1e-6)


class TestCornerCases:
    """The corner cases docs/semantics.md lists, by hand."""

    def test_no_positive_pair_is_zero_not_nan(self):
        labels = np.array([0, 1, 2, 3])
        x = make_batch(0, labels, dim=3).astype("float32")
        assert float(to_numpy(tfa.TripletSemiHardLoss()(labels, x))) == 0.0
        # Hard loss: d(a, p*) = 0 for every anchor.
        want = ref.tfa_triplet_hard_loss(labels, x, 1.0)
        assert float(to_numpy(tfa.TripletHardLoss()(labels, x))) == pytest.approx(want, rel=1e-5)

    def test_single_class_uses_zero_as_negative_distance(self):
        labels = np.array([3, 3, 3])
        x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], "float32")
        # Positive pairs: d = 5, 1, 5, sqrt(18), 1, sqrt(18) (both orders); d(a, n) = 0.
        d = [5.0, 1.0, 5.0, math.sqrt(18.0), 1.0, math.sqrt(18.0)]
        want = np.mean([v + 0.5 for v in d])
        got = float(to_numpy(tfa.TripletSemiHardLoss(margin=0.5)(labels, x)))
        assert got == pytest.approx(want, rel=1e-5)
        assert got == pytest.approx(ref.tfa_triplet_semihard_loss(labels, x, 0.5), rel=1e-5)

    def test_hard_without_negative_uses_row_maximum(self):
        labels = np.array([3, 3, 3])
        x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], "float32")
        # d(a, p*) = d(a, n*) = the row maximum: every anchor gives the margin.
        assert float(to_numpy(tfa.TripletHardLoss(margin=0.5)(labels, x))) == pytest.approx(0.5)
        assert float(to_numpy(tfa.TripletHardLoss(soft=True)(labels, x))) == pytest.approx(math.log(2.0))

    def test_one_sample(self):
        labels = np.array([0])
        x = np.array([[1.0, 2.0]], "float32")
        assert float(to_numpy(tfa.TripletSemiHardLoss()(labels, x))) == 0.0
        # tensorflow-addons: d(a, p*) = 0 (no positive), d(a, n*) = 0 (row maximum): margin.
        assert float(to_numpy(tfa.TripletHardLoss(margin=0.3)(labels, x))) == pytest.approx(0.3)

    def test_semihard_fallback_to_farthest_negative(self):
        labels = np.array([0, 0, 1, 1])
        x = np.array([[0.0], [3.0], [1.0], [2.0]], "float32")
        # Pair (0, 1), d = 3: negatives at 1 and 2, none farther -> farthest, 2.
        want = ref.tfa_triplet_semihard_loss(labels, x, 1.0)
        assert float(to_numpy(tfa.TripletSemiHardLoss()(labels, x))) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tfa.TripletSemiHardLoss(margin=0.3, distance_metric="angular"),
        lambda: tfa.TripletHardLoss(margin=0.2, soft=True, distance_metric="squared-L2"),
        lambda: tfa.TripletHardLoss(),
    ],
)
def test_config_round_trip(make):
    loss = make()
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def test_unknown_distance_metric():
    with pytest.raises(ValueError, match="distance_metric"):
        tfa.TripletSemiHardLoss(distance_metric="L3")
    with pytest.raises(ValueError, match="distance_metric"):
        tfa.TripletHardLoss(distance_metric="cosine")


# --------------------------------------------------------------------------- golden fixtures


def _load_fixtures():
    paths = [os.path.join(FIXTURES, n) for n in ("tfa_triplet.json", "tfa_inputs.npz")]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"tensorflow-addons fixtures missing: {', '.join(map(os.path.basename, missing))} "
            "(regenerate with `bash tools/make_fixtures.sh tfa`)"
        )
    with open(paths[0]) as f:
        cases = json.load(f)
    inputs = np.load(paths[1])
    grads_path = os.path.join(FIXTURES, "tfa_grads.npz")
    grads = np.load(grads_path) if os.path.exists(grads_path) else None
    return cases, inputs, grads


def _fixture_metric(name):
    return {"L1-callable": (l1_keras, l1_numpy)}.get(name, (name, name))


def _library_call(case, labels, x):
    lib_metric, _ = _fixture_metric(case["distance_metric"])
    if case["loss"] == "semihard":
        loss = tfa.TripletSemiHardLoss(margin=case["margin"], distance_metric=lib_metric)
    else:
        loss = tfa.TripletHardLoss(margin=case["margin"], soft=case["soft"], distance_metric=lib_metric)
    return loss


def _expected(case, labels):
    """The fixture value; tensorflow-addons' NaN (no positive pair, semi-hard) is our 0."""
    if case["value"] is None:
        assert case["loss"] == "semihard" and not ref.positive_pairs(labels), case
        return 0.0
    return case["value"]


def test_fixtures_against_reference():
    """First the reference itself against the real tensorflow-addons.

    Inputs with exactly duplicated embeddings ("dup") are left out here: tensorflow-addons
    computes the L2 distance between two equal rows as the square root of float32 rounding
    noise (~1e-4), where the float64 reference has exactly 0. (The library, which uses the
    same expansion, is checked against those cases in test_fixtures_values.)
    """
    cases, inputs, _ = _load_fixtures()
    with open(os.path.join(FIXTURES, "tfa_meta.json")) as f:
        kinds = [inp["embedding_kind"] for inp in json.load(f)["inputs"]]
    cache = {}
    bad = []
    checked = 0
    for case in cases:
        j = case["input"]
        if kinds[j] == "dup":
            continue
        labels = inputs[f"labels_{j}"]
        key = (j, case["distance_metric"])
        if key not in cache:
            _, np_metric = _fixture_metric(case["distance_metric"])
            cache[key] = ref._tfa_distances(inputs[f"embeddings_{j}"].astype(np.float64), np_metric)
        d = cache[key]
        if case["loss"] == "semihard":
            want = ref.tfa_semihard_from_distances(labels, d, case["margin"])
        else:
            want = ref.tfa_hard_from_distances(labels, d, case["margin"], case["soft"])
        checked += 1
        if not math.isclose(want, _expected(case, labels), rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], case["loss"], case["distance_metric"], _expected(case, labels), want))
    assert checked > 400
    assert not bad, f"reference vs tensorflow-addons (case, loss, metric, tfa, reference): {bad}"


def test_fixtures_values():
    cases, inputs, _ = _load_fixtures()
    bad = []
    for case in cases:
        labels = inputs[f"labels_{case['input']}"]
        x = inputs[f"embeddings_{case['input']}"]
        got = float(to_numpy(_library_call(case, labels, x)(labels, x)))
        want = _expected(case, labels)
        if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-5):
            bad.append(
                (case["case"], case["input"], case["loss"], case["distance_metric"], case["soft"], want, got)
            )
    assert not bad, f"{len(bad)} cases differ (case, input, loss, metric, soft, expected, got): {bad}"


def test_fixtures_gradients():
    cases, inputs, grads = _load_fixtures()
    if grads is None:
        pytest.fail(
            "tests/fixtures/tfa_grads.npz is missing (regenerate with `bash tools/make_fixtures.sh tfa`)"
        )
    bad = []
    checked = 0
    seen = {}
    for case in cases:
        key = f"grad_{case['case']}"
        if not case.get("has_grad") or key not in grads:
            continue
        group = (case["loss"], case["distance_metric"], case["soft"])
        seen[group] = seen.get(group, -1) + 1
        if not FULL_FIXTURES and seen[group] % 8:
            continue  # an eighth of each group by default; all with KERAS_TRIPLET_FULL_FIXTURES=1
        labels = inputs[f"labels_{case['input']}"]
        x = inputs[f"embeddings_{case['input']}"]
        loss = _library_call(case, labels, x)
        labels_t = ops.convert_to_tensor(labels)
        _, grad = value_and_grad(lambda e: loss(labels_t, e), x)
        checked += 1
        if not np.allclose(grad, grads[key], rtol=1e-4, atol=1e-5):
            err = float(np.max(np.abs(grad - grads[key])))
            bad.append((case["case"], case["loss"], case["distance_metric"], case["soft"], err))
    assert checked > 0
    assert not bad, f"gradients differ (case, loss, metric, soft, max abs error): {bad}"
