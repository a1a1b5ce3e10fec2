"""`_backend.compiled_mining`: a TensorFlow step without XLA runs its mining part as one
XLA function (loss, statistics and gradient), with the numbers of the op-by-op step; a
dynamic batch size, an eager call and the other backends run it as it is."""

import keras
import numpy as np
import pytest

from keras_triplet import losses
from keras_triplet._backend import _compiled_mining, compiled_mining
from keras_triplet.models.step import loss_and_statistics, mined_loss_and_statistics

BACKEND = keras.backend.backend()


def _batch(rows=24, k=4, dim=6):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, dim)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(rows // k), k).astype("int32")


def test_eagerly_the_function_runs_as_it_is():
    x, _ = _batch(rows=128)  # large enough to be compiled in a TensorFlow graph
    compiled, value = compiled_mining(lambda c, e: (c, keras.ops.sum(e)), keras.ops.convert_to_tensor(x))
    assert compiled is False
    np.testing.assert_allclose(float(value), x.sum(), rtol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the mining part is compiled alone on TensorFlow only")
def test_tensorflow_graph_leaves_small_batches_op_by_op(monkeypatch):
    import tensorflow as tf

    compiled = []  # the batch sizes handed to XLA
    monkeypatch.setattr(
        _compiled_mining,
        "_xla_call",
        lambda fn, x, tensors, gradient: compiled.append(x.shape[0]) or fn(False, x),
    )

    @tf.function(jit_compile=False)
    def step(e):
        return compiled_mining(lambda c, e: (tf.reduce_sum(e), ()), e)[0]

    for rows in (127, 128):
        step.get_concrete_function(tf.TensorSpec((rows, 4)))
    step.get_concrete_function(tf.TensorSpec((None, 4)))  # a dynamic batch: op by op
    assert compiled == [128]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the mining part is compiled alone on TensorFlow only")
def test_tensorflow_graph_compiles_the_mining_with_the_same_numbers(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(_compiled_mining, "MIN_ENTRIES", 0)  # compile this small batch too

    x, y = _batch()
    loss_fn = losses.TripletLoss(margin=0.2, miner="semi-hard")  # conds and loops: the hard case

    @tf.function(jit_compile=False)
    def step(e, labels, statistics):
        with tf.GradientTape() as tape:
            tape.watch(e)
            value, stats, _ = mined_loss_and_statistics(loss_fn, labels, e, statistics, fused=False)
            value = 3.0 * value  # an upstream gradient other than 1
        return value, stats, tape.gradient(value, e)

    args = tf.constant(x), tf.constant(y), tf.constant(True)
    graph = step.get_concrete_function(*args).graph
    assert any(
        op.node_def.attr["_XlaMustCompile"].b
        for op in graph.get_operations()
        if "_XlaMustCompile" in op.node_def.attr
    ), "no XLA cluster in the step"
    value, stats, grad = step(*args)
    e = tf.constant(x)
    with tf.GradientTape() as tape:  # eagerly: op by op
        tape.watch(e)
        expected_value, expected_stats = loss_and_statistics(loss_fn, y, loss_fn.pairwise(e), fused=False)
        expected_value = 3.0 * expected_value
    np.testing.assert_allclose(float(value), float(expected_value), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), tape.gradient(expected_value, e).numpy(), rtol=1e-4, atol=1e-6)
    for name, v in stats.items():
        np.testing.assert_allclose(float(v), float(expected_stats[name]), rtol=1e-5, atol=1e-7)
    _, stats, _ = step(*args[:2], tf.constant(False))  # the statistics' flag, a tensor argument
    assert all(float(v) == 0.0 for v in stats.values())
