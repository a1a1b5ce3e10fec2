"""keras_triplet.losses against the NumPy reference: values, averaging and gradients."""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import make_batch, to_numpy, value_and_grad
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from keras_triplet import losses, miners

# A few batch sizes only: JAX compiles each op once per shape, even eagerly.
BATCH_SIZES = (2, 5, 8)
METRIC_CASES = [("euclidean", None), ("squared_euclidean", None), ("cosine", None), ("minkowski", 3)]


def labels_strategy(max_classes=4):
    return st.sampled_from(BATCH_SIZES).flatmap(
        lambda b: st.lists(st.integers(0, max_classes - 1), min_size=b, max_size=b)
    )


# id -> (TripletLoss kwargs given the margin, reference kwargs given the margin)
TRIPLET_CASES = {
    "semi-hard": (lambda m: dict(miner="semi-hard"), lambda m: dict(miner="semi-hard")),
    "batch-hard": (lambda m: dict(miner="batch-hard"), lambda m: dict(miner="batch-hard")),
    "batch-all": (lambda m: dict(miner="batch-all"), lambda m: dict(miner="batch-all")),
    "batch-all-triplets": (
        lambda m: dict(miner="batch-all", average="triplets"),
        lambda m: dict(miner="batch-all", average="triplets"),
    ),
    "batch-hard-nonzero": (
        lambda m: dict(miner="batch-hard", average="nonzero"),
        lambda m: dict(miner="batch-hard", average="nonzero"),
    ),
    "semi-hard-nonzero": (
        lambda m: dict(miner="semi-hard", average="nonzero"),
        lambda m: dict(miner="semi-hard", average="nonzero"),
    ),
    "semi-hard-soft": (
        lambda m: dict(miner="semi-hard", soft_margin=True),
        lambda m: dict(miner="semi-hard", soft_margin=True),
    ),
    "batch-hard-soft": (
        lambda m: dict(miner="batch-hard", soft_margin=True),
        lambda m: dict(miner="batch-hard", soft_margin=True),
    ),
    "semi-hard-no-fallback": (
        lambda m: dict(miner=miners.SemiHardMiner(fallback="none")),
        lambda m: dict(miner="semi-hard", miner_kwargs=dict(fallback="none")),
    ),
    "batch-all-hard-instance": (
        lambda m: dict(miner=miners.BatchAllMiner(margin=m, select="hard"), average="nonzero"),
        lambda m: dict(miner="batch-all", average="nonzero", miner_kwargs=dict(margin=m, select="hard")),
    ),
    "batch-all-semi-hard-instance": (
        lambda m: dict(miner=miners.BatchAllMiner(margin=m, select="semi-hard"), average="nonzero"),
        lambda m: dict(miner="batch-all", average="nonzero", miner_kwargs=dict(margin=m, select="semi-hard")),
    ),
    "batch-all-violating-smaller-band": (
        # A band narrower than the loss margin: every mined triplet still has a loss.
        lambda m: dict(miner=miners.BatchAllMiner(margin=m / 2, select="violating"), average="triplets"),
        lambda m: dict(miner="batch-all", average="triplets", miner_kwargs=dict(margin=m / 2)),
    ),
}


def _library_triplet(labels, x, margin, case, metric, p):
    kwargs = TRIPLET_CASES[case][0](margin)
    loss = losses.TripletLoss(margin=margin, distance=metric, p=p, **kwargs)
    return loss, kwargs


def _reference_triplet(labels, x, margin, case, metric, p):
    return ref.triplet_loss(labels, x, margin=margin, distance=metric, p=p, **TRIPLET_CASES[case][1](margin))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("case", sorted(TRIPLET_CASES))
@settings(max_examples=12)  # parametrized: fewer examples per case
@given(
    labels=labels_strategy(),
    seed=st.integers(0, 2**31 - 1),
    metric=st.sampled_from(METRIC_CASES),
    margin=st.sampled_from([0.2, 1.0]),
)
def test_triplet_loss_matches_reference(case, labels, seed, metric, margin):
    metric, p = metric
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3)
    d = ref.pairwise_distances(x, metric=metric, p=p)
    assume(ref.comparison_gap(d, [margin, margin / 2]) > 1e-4)
    want = _reference_triplet(labels, x, margin, case, metric, p)
    loss, kwargs = _library_triplet(labels, x, margin, case, metric, p)
    got = float(to_numpy(loss(labels, x.astype("float32"))))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)
    # The function form agrees with the class.
    fn = float(
        to_numpy(
            losses.triplet_loss(labels, x.astype("float32"), margin=margin, distance=metric, p=p, **kwargs)
        )
    )
    assert fn == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("case", sorted(TRIPLET_CASES))
@settings(max_examples=12)  # parametrized: fewer examples per case
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0, 1, 2]))
def test_triplet_loss_exact_on_integer_distances(case, labels, seed, margin):
    """Ties everywhere: band edges, the `ℓ > 0` count of "nonzero" and tie-breaking."""
    labels = np.array(labels)
    gen = np.random.default_rng(seed)
    b = len(labels)
    d = np.triu(gen.integers(0, 5, size=(b, b)).astype(np.float64), 1)
    d = d + d.T
    margin = float(margin)
    want = ref.triplet_loss_from_distances(labels, d, margin=margin, **TRIPLET_CASES[case][1](margin))
    loss = losses.TripletLoss(margin=margin, **TRIPLET_CASES[case][0](margin))
    got = loss.compute_from_distances(
        keras.ops.convert_to_tensor(labels.astype("int32")), keras.ops.convert_to_tensor(d.astype("float32"))
    )
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_labels_of_shape_b1_and_float_whole_numbers_are_accepted():
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(5, labels, dim=3)
    want = ref.triplet_loss(labels, x, miner="batch-hard")
    loss = losses.TripletLoss(miner="batch-hard")
    for y in (labels.reshape(-1, 1), labels.astype("float32"), labels.astype("int64")):
        assert float(to_numpy(loss(y, x.astype("float32")))) == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_pairwise_and_compute_from_distances(metric, p):
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    x = make_batch(11, labels, dim=3)
    for loss in (
        losses.TripletLoss(distance=metric, p=p),
        losses.TripletLoss(distance=metric, p=p, miner="batch-all"),
        losses.QuadrupletLoss(distance=metric, p=p),
    ):
        assert loss.distance == metric and loss.p == p
        d = loss.pairwise(x.astype("float32"))
        np.testing.assert_allclose(
            to_numpy(d), ref.pairwise_distances(x, metric=metric, p=p), rtol=1e-5, atol=1e-5
        )
        from_d = loss.compute_from_distances(keras.ops.convert_to_tensor(labels.astype("int32")), d)
        direct = loss(labels, x.astype("float32"))
        assert float(to_numpy(from_d)) == pytest.approx(float(to_numpy(direct)), rel=1e-6, abs=1e-6)
    angular = losses.AngularLoss()
    assert angular.margin is None  # no triplet margin: active_fraction is not logged
    d = angular.pairwise(x.astype("float32"))
    np.testing.assert_allclose(to_numpy(d), ref.pairwise_distances(x, metric="cosine"), rtol=1e-5, atol=1e-5)
    from_d = angular.compute_from_distances(keras.ops.convert_to_tensor(labels.astype("int32")), d)
    assert float(to_numpy(from_d)) == pytest.approx(ref.angular_loss(labels, x), rel=1e-5, abs=1e-5)


def test_margin_attribute():
    assert losses.TripletLoss(margin=0.3).margin == pytest.approx(0.3)
    assert losses.QuadrupletLoss(margin=0.4).margin == pytest.approx(0.4)


@given(
    labels=labels_strategy(max_classes=5),
    seed=st.integers(0, 2**31 - 1),
    metric=st.sampled_from(METRIC_CASES),
    margins=st.sampled_from([(1.0, 0.5), (0.3, 0.1), (0.5, 0.5)]),
)
def test_quadruplet_loss_matches_reference(labels, seed, metric, margins):
    metric, p = metric
    margin, margin2 = margins
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3)
    d = ref.pairwise_distances(x, metric=metric, p=p)
    assume(ref.comparison_gap(d, [margin, margin2], rows_only=False) > 1e-4)
    want = ref.quadruplet_loss(labels, x, margin, margin2, distance=metric, p=p)
    loss = losses.QuadrupletLoss(margin=margin, margin2=margin2, distance=metric, p=p)
    assert float(to_numpy(loss(labels, x.astype("float32")))) == pytest.approx(want, rel=1e-5, abs=1e-5)
    fn = losses.quadruplet_loss(labels, x.astype("float32"), margin, margin2, distance=metric, p=p)
    assert float(to_numpy(fn)) == pytest.approx(want, rel=1e-5, abs=1e-5)


@given(
    labels=labels_strategy(max_classes=5),
    seed=st.integers(0, 2**31 - 1),
    margins=st.sampled_from([(1, 0), (2, 1), (0, 0)]),
)
def test_quadruplet_loss_exact_on_integer_distances(labels, seed, margins):
    labels = np.array(labels)
    gen = np.random.default_rng(seed)
    b = len(labels)
    d = np.triu(gen.integers(0, 5, size=(b, b)).astype(np.float64), 1)
    d = d + d.T
    margin, margin2 = map(float, margins)
    want = ref.quadruplet_loss_from_distances(labels, d, margin, margin2)
    got = losses.QuadrupletLoss(margin=margin, margin2=margin2).compute_from_distances(
        keras.ops.convert_to_tensor(labels.astype("int32")), keras.ops.convert_to_tensor(d.astype("float32"))
    )
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-6, abs=1e-6)


@given(
    labels=labels_strategy(),
    seed=st.integers(0, 2**31 - 1),
    alpha=st.sampled_from([20.0, 36.0, 40.0, 45.0, 55.0]),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_angular_loss_matches_reference(labels, seed, alpha, scale):
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3, scale=scale)
    want = ref.angular_loss(labels, x, alpha)
    got = losses.AngularLoss(alpha=alpha)(labels, x.astype("float32"))
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    fn = losses.angular_loss(labels, x.astype("float32"), alpha=alpha)
    assert float(to_numpy(fn)) == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("alpha", [60.0, 65.0])
def test_angular_loss_large_alpha(alpha):
    """Wide angles: tan²α is large and the exponents span a wide range."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    # Classes on nearly opposite directions: a well separated (easy) batch.
    x = np.array(
        [
            [1.0, 0.05, 0.0],
            [1.0, -0.05, 0.0],
            [-1.0, 0.0, 0.05],
            [-1.0, 0.0, -0.05],
            [0.0, 1.0, 0.0],
            [0.05, 1.0, 0.0],
        ]
    )
    for batch in (x, make_batch(2, labels, dim=3)):
        want = ref.angular_loss(labels, batch, alpha)
        got = float(to_numpy(losses.AngularLoss(alpha=alpha)(labels, batch.astype("float32"))))
        assert np.isfinite(got)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4), (alpha, batch[0])


@pytest.mark.parametrize("alpha", [70.0, 89.0])
def test_angular_loss_rejects_alpha_beyond_float32_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        losses.AngularLoss(alpha=alpha)


# --------------------------------------------------------------------------- gradients

LABELS_SMALL = np.array([0, 0, 1, 1, 2, 2])


def _check_gradient(lib_fn, ref_fn, x):
    value, grad = value_and_grad(lib_fn, x.astype("float32"))
    assert float(value) == pytest.approx(ref_fn(x), rel=1e-5, abs=1e-5)
    numeric = ref.numerical_gradient(ref_fn, x)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4)
    return grad


def _gradient_batch(seed, metric="euclidean", p=None, margins=(1.0,), rows_only=True):
    for s in range(seed, seed + 50):
        x = make_batch(s, LABELS_SMALL, dim=3)
        d = ref.pairwise_distances(x, metric=metric, p=p)
        if ref.comparison_gap(d, margins, rows_only=rows_only) > 1e-3:
            return x
    raise AssertionError("no generic batch found")


@pytest.mark.parametrize("case", sorted(TRIPLET_CASES))
@pytest.mark.parametrize("metric,p", [("euclidean", None), ("cosine", None)])
def test_triplet_loss_gradient(case, metric, p):
    margin = 1.0
    x = _gradient_batch(0, metric, p, margins=(margin, margin / 2))
    loss = losses.TripletLoss(margin=margin, distance=metric, p=p, **TRIPLET_CASES[case][0](margin))
    labels = keras.ops.convert_to_tensor(LABELS_SMALL)
    grad = _check_gradient(
        lambda e: loss(labels, e),
        lambda e: ref.triplet_loss(
            LABELS_SMALL, e, margin=margin, distance=metric, p=p, **TRIPLET_CASES[case][1](margin)
        ),
        x,
    )
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("metric,p", [("squared_euclidean", None), ("minkowski", 3)])
def test_triplet_loss_gradient_other_metrics(metric, p):
    x = _gradient_batch(1, metric, p)
    loss = losses.TripletLoss(distance=metric, p=p, miner="batch-all")
    labels = keras.ops.convert_to_tensor(LABELS_SMALL)
    _check_gradient(
        lambda e: loss(labels, e),
        lambda e: ref.triplet_loss(LABELS_SMALL, e, distance=metric, p=p, miner="batch-all"),
        x,
    )


@pytest.mark.parametrize("seed", [0, 7])
def test_quadruplet_loss_gradient(seed):
    x = _gradient_batch(seed, margins=(1.0, 0.5), rows_only=False)
    loss = losses.QuadrupletLoss(margin=1.0, margin2=0.5)
    labels = keras.ops.convert_to_tensor(LABELS_SMALL)
    _check_gradient(lambda e: loss(labels, e), lambda e: ref.quadruplet_loss(LABELS_SMALL, e, 1.0, 0.5), x)


@pytest.mark.parametrize("alpha", [36.0, 45.0])
@pytest.mark.parametrize("seed", [0, 7])
def test_angular_loss_gradient(alpha, seed):
    x = make_batch(seed, LABELS_SMALL, dim=3)
    loss = losses.AngularLoss(alpha=alpha)
    labels = keras.ops.convert_to_tensor(LABELS_SMALL)
    _check_gradient(lambda e: loss(labels, e), lambda e: ref.angular_loss(LABELS_SMALL, e, alpha), x)


# --------------------------------------------------------------------------- configuration


def test_soft_margin_needs_a_single_negative_miner():
    with pytest.raises(ValueError, match="soft_margin"):
        losses.TripletLoss(miner="batch-all", soft_margin=True)


def test_string_miners_resolve_to_instances():
    assert isinstance(losses.TripletLoss(miner="semi-hard").miner, miners.SemiHardMiner)
    assert isinstance(losses.TripletLoss(miner="batch-hard").miner, miners.BatchHardMiner)
    loss = losses.TripletLoss(margin=0.3, miner="batch-all", distance="cosine")
    assert isinstance(loss.miner, miners.BatchAllMiner)
    assert loss.miner.margin == pytest.approx(0.3) and loss.miner.select == "violating"
    assert loss.miner.distance == "cosine"


def test_functional_triplet_loss_keeps_its_named_miners():
    """`triplet_loss` builds a named miner once per options (not a layer at every eager
    call), and a batch-all miner of another margin is another miner."""
    from keras_triplet.losses import triplet

    kept = triplet._functional_miner("batch-all", 0.2, "euclidean", None)
    assert triplet._functional_miner("all", 0.2, "euclidean", None) is not kept  # another key
    assert triplet._functional_miner("batch-all", 0.2, "euclidean", None) is kept
    other = triplet._functional_miner("batch-all", 0.5, "euclidean", None)
    assert other is not kept and other.margin == 0.5 and kept.margin == 0.2
    assert triplet._functional_miner("batch-hard", 1.0, "minkowski", np.array(3.0)).p == 3.0
    instance = miners.SemiHardMiner()
    assert triplet._functional_miner(instance, 1.0, "euclidean", None) is instance
    labels, x = np.array([0, 0, 1, 1, 2, 2]), make_batch(0, np.array([0, 0, 1, 1, 2, 2]), dim=3)
    for margin in (0.2, 0.5):
        want = losses.TripletLoss(margin=margin, miner="batch-all")(labels, x)
        got = losses.triplet_loss(labels, x, margin=margin, miner="batch-all")
        assert float(got) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: losses.TripletLoss(margin=0.3, distance="cosine", miner="batch-all", average="triplets"),
        lambda: losses.TripletLoss(miner=miners.BatchAllMiner(margin=0.2, select="semi-hard"), margin=0.5),
        lambda: losses.TripletLoss(miner=miners.SemiHardMiner(fallback="none"), soft_margin=True),
        lambda: losses.TripletLoss(distance="minkowski", p=3, miner="batch-hard"),
        lambda: losses.QuadrupletLoss(margin=0.7, margin2=0.2, distance="squared_euclidean"),
        lambda: losses.AngularLoss(alpha=45.0),
    ],
)
def test_loss_config_round_trip(make):
    loss = make()
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == config
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(4, labels, dim=3).astype("float32")
    assert float(to_numpy(restored(labels, x))) == pytest.approx(float(to_numpy(loss(labels, x))), rel=1e-6)
