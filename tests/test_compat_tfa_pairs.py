"""keras_triplet.compat.tfa's contrastive, lifted-struct and N-pairs losses: the NumPy
reference, the golden numbers of tensorflow-addons 0.23 (tests/fixtures/tfa_pairs.*,
written by tools/fixtures_tfa_pairs.py), and the input dtype kept by every compat.tfa
function (tensorflow-addons' own dtype-parametrised tests compare at that dtype)."""

import json
import math
import os

import keras
import numpy as np
import pytest
import reference as ref
from conftest import FULL_FIXTURES, cast_input, compiled, make_batch, to_numpy, value_and_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_triplet.compat import tfa

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def fixtures():
    paths = [os.path.join(FIXTURES, n) for n in ("tfa_pairs.json", "tfa_pairs.npz", "tfa_inputs.npz")]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"tensorflow-addons fixtures missing: {', '.join(map(os.path.basename, missing))} "
            "(regenerate with `bash tools/make_fixtures.sh tfa`)"
        )
    with open(paths[0]) as f:
        doc = json.load(f)
    return doc, np.load(paths[1]), np.load(paths[2])


def _kinds():
    with open(os.path.join(FIXTURES, "tfa_meta.json")) as f:
        return [inp["embedding_kind"] for inp in json.load(f)["inputs"]]


def _case_inputs(case, arrays, inputs):
    """(y_true, y_pred as float32 NumPy) of a case, as tensorflow-addons was called."""
    j = case["input"]
    if case["loss"] == "lifted":
        return inputs[f"labels_{j}"], inputs[f"embeddings_{j}"]
    if case["loss"] == "npairs":
        return inputs[f"labels_{j}"], arrays[f"similarity_{j}"]
    if case["loss"] == "npairs_multilabel":
        return arrays[f"multilabel_{j}"], arrays[f"similarity_{j}"]
    return arrays[f"pair_labels_{j}"], arrays[f"pair_distances_{j}"]


def _functional(case):
    if case["loss"] == "lifted":
        return lambda y, x: tfa.lifted_struct_loss(y, x, margin=case["margin"])
    if case["loss"] == "npairs":
        return tfa.npairs_loss
    if case["loss"] == "npairs_multilabel":
        return tfa.npairs_multilabel_loss
    return lambda y, x: ops.mean(tfa.contrastive_loss(y, x, margin=case["margin"]))


def _class(case):
    if case["loss"] == "lifted":
        return tfa.LiftedStructLoss(margin=case["margin"])
    if case["loss"] == "npairs":
        return tfa.NpairsLoss()
    if case["loss"] == "npairs_multilabel":
        return tfa.NpairsMultilabelLoss()
    return tfa.ContrastiveLoss(margin=case["margin"])


def _reference(case, y, x):
    x = np.asarray(x, np.float64)
    if case["loss"] == "lifted":
        return ref.tfa_lifted_struct_loss(y, x, case["margin"])
    if case["loss"] == "npairs":
        return ref.tfa_npairs_loss(y, x)
    if case["loss"] == "npairs_multilabel":
        return ref.tfa_npairs_multilabel_loss(y, x)
    return float(np.mean(ref.tfa_contrastive_loss(y, x, case["margin"])))


def _expected(case, y, x):
    """tensorflow-addons' value, or where it is NaN our documented value: 0 for the lifted
    loss (nothing to learn from), the mean over every row with the label-less rows at 0
    for the multilabel loss (the reference's)."""
    if case["value"] is not None:
        return case["value"]
    return _reference(case, y, x) if case["loss"] == "npairs_multilabel" else 0.0


def test_reference_against_tfa(fixtures):
    doc, arrays, inputs = fixtures
    kinds = _kinds()
    bad, checked = [], 0
    for case in doc["cases"]:
        if case["dtype"] != "float32" or (case["loss"] == "lifted" and kinds[case["input"]] == "dup"):
            continue  # dup: tensorflow-addons' distance between equal rows is ~1e-4 of noise
        y, x = _case_inputs(case, arrays, inputs)
        if case["value"] is None:
            continue  # test_nan_cases_are_the_documented_ones
        want = _reference(case, y, x)
        checked += 1
        if not math.isclose(want, case["value"], rel_tol=1e-5, abs_tol=1e-5):
            bad.append((case["case"], case["loss"], case["input"], case["value"], want))
    assert checked > 100
    assert not bad, f"reference vs tensorflow-addons (case, loss, input, tfa, reference): {bad}"


def test_nan_cases_are_the_documented_ones(fixtures):
    """tensorflow-addons' NaN: lifted without positive pairs or on one class, a multilabel
    row without classes. Ours is 0 there (and the reference says so)."""
    doc, arrays, inputs = fixtures
    for case in doc["cases"]:
        if case["value"] is not None:
            continue
        y, _ = _case_inputs(case, arrays, inputs)
        if case["loss"] == "lifted":
            assert not ref.positive_pairs(y) or len(np.unique(y)) == 1, case
        else:
            assert case["loss"] == "npairs_multilabel" and np.any(np.sum(y, axis=1) == 0), case


def test_values(fixtures):
    doc, arrays, inputs = fixtures
    bad = []
    for case in doc["cases"]:
        y, x = _case_inputs(case, arrays, inputs)
        if case["dtype"] == "float16":
            got = _functional(case)(y, cast_input(x, "float16"))
            assert keras.backend.standardize_dtype(got.dtype) == case["out_dtype"] == "float16"
            got, tol = float(to_numpy(ops.cast(got, "float32"))), 2e-3
        else:
            got, tol = float(to_numpy(_class(case)(y, x))), 1e-5
        want = _expected(case, y, x)
        if not math.isclose(got, want, rel_tol=tol, abs_tol=tol):
            bad.append((case["case"], case["loss"], case["input"], case["dtype"], want, got))
    assert not bad, f"{len(bad)} differ (case, loss, input, dtype, tfa, ours): {bad}"


def test_contrastive_per_pair_values(fixtures):
    doc, arrays, inputs = fixtures
    for case in doc["cases"]:
        if case["loss"] != "contrastive" or case["dtype"] != "float32":
            continue
        y, x = _case_inputs(case, arrays, inputs)
        got = to_numpy(tfa.contrastive_loss(y, x, margin=case["margin"]))
        np.testing.assert_allclose(got, arrays[f"values_{case['case']}"], rtol=1e-5, atol=1e-6)


def test_gradients(fixtures):
    """Gradients with respect to the embeddings (lifted) or y_pred; the lifted loss on
    inputs with duplicated or zero embeddings is left out (tensorflow-addons' distance
    expansion turns equal rows into ~1e-4 of noise with an ill-conditioned gradient).
    A third of each loss's cases by default; all with KERAS_TRIPLET_FULL_FIXTURES=1."""
    doc, arrays, inputs = fixtures
    kinds = _kinds()
    bad, checked, seen = [], 0, {}
    for case in doc["cases"]:
        if not case["has_grad"] or (case["loss"] == "lifted" and kinds[case["input"]] in ("dup", "zeros")):
            continue
        seen[case["loss"]] = seen.get(case["loss"], -1) + 1
        if not FULL_FIXTURES and seen[case["loss"]] % 3:
            continue
        y, x = _case_inputs(case, arrays, inputs)
        loss = _class(case)
        y_t = ops.convert_to_tensor(y)
        _, grad = value_and_grad(lambda e: loss(y_t, e), x)
        want = arrays[f"grad_{case['case']}"]
        checked += 1
        if not np.allclose(grad, want, rtol=1e-4, atol=1e-5):
            bad.append((case["case"], case["loss"], case["input"], float(np.max(np.abs(grad - want)))))
    assert checked > 25
    assert not bad, f"gradients differ (case, loss, input, max abs error): {bad}"


# --------------------------------------------------------------------------- reference


@settings(max_examples=15)
@given(
    labels=st.sampled_from([1, 2, 5, 8]).flatmap(
        lambda b: st.lists(st.integers(0, 3), min_size=b, max_size=b)
    ),
    seed=st.integers(0, 2**31 - 1),
    margin=st.sampled_from([0.5, 1.0]),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
)
def test_matches_reference(labels, seed, margin, scale):
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3, scale=scale)
    x32 = x.astype("float32")
    got = float(to_numpy(tfa.lifted_struct_loss(labels, x32, margin=margin)))
    assert got == pytest.approx(ref.tfa_lifted_struct_loss(labels, x, margin), rel=1e-4, abs=1e-5)
    s = x @ x.T
    got = float(to_numpy(tfa.npairs_loss(labels, s.astype("float32"))))
    assert got == pytest.approx(ref.tfa_npairs_loss(labels, s), rel=1e-5, abs=1e-5)
    multi = (np.random.default_rng(seed).random((len(labels), 3)) < 0.5).astype("int32")
    got = float(to_numpy(tfa.npairs_multilabel_loss(multi, s.astype("float32"))))
    assert got == pytest.approx(ref.tfa_npairs_multilabel_loss(multi, s), rel=1e-5, abs=1e-5)
    d = np.abs(x[:, 0])
    pair = (labels % 2).astype("int32")
    got = to_numpy(tfa.contrastive_loss(pair, d.astype("float32"), margin=margin))
    np.testing.assert_allclose(got, ref.tfa_contrastive_loss(pair, d, margin), rtol=1e-5, atol=1e-6)


def test_lifted_large_scale_is_finite():
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(1, labels, dim=4, scale=1e4).astype("float32")
    value, grad = value_and_grad(lambda e: tfa.lifted_struct_loss(ops.convert_to_tensor(labels), e), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert float(value) == pytest.approx(ref.tfa_lifted_struct_loss(labels, x), rel=1e-4)


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 2, 3]), np.array([4, 4, 4]), np.array([7])],
    ids=["no-positive-pair", "one-class", "one-sample"],
)
def test_lifted_nothing_to_learn_is_zero(labels):
    x = make_batch(2, labels, dim=3).astype("float32")
    value, grad = value_and_grad(lambda e: tfa.lifted_struct_loss(ops.convert_to_tensor(labels), e), x)
    assert float(value) == 0.0 and np.all(grad == 0.0)


# --------------------------------------------------------------------------- dtypes


def _all_functions():
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(5, labels, dim=4)
    s = x @ x.T
    multi = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [1, 1]])
    return {
        "triplet_semihard_loss": (tfa.triplet_semihard_loss, labels, x),
        "triplet_hard_loss": (tfa.triplet_hard_loss, labels, x),
        "lifted_struct_loss": (tfa.lifted_struct_loss, labels, x),
        "npairs_loss": (tfa.npairs_loss, labels, s),
        "npairs_multilabel_loss": (tfa.npairs_multilabel_loss, multi, s),
        "contrastive_loss": (tfa.contrastive_loss, labels % 2, np.abs(x[:, 0])),
    }


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("name", sorted(_all_functions()))
def test_functions_return_the_input_dtype(name, dtype):
    """float16 in, float16 out (computed in float32 inside), like tensorflow-addons."""
    fn, y, x = _all_functions()[name]
    out = fn(y, cast_input(x, dtype))
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    want = to_numpy(ops.cast(fn(y, x.astype("float32")), "float32"))
    rtol = {"float16": 2e-3, "bfloat16": 2e-2, "float32": 1e-6}[dtype]
    # The inputs are rounded to `dtype` first, then the loss is float32 inside.
    np.testing.assert_allclose(to_numpy(ops.cast(out, "float32")), want, rtol=rtol * 5, atol=rtol)


@pytest.mark.parametrize("name", sorted(_all_functions()))
def test_nonfinite_inputs_give_nan(name):
    fn, y, x = _all_functions()[name]
    x = x.astype("float32").copy()
    x.flat[3] = np.nan
    out = to_numpy(fn(y, x))
    assert np.isnan(out[3] if name == "contrastive_loss" else out)  # contrastive: per pair


@pytest.mark.parametrize(
    "name", ["lifted_struct_loss", "npairs_loss", "npairs_multilabel_loss", "contrastive_loss"]
)
def test_compiles(name):
    fn, y, x = _all_functions()[name]
    y_t, x_t = ops.convert_to_tensor(y), ops.convert_to_tensor(x.astype("float32"))
    got = compiled(lambda a, b: fn(a, b))(y_t, x_t)
    np.testing.assert_allclose(to_numpy(got), to_numpy(fn(y_t, x_t)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- classes and errors


@pytest.mark.parametrize(
    "make",
    [
        lambda: tfa.ContrastiveLoss(margin=0.7),
        lambda: tfa.LiftedStructLoss(margin=0.5),
        lambda: tfa.NpairsLoss(),
        lambda: tfa.NpairsMultilabelLoss(name="multi"),
    ],
)
def test_config_round_trip(make):
    loss = make()
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def test_defaults_and_names_follow_tensorflow_addons():
    assert tfa.ContrastiveLoss().margin == 1.0 and tfa.ContrastiveLoss().name == "contrastive_loss"
    assert tfa.ContrastiveLoss().reduction == "sum_over_batch_size"
    assert tfa.LiftedStructLoss().margin == 1.0
    assert tfa.NpairsLoss().name == "npairs_loss"
    assert tfa.NpairsMultilabelLoss().name == "npairs_multilabel_loss"


def test_bad_input():
    with pytest.raises(ValueError, match="similarity matrix"):
        tfa.npairs_loss(np.array([0, 1, 2]), np.zeros((3, 2, 1), "float32"))
    with pytest.raises(ValueError, match="square"):
        tfa.npairs_loss(np.array([0, 1, 2]), np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="num_classes"):
        tfa.npairs_multilabel_loss(np.array([0, 1, 2]), np.zeros((3, 3), "float32"))
    with pytest.raises(ValueError, match="pair labels"):
        tfa.contrastive_loss(np.array([0, 1, 1]), np.zeros((2,), "float32"))
    with pytest.raises(ValueError, match="whole numbers|integer"):
        tfa.lifted_struct_loss(np.array([0.5, 1.0]), np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="2-D"):
        tfa.lifted_struct_loss(np.array([0, 1]), np.zeros((2,), "float32"))
