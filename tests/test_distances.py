"""keras_triplet.distances against the NumPy reference, on the current backend."""

import numpy as np
import pytest
import reference as ref
from conftest import to_numpy, value_and_grad
from hypothesis import given
from hypothesis import strategies as st

from keras_triplet import distances

METRIC_CASES = [
    ("euclidean", None),
    ("squared_euclidean", None),
    ("cosine", None),
    ("angular", None),
    ("minkowski", 1),
    ("minkowski", 2),
    ("minkowski", 3),
]


def test_metric_names():
    assert tuple(distances.METRICS) == ref.METRICS


@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_square_matrix_matches_reference(metric, p, rng):
    x = rng.normal(size=(7, 5)).astype("float32")
    got = to_numpy(distances.pairwise_distances(x, metric=metric, p=p))
    assert got.shape == (7, 7)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref.pairwise_distances(x, metric=metric, p=p), rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(got) == 0.0), "the diagonal of a square matrix must be exactly 0"


@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_rectangular_matrix_matches_reference(metric, p, rng):
    x = rng.normal(size=(4, 3)).astype("float32")
    y = rng.normal(size=(6, 3)).astype("float32")
    got = to_numpy(distances.pairwise_distances(x, y, metric=metric, p=p))
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, ref.pairwise_distances(x, y, metric=metric, p=p), rtol=1e-5, atol=1e-5)


@given(
    seed=st.integers(0, 2**31 - 1),
    # Few distinct shapes: JAX compiles each op once per shape, even eagerly.
    n=st.sampled_from([1, 3, 8]),
    dim=st.sampled_from([1, 5]),
    case=st.sampled_from(METRIC_CASES),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_property_matches_reference(seed, n, dim, case, scale):
    metric, p = case
    x = (np.random.default_rng(seed).normal(size=(n, dim)) * scale).astype("float32")
    got = to_numpy(distances.pairwise_distances(x, metric=metric, p=p))
    want = ref.pairwise_distances(x, metric=metric, p=p)
    # The squared-norm expansion loses absolute precision ~ eps * ‖x‖²: scale atol with it.
    atol = 1e-5 * max(1.0, scale**2 if metric == "squared_euclidean" else scale)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)
    assert np.all(np.diag(got) == 0.0)


def test_zero_vector_has_cosine_similarity_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], "float32")
    for metric in ("cosine", "angular"):
        got = to_numpy(distances.pairwise_distances(x, metric=metric))
        want = ref.pairwise_distances(x, metric=metric)
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert got[0, 1] == pytest.approx(1.0) and got[0, 3] == pytest.approx(1.0)
        assert np.all(np.isfinite(got))


def test_angular_is_never_negative():
    # Parallel vectors: 1 - cos can round below 0; "angular" clips at 0.
    x = np.array([[1.0, 1e-3, 2.0], [3.0, 3e-3, 6.0], [0.5, 5e-4, 1.0]], "float32")
    got = to_numpy(distances.pairwise_distances(x, metric="angular"))
    assert np.all(got >= 0.0)


@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_gradient_is_finite_at_duplicates(metric, p):
    # Duplicate rows: distance 0 off the diagonal; sqrt's gradient there must not be NaN.
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 1.0, -1.0]], "float32")

    from keras import ops

    value, grad = value_and_grad(lambda t: ops.sum(distances.pairwise_distances(t, metric=metric, p=p)), x)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_gradient_matches_finite_differences(metric, p, rng):
    from keras import ops

    x = rng.normal(size=(4, 3)).astype("float32")
    w = rng.normal(size=(4, 4))  # a generic weighting of the entries

    def lib(t):
        return ops.sum(
            distances.pairwise_distances(t, metric=metric, p=p) * ops.convert_to_tensor(w, "float32")
        )

    def reference_fn(x64):
        return float(np.sum(ref.pairwise_distances(x64, metric=metric, p=p) * w))

    value, grad = value_and_grad(lib, x)
    assert value == pytest.approx(reference_fn(x), rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(grad, ref.numerical_gradient(reference_fn, x), rtol=1e-3, atol=1e-4)


def test_euclidean_gradient_is_zero_at_zero_distance():
    from keras import ops

    x = np.array([[1.0, 2.0], [1.0, 2.0]], "float32")
    _, grad = value_and_grad(lambda t: ops.sum(distances.pairwise_distances(t)), x)
    np.testing.assert_array_equal(grad, np.zeros_like(x))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("metric,p", METRIC_CASES)
def test_half_precision_inputs_compute_in_float32(dtype, metric, p, rng):
    from keras import ops

    x = rng.normal(size=(5, 4)).astype("float32")
    xt = ops.cast(ops.convert_to_tensor(x), dtype)
    got = distances.pairwise_distances(xt, metric=metric, p=p)
    assert str(ops.convert_to_numpy(got).dtype) == "float32"
    x_rounded = to_numpy(ops.cast(xt, "float32")).astype(np.float64)
    np.testing.assert_allclose(
        to_numpy(got), ref.pairwise_distances(x_rounded, metric=metric, p=p), rtol=1e-4, atol=1e-4
    )
    value, grad = value_and_grad(
        lambda t: ops.sum(distances.pairwise_distances(t, metric=metric, p=p)), x, dtype=dtype
    )
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_minkowski_needs_p_at_least_one():
    x = np.ones((2, 2), "float32")
    with pytest.raises(ValueError, match="p"):
        distances.pairwise_distances(x, metric="minkowski", p=0.5)
    with pytest.raises(ValueError, match="p"):
        distances.pairwise_distances(x, metric="minkowski")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matrix_is_freed_without_the_garbage_collector(metric):
    # The hand-written gradient must not keep the matrix it returns in a reference cycle
    # (on PyTorch: tensor -> backward node -> closure -> tensor), or every training step's
    # [B, B] matrix would stay alive until Python's collector runs.
    import gc
    import weakref

    import keras

    if keras.backend.backend() != "torch":
        pytest.skip("reference cycles through autograd nodes are PyTorch's: the others trace")
    import torch

    x = torch.randn(6, 3, requires_grad=True)
    enabled = gc.isenabled()
    gc.disable()
    try:
        matrix = distances.pairwise_distances(x, metric=metric)
        matrix.sum().backward()
        alive = weakref.ref(matrix)
        del matrix
        assert alive() is None
    finally:
        if enabled:
            gc.enable()
