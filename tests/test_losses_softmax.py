"""Circle, lifted structure (both), N-pairs, NT-Xent and SupCon (keras_triplet.losses)
against the NumPy reference: values, miners, cross-batch memory, gradients, compiled
steps, degenerate batches, half precision, NaN inputs and bad input."""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import BACKEND, compiled, make_batch, to_numpy, value_and_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops
from test_fixtures_pml_softmax_losses import ThresholdMiner

from keras_triplet import TripletModel, losses, miners
from keras_triplet.losses import reductions

BATCH_SIZES = (2, 5, 8)

# id -> (class factory, reference of (labels, float64 embeddings, keep), functional form)
CASES = {
    "circle": (
        lambda **k: losses.CircleLoss(**k),
        lambda y, x, keep=None: ref.circle_loss(y, x, keep=keep),
        lambda y, x, **k: losses.circle_loss(y, x, **k),
    ),
    "circle-m0.25-gamma256": (
        lambda **k: losses.CircleLoss(m=0.25, gamma=256, **k),
        lambda y, x, keep=None: ref.circle_loss(y, x, m=0.25, gamma=256, keep=keep),
        lambda y, x, **k: losses.circle_loss(y, x, m=0.25, gamma=256, **k),
    ),
    "lifted": (
        lambda **k: losses.LiftedStructureLoss(**k),
        lambda y, x, keep=None: ref.lifted_structure_loss(y, x, keep=keep),
        lambda y, x, **k: losses.lifted_structure_loss(y, x, **k),
    ),
    "lifted-cosine": (
        lambda **k: losses.LiftedStructureLoss(neg_margin=0.5, pos_margin=0.1, distance="cosine", **k),
        lambda y, x, keep=None: ref.lifted_structure_loss(y, x, 0.5, 0.1, distance="cosine", keep=keep),
        lambda y, x, **k: losses.lifted_structure_loss(y, x, 0.5, 0.1, distance="cosine", **k),
    ),
    "generalized-lifted": (
        lambda **k: losses.GeneralizedLiftedStructureLoss(**k),
        lambda y, x, keep=None: ref.generalized_lifted_structure_loss(y, x, keep=keep),
        lambda y, x, **k: losses.generalized_lifted_structure_loss(y, x, **k),
    ),
    "generalized-lifted-squared": (
        lambda **k: losses.GeneralizedLiftedStructureLoss(0.5, 0.2, distance="squared_euclidean", **k),
        lambda y, x, keep=None: ref.generalized_lifted_structure_loss(
            y, x, 0.5, 0.2, distance="squared_euclidean", keep=keep
        ),
        lambda y, x, **k: losses.generalized_lifted_structure_loss(
            y, x, 0.5, 0.2, distance="squared_euclidean", **k
        ),
    ),
    "npairs": (
        lambda **k: losses.NPairsLoss(**k),
        lambda y, x, keep=None: ref.npairs_loss(y, x, distance="cosine", keep=keep),
        lambda y, x, **k: losses.npairs_loss(y, x, **k),
    ),
    "npairs-dot": (
        lambda **k: losses.NPairsLoss(distance="dot", **k),
        lambda y, x, keep=None: ref.npairs_loss(y, x, distance="dot", keep=keep),
        lambda y, x, **k: losses.npairs_loss(y, x, distance="dot", **k),
    ),
    "ntxent": (
        lambda **k: losses.NTXentLoss(**k),
        lambda y, x, keep=None: ref.ntxent_loss(y, x, keep=keep),
        lambda y, x, **k: losses.ntxent_loss(y, x, **k),
    ),
    "ntxent-euclidean": (
        lambda **k: losses.NTXentLoss(temperature=0.5, distance="euclidean", **k),
        lambda y, x, keep=None: ref.ntxent_loss(y, x, 0.5, distance="euclidean", keep=keep),
        lambda y, x, **k: losses.ntxent_loss(y, x, 0.5, distance="euclidean", **k),
    ),
    "supcon": (
        lambda **k: losses.SupConLoss(**k),
        lambda y, x, keep=None: ref.supcon_loss(y, x, keep=keep),
        lambda y, x, **k: losses.supcon_loss(y, x, **k),
    ),
    "supcon-t0.5": (
        lambda **k: losses.SupConLoss(temperature=0.5, **k),
        lambda y, x, keep=None: ref.supcon_loss(y, x, 0.5, keep=keep),
        lambda y, x, **k: losses.supcon_loss(y, x, 0.5, **k),
    ),
}


def labels_strategy(max_classes=4):
    return st.sampled_from(BATCH_SIZES).flatmap(
        lambda b: st.lists(st.integers(0, max_classes - 1), min_size=b, max_size=b)
    )


def _value(loss, labels, x):
    return float(to_numpy(loss(labels, np.asarray(x, "float32"))))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=6)  # parametrized: few examples per case
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_matches_reference(name, labels, seed, scale):
    make, reference_fn, functional = CASES[name]
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3, scale=scale)
    want = reference_fn(labels, x)
    assert _value(make(), labels, x) == pytest.approx(want, rel=1e-5, abs=1e-5)
    assert float(to_numpy(functional(labels, x.astype("float32")))) == pytest.approx(want, rel=1e-5, abs=1e-5)


def _gapped_keep(loss, labels, x, pos_above, neg_below):
    """The reference's keep() for ThresholdMiner(pos_above, neg_below) on the loss's
    matrix, or None when a pair lies too close to a threshold for float32."""
    d = to_numpy(loss.pairwise(x.astype("float32"))).astype(np.float64)
    values = d[~np.eye(len(d), dtype=bool)]
    if values.size and min(np.min(np.abs(values - t)) for t in (pos_above, neg_below)) < 1e-4:
        return None, d
    return (lambda a, j, is_positive, v: d[a, j] > pos_above if is_positive else d[a, j] < neg_below), d


@pytest.mark.parametrize("name", sorted(CASES))
def test_with_a_pair_miner(name):
    """A pair miner restricts every sum to the pairs it keeps (pytorch-metric-learning's
    indices_tuple); the reference reads the same choice."""
    make, reference_fn, functional = CASES[name]
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    probe = make()
    checked = 0
    for seed in range(6):
        x = make_batch(seed, labels, dim=3)
        d = to_numpy(probe.pairwise(x.astype("float32"))).astype(np.float64)
        values = np.unique(d[~np.eye(len(d), dtype=bool)])
        k, m = len(values) * 3 // 10, len(values) * 6 // 10  # thresholds between two values
        pos_above, neg_below = (values[k] + values[k + 1]) / 2, (values[m] + values[m + 1]) / 2
        keep, _ = _gapped_keep(probe, labels, x, pos_above, neg_below)
        if keep is None:
            continue
        miner = ThresholdMiner(
            pos_above, neg_below, distance=probe.distance if probe.distance != "dot" else "euclidean"
        )
        want = reference_fn(labels, x, keep=keep)
        assert _value(make(miner=miner), labels, x) == pytest.approx(want, rel=1e-5, abs=1e-5), seed
        fn = functional(labels, x.astype("float32"), miner=miner)
        assert float(to_numpy(fn)) == pytest.approx(want, rel=1e-5, abs=1e-5)
        checked += 1
    assert checked >= 3


REF_FROM_DISTANCES = {
    "circle": lambda y, d, r: ref.circle_loss_from_distances(y, d, ref_labels=r),
    "lifted": lambda y, d, r: ref.lifted_structure_loss_from_distances(y, d, ref_labels=r),
    "generalized-lifted": lambda y, d, r: ref.generalized_lifted_structure_loss_from_distances(
        y, d, ref_labels=r
    ),
    "ntxent": lambda y, d, r: ref.ntxent_loss_from_distances(y, d, ref_labels=r),
    "supcon": lambda y, d, r: ref.supcon_loss_from_distances(y, d, ref_labels=r),
}


@pytest.mark.parametrize("name", sorted(REF_FROM_DISTANCES))
def test_cross_batch_memory_columns(name):
    """`[B, R]` matrices with `ref_labels` (the batch, then memory slots; -1 = empty)."""
    labels = np.array([0, 0, 1, 2, 2, 3])
    ref_labels = np.concatenate([labels, [1, 0, -1, 3, 5, -1, 2]])
    loss = CASES[name][0]()
    x = make_batch(3, ref_labels, dim=3)
    full = to_numpy(loss.pairwise(x.astype("float32"))).astype(np.float64)
    d = full[: len(labels)]
    got = loss.compute_from_distances(
        ops.convert_to_tensor(labels.astype("int32")),
        ops.convert_to_tensor(d.astype("float32")),
        ref_labels=ops.convert_to_tensor(ref_labels.astype("int32")),
    )
    want = REF_FROM_DISTANCES[name](labels, d, ref_labels)
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    # Empty slots hold garbage: it must not matter.
    noisy = d.copy()
    noisy[:, ref_labels < 0] = 1e6
    again = loss.compute_from_distances(
        ops.convert_to_tensor(labels.astype("int32")),
        ops.convert_to_tensor(noisy.astype("float32")),
        ref_labels=ops.convert_to_tensor(ref_labels.astype("int32")),
    )
    assert float(to_numpy(again)) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_npairs_rejects_cross_batch_memory():
    labels = ops.convert_to_tensor(np.array([0, 0, 1, 1], "int32"))
    with pytest.raises(NotImplementedError, match="cross-batch memory"):
        losses.NPairsLoss().compute_from_distances(
            labels,
            ops.zeros((4, 6)),
            ref_labels=ops.convert_to_tensor(np.array([0, 0, 1, 1, 1, -1], "int32")),
        )


def test_npairs_picks_one_pair_per_class_in_batch_order():
    """Classes with three members: only the first member and its first positive count."""
    labels = np.array([7, 3, 7, 3, 7, 3, 9])
    x = make_batch(4, labels, dim=3)
    want = ref.npairs_loss(labels, x, distance="dot")
    assert _value(losses.NPairsLoss(distance="dot"), labels, x) == pytest.approx(want, rel=1e-5)
    # Moving the later members changes nothing; moving the first ones does.
    moved = x.copy()
    moved[4] += 5.0
    assert _value(losses.NPairsLoss(distance="dot"), labels, moved) == pytest.approx(want, rel=1e-5)


def test_large_exponents_stay_finite():
    """τ = 0.07 on Euclidean distances of large embeddings, γ = 256: exponents in the
    thousands, handled by the max-subtracted log-sum-exp."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(9, labels, dim=4, scale=100.0)
    for loss, want in (
        (
            losses.NTXentLoss(temperature=0.07, distance="euclidean"),
            ref.ntxent_loss(labels, x, 0.07, "euclidean"),
        ),
        (
            losses.SupConLoss(temperature=0.07, distance="euclidean"),
            ref.supcon_loss(labels, x, 0.07, "euclidean"),
        ),
        (losses.CircleLoss(m=0.25, gamma=256), ref.circle_loss(labels, x, 0.25, 256)),
        (losses.LiftedStructureLoss(neg_margin=50.0), ref.lifted_structure_loss(labels, x, 50.0)),
    ):
        value, grad = value_and_grad(
            lambda e, loss=loss: loss(ops.convert_to_tensor(labels), e), x.astype("float32")
        )
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert float(value) == pytest.approx(want, rel=1e-4)


# --------------------------------------------------------------------------- gradients

LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 3])


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name):
    make, reference_fn, _ = CASES[name]
    x = make_batch(21, LABELS, dim=3)
    loss = make()
    labels = ops.convert_to_tensor(LABELS)
    value, grad = value_and_grad(lambda e: loss(labels, e), x.astype("float32"))
    assert float(value) == pytest.approx(reference_fn(LABELS, x), rel=1e-5, abs=1e-5)
    if name.startswith("circle"):
        # The circle loss's weights carry no gradient (the paper's α): hold them at x.
        m, gamma = loss.m, loss.gamma
        numeric = ref.numerical_gradient(lambda e: ref.circle_loss(LABELS, e, m, gamma, weights_at=x), x)
    else:
        numeric = ref.numerical_gradient(lambda e: reference_fn(LABELS, e), x)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4 * max(1.0, np.abs(numeric).max()))


@pytest.mark.parametrize(
    "make",
    [
        *(CASES[name][0] for name in sorted(CASES) if not name.startswith("npairs")),
        lambda: losses.MultiSimilarityLoss(),
        lambda: losses.MultiSimilarityLoss(miner=miners.MultiSimilarityMiner(epsilon=0.1)),
        lambda: losses.LiftedStructureLoss(miner=miners.MultiSimilarityMiner(epsilon=0.1)),
    ],
)
def test_row_blocks_give_the_whole_matrix_result(make, monkeypatch):
    # Large batches on eager PyTorch run in row blocks (losses.reductions.by_row_blocks); here
    # blocks of 3 rows on every backend, against the whole matrix at once.
    x = make_batch(5, LABELS, dim=3)
    labels = ops.convert_to_tensor(LABELS)
    whole = value_and_grad(lambda e: make()(labels, e), x)
    monkeypatch.setattr(reductions, "FUSES_ELEMENTWISE_STEPS", False)
    monkeypatch.setattr(reductions, "BLOCK_ENTRIES", 3 * len(LABELS))
    blocks = value_and_grad(lambda e: make()(labels, e), x)
    assert float(blocks[0]) == pytest.approx(float(whole[0]), rel=1e-6)
    np.testing.assert_allclose(blocks[1], whole[1], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- compiled


@pytest.mark.skipif(BACKEND == "torch", reason="jit_compile applies to TensorFlow and JAX")
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_equals_eager(name):
    make, _, _ = CASES[name]
    loss = make()
    x = make_batch(2, LABELS, dim=3).astype("float32")
    eager = _value(loss, LABELS, x)
    fn = compiled(lambda y, e: loss.compute_from_distances(y, loss.pairwise(e)))
    got = fn(ops.convert_to_tensor(LABELS.astype("int32")), ops.convert_to_tensor(x))
    assert float(to_numpy(got)) == pytest.approx(eager, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- degenerate

_normal = np.random.default_rng(1234).normal(size=(6, 4)).astype("float32")
PAIRS = np.array([0, 0, 1, 1, 2, 2])
DEGENERATE = {
    "one-sample": (np.array([0]), _normal[:1]),
    "no-positive-pair": (np.array([0, 1, 2, 3]), _normal[:4]),
    "no-negative": (np.array([5, 5, 5, 5]), _normal[:4]),
    "identical-embeddings": (PAIRS, np.tile(_normal[:1], (6, 1))),
    "zero-vectors": (PAIRS, np.zeros((6, 4), "float32")),
    "one-zero-vector": (PAIRS, np.concatenate([np.zeros((1, 4), "float32"), _normal[1:]])),
    "large-values": (PAIRS, (_normal * 1e4).astype("float32")),
}


@pytest.mark.parametrize("batch", sorted(DEGENERATE))
@pytest.mark.parametrize("name", sorted(CASES))
def test_degenerate_batches_are_finite_and_as_documented(name, batch):
    make, reference_fn, _ = CASES[name]
    labels, x = DEGENERATE[batch]
    value, grad = value_and_grad(lambda e: make()(ops.convert_to_tensor(labels), e), x)
    assert np.isfinite(value), f"{name} on {batch}: loss {value}"
    assert np.all(np.isfinite(grad)), f"{name} on {batch}: non-finite gradient"
    want = reference_fn(labels, x.astype(np.float64))
    rel = 1e-4 if batch == "large-values" else 1e-5
    assert float(value) == pytest.approx(want, rel=rel, abs=1e-5), f"{name} on {batch}"
    if batch in ("one-sample", "no-positive-pair", "no-negative") and not name.startswith("generalized"):
        # Nothing to learn from (the generalized lifted loss still has each anchor's
        # negative term without a positive, as pytorch-metric-learning defines it).
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, np.zeros_like(grad))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
    make, reference_fn, _ = CASES[name]
    value, grad = value_and_grad(lambda e: make()(ops.convert_to_tensor(PAIRS), e), _normal, dtype=dtype)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), f"{name} on {dtype}"
    rounded = np.asarray(ops.convert_to_numpy(ops.cast(ops.cast(_normal, dtype), "float32")), np.float64)
    assert float(value) == pytest.approx(reference_fn(PAIRS, rounded), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("bad", ["nan", "inf"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_non_finite_embeddings_give_nan(name, bad):
    make, _, functional = CASES[name]
    x = _normal.copy()
    x[2, 1] = float(bad)
    for value in (make()(PAIRS, x), functional(PAIRS, x)):
        assert np.isnan(float(to_numpy(value))), f"{name} with a {bad} embedding"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_a_clear_error(name):
    make, _, functional = CASES[name]
    loss = make()
    with pytest.raises(ValueError, match="integers"):
        loss(np.array([0.0, 0.5, 1.0, 1.0, 2.0, 2.0]), _normal)
    with pytest.raises(ValueError, match="2-D"):
        loss(PAIRS, _normal[:, :, None])
    with pytest.raises(ValueError, match="entries"):
        functional(PAIRS[:4], _normal)
    with pytest.raises(ValueError, match="miner"):
        make(miner="batch-hard")


@pytest.mark.parametrize(
    "make",
    [
        lambda: losses.CircleLoss(gamma=0),
        lambda: losses.CircleLoss(m=float("nan")),
        lambda: losses.NTXentLoss(temperature=0.0),
        lambda: losses.SupConLoss(temperature=-1.0),
        lambda: losses.LiftedStructureLoss(neg_margin=float("inf")),
        lambda: losses.GeneralizedLiftedStructureLoss(pos_margin=float("nan")),
        lambda: losses.NPairsLoss(distance="dotproduct"),
        lambda: losses.NPairsLoss(distance="dot", p=3),
        lambda: losses.NTXentLoss(distance="minkowski"),
    ],
)
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


def test_no_triplet_margin_and_circle_is_cosine():
    for make, _, _ in CASES.values():
        assert make().margin is None  # TripletModel does not log active_fraction
    assert losses.CircleLoss(distance="euclidean").distance == "cosine"


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("memory_size", [0, 24])
@pytest.mark.parametrize("name", ["circle", "lifted", "generalized-lifted", "npairs", "ntxent", "supcon"])
def test_triplet_model_and_plain_model_train(name, memory_size):
    if name == "npairs" and memory_size:
        pytest.skip("NPairsLoss has no cross-batch memory (test_npairs_rejects_cross_batch_memory)")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.repeat(np.arange(8), 4).astype("int32")
    model = TripletModel(
        keras.Sequential([keras.Input((6,)), keras.layers.Dense(8)]), memory_size=memory_size
    )
    model.compile(optimizer="adam", loss=CASES[name][0]())
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if not memory_size:
        plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8)])
        plain.compile(optimizer="sgd", loss=CASES[name][0]())
        assert np.isfinite(plain.train_on_batch(x[:16], y[:16]))
