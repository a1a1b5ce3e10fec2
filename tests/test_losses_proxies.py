"""The proxy and margin-softmax losses (losses with trainable class weights): against the
NumPy reference, on degenerate batches, on bad input, in models (plain Keras and
`TripletModel`), compiled, and through get_config."""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import cast_input, compiled, to_numpy, value_and_grad
from hypothesis import given
from hypothesis import strategies as st

from keras_triplet import TripletModel, losses

NUM_CLASSES, DIM = 4, 3

# id -> (class factory, functional form of (labels, x, weights), reference of (labels, x, weights))
LOSSES = {
    "proxy-anchor": (
        lambda: losses.ProxyAnchorLoss(NUM_CLASSES, DIM, margin=0.2, alpha=16),
        lambda y, x, w: losses.proxy_anchor_loss(y, x, w, margin=0.2, alpha=16),
        lambda y, x, w: ref.proxy_anchor_loss(y, x, w, margin=0.2, alpha=16),
    ),
    "proxy-nca": (
        lambda: losses.ProxyNCALoss(NUM_CLASSES, DIM, softmax_scale=3),
        lambda y, x, w: losses.proxy_nca_loss(y, x, w, softmax_scale=3),
        lambda y, x, w: ref.proxy_nca_loss(y, x, w, softmax_scale=3),
    ),
    "arcface": (
        lambda: losses.ArcFaceLoss(NUM_CLASSES, DIM, margin=40.0, scale=8),
        lambda y, x, w: losses.arcface_loss(y, x, w, margin=40.0, scale=8),
        lambda y, x, w: ref.arcface_loss(y, x, w, margin=40.0, scale=8),
    ),
    "cosface": (
        lambda: losses.CosFaceLoss(NUM_CLASSES, DIM, margin=0.3, scale=8),
        lambda y, x, w: losses.cosface_loss(y, x, w, margin=0.3, scale=8),
        lambda y, x, w: ref.cosface_loss(y, x, w, margin=0.3, scale=8),
    ),
    "sub-center-arcface": (
        lambda: losses.SubCenterArcFaceLoss(NUM_CLASSES, DIM, margin=40.0, scale=8, sub_centers=2),
        lambda y, x, w: losses.sub_center_arcface_loss(y, x, w, margin=40.0, scale=8, sub_centers=2),
        lambda y, x, w: ref.arcface_loss(y, x, w, margin=40.0, scale=8, sub_centers=2),
    ),
}
NAMES = sorted(LOSSES)


def _weights(name, seed=0):
    """Random weights in the loss's layout (float32-representable)."""
    shape = LOSSES[name][0]().weight_shape()
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _loss(name, weights=None):
    loss = LOSSES[name][0]()
    loss.set_weights([_weights(name) if weights is None else weights])
    return loss


@pytest.mark.parametrize("name", NAMES)
@given(
    labels=st.sampled_from((1, 5, 8)).flatmap(
        lambda b: st.lists(st.integers(0, NUM_CLASSES - 1), min_size=b, max_size=b)
    ),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from((0.1, 1.0, 30.0)),
)
def test_against_reference(name, labels, seed, scale):
    labels = np.array(labels)
    x = (np.random.default_rng(seed).normal(size=(len(labels), DIM)) * scale).astype(np.float32)
    w = _weights(name, seed)
    loss = _loss(name, w)
    expected = LOSSES[name][2](labels, x, w)
    got_class = float(to_numpy(loss(labels, x)))
    got_function = float(to_numpy(LOSSES[name][1](labels, x, w)))
    np.testing.assert_allclose(got_class, expected, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got_function, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_against_numerical(name):
    labels = np.array([0, 0, 1, 2, 2, 2])
    x = np.random.default_rng(1).normal(size=(6, DIM))
    w = _weights(name, 1)
    loss = _loss(name, w)
    _, grad = value_and_grad(lambda t: loss(labels, t), x.astype(np.float32))
    numerical = ref.numerical_gradient(lambda v: LOSSES[name][2](labels, v, w), x, eps=1e-6)
    np.testing.assert_allclose(grad, numerical, rtol=1e-3, atol=1e-4)


DEGENERATE = {
    "one-sample": (np.array([2]), lambda: np.array([[0.3, -0.2, 0.9]])),
    "one-class": (np.array([1, 1, 1, 1]), lambda: np.random.default_rng(2).normal(size=(4, DIM))),
    "all-distinct": (np.array([0, 1, 2, 3]), lambda: np.random.default_rng(3).normal(size=(4, DIM))),
    "identical": (np.array([0, 0, 1, 1]), lambda: np.ones((4, DIM))),
    "zeros": (np.array([0, 0, 1, 1]), lambda: np.zeros((4, DIM))),
    "scale-1e4": (np.array([0, 0, 1, 3]), lambda: 1e4 * np.random.default_rng(4).normal(size=(4, DIM))),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", NAMES)
def test_degenerate_batches_finite(name, case):
    labels, make = DEGENERATE[case]
    x = make().astype(np.float32)
    loss = _loss(name)
    value, grad = value_and_grad(lambda t: loss(labels, t), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    # a class weight equal to an embedding: cos θ = 1, where arccos has no gradient
    w = _weights(name)
    if name.startswith("proxy"):
        w[labels[0]] = x[0] if np.any(x[0]) else w[labels[0]]
    else:
        w[:, loss.weight_shape()[1] // NUM_CLASSES * labels[0]] = x[0] if np.any(x[0]) else 1.0
    loss.set_weights([w])
    value, grad = value_and_grad(lambda t: loss(labels, t), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_half_precision_computed_in_float32(name, dtype):
    labels = np.array([0, 0, 1, 2, 3])
    x = np.random.default_rng(5).normal(size=(5, DIM)).astype(np.float32)
    loss = _loss(name)
    low = cast_input(x, dtype)
    value = loss(labels, low)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    expected = LOSSES[name][2](labels, to_numpy(keras.ops.cast(low, "float32")), loss.get_weights()[0])
    np.testing.assert_allclose(float(to_numpy(value)), expected, rtol=1e-4, atol=1e-4)
    value, grad = value_and_grad(lambda t: loss(labels, t), x, dtype=dtype)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_embeddings_give_nan(name, bad):
    labels = np.array([0, 1, 1])
    x = np.random.default_rng(6).normal(size=(3, DIM)).astype(np.float32)
    x[1, 2] = bad
    assert np.isnan(float(to_numpy(_loss(name)(labels, x))))
    assert np.isnan(float(to_numpy(LOSSES[name][1](labels, x, _weights(name)))))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises(name):
    loss = _loss(name)
    x = np.random.default_rng(7).normal(size=(3, DIM)).astype(np.float32)
    with pytest.raises(ValueError, match=r"class ids in \[0, num_classes\) = \[0, 4\).*got \[4\]"):
        loss(np.array([0, 4, 1]), x)
    with pytest.raises(ValueError, match=r"class ids in \[0, num_classes\)"):
        LOSSES[name][1](np.array([0, -1, 1]), x, _weights(name))
    with pytest.raises(ValueError, match="must hold integers"):
        loss(np.array([0.0, 0.5, 1.0]), x)
    with pytest.raises(ValueError, match="2-D tensor"):
        loss(np.array([0, 1, 1]), x[:, :, None])
    with pytest.raises(ValueError, match="one label per example"):
        loss(np.array([0, 1]), x)
    with pytest.raises(ValueError, match="embedding_size=3"):
        loss(np.array([0, 1, 1]), np.ones((3, 5), "float32"))
    with pytest.raises(ValueError, match="expects one array of shape"):
        loss.set_weights([np.ones((2, 2), "float32")])
    with pytest.raises(TypeError, match="needs the embeddings"):
        loss.compute_from_distances(np.array([0, 1, 1]), np.zeros((3, 3), "float32"))
    with pytest.raises(ValueError, match="num_classes"):
        type(loss)(num_classes=0, embedding_size=DIM)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_label_in_a_compiled_graph_gives_nan(name):
    """Compiled graphs cannot check values: the documented result is a NaN loss."""
    loss = _loss(name)
    x = np.random.default_rng(8).normal(size=(3, DIM)).astype(np.float32)
    fn = compiled(lambda y, t: loss(y, t))
    if keras.backend.backend() == "torch":  # eager: the values are checked
        with pytest.raises(ValueError, match="class ids"):
            fn(np.array([0, 7, 1], "int32"), x)
    else:
        assert np.isnan(float(to_numpy(fn(np.array([0, 7, 1], "int32"), x))))
    expected = LOSSES[name][2](np.array([0, 3, 1]), x, loss.get_weights()[0])
    np.testing.assert_allclose(float(to_numpy(fn(np.array([0, 3, 1], "int32"), x))), expected, rtol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_get_config_round_trip(name):
    loss = LOSSES[name][0]()
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    assert restored.get_weights()[0].shape == loss.get_weights()[0].shape
    assert loss.margin is None  # no triplet margin: TripletModel does not log active_fraction


def _data(n=24):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = np.arange(n) % NUM_CLASSES
    return x, y


def _embedder():
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(DIM)])


@pytest.mark.parametrize("name", NAMES)
def test_triplet_model_trains_the_weights(name):
    """`TripletModel.compile` tracks the loss's weights: `fit` changes them (compiled with
    jit_compile on TensorFlow and JAX), and the statistics are logged beside the loss."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    loss = _loss(name)
    model = TripletModel(_embedder())
    jit = keras.backend.backend() != "torch"
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=jit)
    assert any(v is loss.variable for v in model.trainable_variables)
    before = loss.get_weights()[0].copy()
    history = model.fit(x, y, batch_size=12, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert "hard_fraction" in history and "positive_distance" in history
    assert not np.allclose(loss.get_weights()[0], before), "the loss's weights were not trained"
    # the step's value is the loss of the embeddings
    emb = model.embed(x)
    expected = LOSSES[name][2](y, emb, loss.get_weights()[0])
    value = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_plain_model_pattern():
    """A plain functional Keras model: `compile(loss=...)` alone does not train the weights
    (Keras does not track a loss's variables); tracking the loss's layer as an attribute
    does (ARCHITECTURE.md)."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(DIM)(inputs))
    loss = _loss("cosface")
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    model.loss_weights_layer = loss.weights_layer
    before = loss.get_weights()[0].copy()
    history = model.fit(x, y, batch_size=12, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert not np.allclose(loss.get_weights()[0], before)


def test_cross_batch_memory_is_rejected():
    model = TripletModel(_embedder(), memory_size=8)
    with pytest.raises(ValueError, match="cross-batch memory does not apply"):
        model.compile(optimizer="sgd", loss=_loss("arcface"))


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_round_trip(name, tmp_path):
    """A TripletModel compiled with the loss, saved after a step: the loaded model's loss
    has the same weights, still trained by fit; a plain model keeps them too."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    loss = _loss(name)
    model = TripletModel(_embedder())
    model.compile(optimizer="adam", loss=loss)
    model.train_on_batch(x, y)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    np.testing.assert_array_equal(loaded.loss.get_weights()[0], loss.get_weights()[0])
    assert any(v is loaded.loss.variable for v in loaded.trainable_variables)
    emb = model.predict(x, verbose=0)
    np.testing.assert_allclose(to_numpy(loaded.loss(y, emb)), to_numpy(loss(y, emb)), rtol=1e-6)

    plain = _embedder()
    plain_loss = _loss(name, _weights(name, 3))
    plain.compile(optimizer="sgd", loss=plain_loss)
    plain.save(tmp_path / "plain.keras")
    reloaded = keras.saving.load_model(tmp_path / "plain.keras")
    np.testing.assert_array_equal(reloaded.loss.get_weights()[0], plain_loss.get_weights()[0])
