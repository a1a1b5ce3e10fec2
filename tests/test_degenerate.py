"""Every loss on degenerate batches: the value and every gradient entry stay finite, and a
batch with nothing to learn from gives 0 (docs/semantics.md)."""

import numpy as np
import pytest
import reference as ref
from conftest import value_and_grad
from keras import ops

from keras_triplet import losses
from keras_triplet.compat import tfa

# id -> (factory, reference function of (labels, float64 embeddings), is a compat loss)
LOSSES = {
    "triplet-semi-hard": (lambda: losses.TripletLoss(), lambda y, x: ref.triplet_loss(y, x), False),
    "triplet-batch-hard": (
        lambda: losses.TripletLoss(miner="batch-hard"),
        lambda y, x: ref.triplet_loss(y, x, miner="batch-hard"),
        False,
    ),
    "triplet-batch-all": (
        lambda: losses.TripletLoss(miner="batch-all"),
        lambda y, x: ref.triplet_loss(y, x, miner="batch-all"),
        False,
    ),
    "triplet-batch-all-squared": (
        lambda: losses.TripletLoss(miner="batch-all", distance="squared_euclidean"),
        lambda y, x: ref.triplet_loss(y, x, miner="batch-all", distance="squared_euclidean"),
        False,
    ),
    "triplet-semi-hard-cosine": (
        lambda: losses.TripletLoss(distance="cosine", margin=0.2),
        lambda y, x: ref.triplet_loss(y, x, distance="cosine", margin=0.2),
        False,
    ),
    "triplet-semi-hard-soft": (
        lambda: losses.TripletLoss(soft_margin=True),
        lambda y, x: ref.triplet_loss(y, x, soft_margin=True),
        False,
    ),
    "triplet-batch-hard-soft": (
        lambda: losses.TripletLoss(miner="batch-hard", soft_margin=True),
        lambda y, x: ref.triplet_loss(y, x, miner="batch-hard", soft_margin=True),
        False,
    ),
    "quadruplet": (lambda: losses.QuadrupletLoss(), lambda y, x: ref.quadruplet_loss(y, x), False),
    "angular": (lambda: losses.AngularLoss(), lambda y, x: ref.angular_loss(y, x), False),
    "tfa-semi-hard": (
        lambda: tfa.TripletSemiHardLoss(),
        lambda y, x: ref.tfa_triplet_semihard_loss(y, x),
        True,
    ),
    "tfa-hard": (lambda: tfa.TripletHardLoss(), lambda y, x: ref.tfa_triplet_hard_loss(y, x), True),
    "tfa-hard-soft": (
        lambda: tfa.TripletHardLoss(soft=True),
        lambda y, x: ref.tfa_triplet_hard_loss(y, x, soft=True),
        True,
    ),
}

_gen = np.random.default_rng(1234)
_normal6 = _gen.normal(size=(6, 4)).astype("float32")
PAIRS = np.array([0, 0, 1, 1, 2, 2])

# id -> (labels, embeddings, nothing to learn from)
BATCHES = {
    "one-sample": (np.array([0]), _normal6[:1], True),
    "no-positive-pair": (np.array([0, 1, 2, 3]), _normal6[:4], True),
    "no-negative": (np.array([5, 5, 5, 5]), _normal6[:4], True),
    "identical-embeddings": (PAIRS, np.tile(_normal6[:1], (6, 1)), False),
    "zero-vectors": (PAIRS, np.zeros((6, 4), "float32"), False),
    "one-zero-vector": (PAIRS, np.concatenate([np.zeros((1, 4), "float32"), _normal6[1:]]), False),
    "large-values": (PAIRS, (_normal6 * 1e4).astype("float32"), False),
}


def _loss_fn(loss, labels):
    labels_t = ops.convert_to_tensor(labels)
    return lambda e: loss(labels_t, e)


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_and_as_documented(name, batch):
    make, reference_fn, compat = LOSSES[name]
    labels, x, nothing_to_learn = BATCHES[batch]
    value, grad = value_and_grad(_loss_fn(make(), labels), x)
    assert np.isfinite(value), f"{name} on {batch}: loss {value}"
    assert grad.shape == x.shape
    assert np.all(np.isfinite(grad)), f"{name} on {batch}: non-finite gradient {grad}"
    if nothing_to_learn and not compat:
        assert float(value) == 0.0, f"{name} on {batch}: nothing to learn, loss should be 0, got {value}"
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
    # And the value is the reference's (tensorflow-addons' corner cases included).
    want = reference_fn(labels, x.astype(np.float64))
    rel = 1e-4 if batch == "large-values" else 1e-5
    assert float(value) == pytest.approx(want, rel=rel, abs=1e-5), f"{name} on {batch}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_precision_inputs(name, dtype):
    make, reference_fn, _ = LOSSES[name]
    labels = PAIRS
    value, grad = value_and_grad(_loss_fn(make(), labels), _normal6, dtype=dtype)
    assert np.isfinite(value), f"{name} on {dtype}: loss {value}"
    assert np.all(np.isfinite(grad)), f"{name} on {dtype}: non-finite gradient"
    # Computed in float32 from the rounded inputs: close to the reference on those inputs.
    rounded = np.asarray(ops.convert_to_numpy(ops.cast(ops.cast(_normal6, dtype), "float32")), np.float64)
    want = reference_fn(labels, rounded)
    assert float(value) == pytest.approx(want, rel=1e-2, abs=1e-2), f"{name} on {dtype}"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_large_batch_of_duplicates(name):
    # Many exact duplicates across classes: ties everywhere, distances exactly 0.
    make, reference_fn, _ = LOSSES[name]
    # Same [6, 4] shape as the other batches here: JAX compiles per shape, even eagerly.
    labels = np.array([0, 1, 2, 0, 1, 2])
    x = np.repeat(_normal6[:2], 3, axis=0)
    value, grad = value_and_grad(_loss_fn(make(), labels), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


# The functional form of each loss, as `keras_triplet.losses` / `compat.tfa` export it.
FUNCTIONAL = {
    "triplet_loss": lambda y, x: losses.triplet_loss(y, x),
    "quadruplet_loss": lambda y, x: losses.quadruplet_loss(y, x),
    "angular_loss": lambda y, x: losses.angular_loss(y, x),
    "tfa.triplet_semihard_loss": lambda y, x: tfa.triplet_semihard_loss(y, x),
    "tfa.triplet_hard_loss": lambda y, x: tfa.triplet_hard_loss(y, x),
}


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(LOSSES) + sorted(FUNCTIONAL))
def test_non_finite_embeddings_give_nan(name, bad):
    # Divergence must show: a NaN or infinite embedding never comes out as a finite loss
    # (keras.callbacks.TerminateOnNaN watches the loss). One bad entry is enough.
    x = _normal6.copy()
    x[2, 1] = float(bad)
    if name in FUNCTIONAL:
        value = FUNCTIONAL[name](PAIRS, x)
    else:
        value = LOSSES[name][0]()(PAIRS, x)
    value = float(ops.convert_to_numpy(value))
    assert np.isnan(value), f"{name} with a {bad} embedding gave the finite loss {value}"


@pytest.mark.parametrize("memory", [False, True])
def test_training_step_loss_is_nan_on_nan_embeddings(memory):
    # TripletModel's step (with and without cross-batch memory) shows divergence too.
    from keras_triplet.models import step

    x = _normal6.copy()
    x[0, 0] = np.nan
    state = None
    if memory:
        state = (np.zeros((4, 4), "float32"), -np.ones((4,), "int32"), np.int32(0), np.int32(0))
    value, _, _ = step.batch_loss_and_statistics(
        losses.TripletLoss(), PAIRS, ops.convert_to_tensor(x), memory_state=state, training=True
    )
    assert np.isnan(float(ops.convert_to_numpy(value)))
