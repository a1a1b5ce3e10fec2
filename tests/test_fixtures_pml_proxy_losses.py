"""The proxy and margin-softmax losses against golden numbers from the real
pytorch-metric-learning 2.9 (tests/fixtures/pml_proxy_losses.*, made by
tools/fixtures_pml_proxy_losses.py): PML's own initial weights are loaded with
`set_weights`, and the value and the gradients with respect to the embeddings and to the
weights match to 1e-5.

Gradients are not compared on rows of zero embeddings (inputs "zeros"): PML normalises with
`x / max(‖x‖, 1e-12)`, whose gradient at 0 is 1e12, ours with the 1e-12 floor on the
squared norm (1e6); the values agree there.
"""

import json
import os

import keras
import numpy as np
import pytest
from conftest import fixture_sample

from keras_triplet import losses

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

CLASSES = {
    "proxy_anchor": losses.ProxyAnchorLoss,
    "proxy_nca": losses.ProxyNCALoss,
    "arcface": losses.ArcFaceLoss,
    "cosface": losses.CosFaceLoss,
    "sub_center_arcface": losses.SubCenterArcFaceLoss,
}
PARAMETERS = ("margin", "alpha", "softmax_scale", "scale", "sub_centers")


@pytest.fixture(scope="module")
def fixtures():
    paths = [
        os.path.join(FIXTURES, n) for n in ("pml_proxy_losses.json", "pml_proxy_losses.npz", "pml_inputs.npz")
    ]
    missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
    if missing:
        pytest.fail(f"fixtures missing: {missing} (regenerate with `bash tools/make_fixtures.sh pml`)")
    with open(paths[0]) as f:
        doc = json.load(f)
    return doc, np.load(paths[1]), np.load(paths[2])


def _loss(case, arrays):
    params = {k: case[k] for k in PARAMETERS if k in case}
    embedding_size = arrays[f"grad_{case['case']}"].shape[1]
    loss = CLASSES[case["kind"]](num_classes=case["num_classes"], embedding_size=embedding_size, **params)
    loss.set_weights([arrays[f"weights_{case['case']}"]])
    return loss


def _value_and_grads(loss, labels, x):
    """The loss and its gradients with respect to the embeddings and the weights."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = loss(labels, xt)
        gx, gw = tape.gradient(value, [xt, loss.variable.value])
        return value.numpy(), gx.numpy(), gw.numpy()
    if backend == "jax":
        import jax

        def stateless(x, w):  # the variable's value is `w` inside the scope, as in fit
            with keras.StatelessScope(state_mapping=[(loss.variable, w)]):
                return loss(labels, x)

        # One compiled function per case: eager JAX would compile every op for every shape.
        step = jax.jit(jax.value_and_grad(stateless, argnums=(0, 1)))
        value, (gx, gw) = step(x, loss.variable.value)
        return np.asarray(value), np.asarray(gx), np.asarray(gw)
    import torch

    xt = torch.tensor(x, requires_grad=True)
    loss.variable.value.grad = None
    value = loss(labels, xt)
    value.backward()
    return value.detach().numpy(), xt.grad.numpy(), loss.variable.value.grad.numpy()


def test_pml_proxy_losses(fixtures):
    doc, arrays, inputs = fixtures
    failures = []
    # All 220 cases on TensorFlow and PyTorch (TensorFlow runs the same XLA kernels); on
    # JAX, which compiles a function per case, every seventh: each loss and parameter set
    # on three or four inputs.
    cases = fixture_sample(
        doc["cases"], jax_every=7, key=lambda c: (c["kind"], tuple(c.get(k) for k in PARAMETERS))
    )
    for case in cases:
        i, j = case["case"], case["input"]
        x = inputs[f"embeddings_{j}"]
        labels = arrays[f"labels_{i}"]
        loss = _loss(case, arrays)
        value, gx, gw = _value_and_grads(loss, labels, x)
        zero_rows = np.all(x == 0, axis=1)
        try:
            np.testing.assert_allclose(float(value), case["value"], rtol=1e-5, atol=1e-5, err_msg="value")
            np.testing.assert_allclose(
                gx[~zero_rows], arrays[f"grad_{i}"][~zero_rows], rtol=1e-5, atol=1e-5, err_msg="grad"
            )
            if not zero_rows.any():
                np.testing.assert_allclose(
                    gw, arrays[f"grad_weights_{i}"], rtol=1e-5, atol=1e-5, err_msg="grad W"
                )
        except AssertionError as e:
            failures.append(f"case {i} ({case['kind']}, input {j}): {str(e).strip().splitlines()[0:6]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases differ:\n" + "\n".join(failures[:20])


def test_pml_initialisation_statistics(fixtures):
    """Our initialisers draw from PML's distributions: N(0, 2/C) for proxy-anchor's proxies
    (Kaiming normal, fan-out), N(0, 1) for the others."""
    keras.utils.set_random_seed(0)
    for cls, std in (
        (losses.ProxyAnchorLoss, (2 / 400) ** 0.5),
        (losses.ProxyNCALoss, 1.0),
        (losses.ArcFaceLoss, 1.0),
    ):
        w = cls(num_classes=400, embedding_size=64).get_weights()[0]
        assert abs(float(w.std()) - std) < 0.03 * std, (cls.__name__, float(w.std()), std)
        assert abs(float(w.mean())) < 0.03 * std
    doc, arrays, _ = fixtures
    anchor = [c for c in doc["cases"] if c["kind"] == "proxy_anchor"]
    pml = np.concatenate(
        [arrays[f"weights_{c['case']}"].ravel() * np.sqrt(c["num_classes"] / 2) for c in anchor]
    )
    assert abs(pml.std() - 1.0) < 0.05
