"""PyTorch's row primitives (`keras_triplet/_backend/_torch.py`) against their generic
twins: the same answers, values and gradients, where eager PyTorch takes shortcuts
(hand-written gradients of the sorted search, the distance matrix written in place, a
sort of packed keys, compaction by `flatnonzero`)."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's own row primitives")


def _pair_masks(labels):
    import torch

    from keras_triplet.miners import pair_masks

    return pair_masks(torch.tensor(labels))


def _answers(search, weights):
    """A scalar that reads every kind of answer of a search, each weighted."""
    picked, _ = search.closest_beyond(or_farthest=True)
    beyond, found = search.closest_beyond(or_farthest=False)
    _, violating = search.band(0.3)
    _, hard = search.band(0.0, stop_inclusive=True)
    _, semi_hard = search.band(0.3, start_offset=0.0)
    beyond = beyond * found
    parts = [picked, beyond, violating, hard, semi_hard]
    return sum((w * search.query_mask * part).sum() for w, part in zip(weights, parts))


@pytest.mark.parametrize("layout", ["pk", "uneven"])
def test_sorted_search_gradients_match_autodiff(layout, monkeypatch):
    """The sorted search with gradients written out per pick and per run (PyTorch) gives
    the values and gradients of autodiff through differentiable sorted values (the
    generic twins), with tied distances (integer distances)."""
    import torch

    from keras_triplet._backend import _generic, _torch
    from keras_triplet.miners.search import sorted_negatives

    rng = np.random.default_rng(3)
    if layout == "pk":
        labels = np.repeat(np.arange(8), 9)
    else:
        labels = rng.integers(0, 7, 72)
    d = rng.integers(0, 6, (72, 72)).astype("float32")
    d = d + d.T
    np.fill_diagonal(d, 0.0)
    positive, negative = _pair_masks(labels)
    weights = [torch.tensor(rng.normal(size=(72, 72)).astype("float32")) for _ in range(5)]

    def run():
        x = torch.tensor(d, requires_grad=True)
        search = sorted_negatives.SortedNegatives(x, negative, positive)
        value = _answers(search, [w[:, : search.query_mask.shape[1]] for w in weights])
        value.backward()
        return value.detach().numpy(), x.grad.numpy()

    got = run()
    for name in ("sort_masked_rows", "pick_sorted", "sum_sorted_runs"):
        monkeypatch.setattr(sorted_negatives, name, getattr(_generic, name))
    # The same order of tied entries both ways: a tie's pick reads the same column.
    monkeypatch.setattr(_generic, "argsort_rows", _torch.argsort_rows)
    want = run()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    # Nothing reaches a column that is not a negative of its row.
    assert not np.any(got[1][~negative.numpy()])


def test_packed_sort_orders_as_numpy():
    """`argsort_rows` (int64 keys `bits << 32 | column` for small float32 rows, NumPy's
    argsort otherwise): the same sorted rows, ties by column, with negatives, −0, ±inf;
    NaN sorts last."""
    import torch

    from keras_triplet._backend import _torch

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (64, 64), (3, 0)]:
        for signed in (False, True):
            x = rng.integers(0, 4, shape).astype("float32") * 0.5
            if signed and x.size:
                x = x - 1.0
                x.flat[0], x.flat[-1] = -0.0, -np.inf
            if x.size > 2:
                x.flat[1] = np.inf
            order = _torch.argsort_rows(torch.tensor(x)).numpy()
            np.testing.assert_array_equal(np.take_along_axis(x, order, 1), np.sort(x, axis=1))
            if not signed:  # ties by column: the stable order
                np.testing.assert_array_equal(order, np.argsort(x, axis=1, kind="stable"))
    x = rng.normal(size=(4, 6)).astype("float32")
    x[1, 2], x[2, 0] = np.nan, -np.nan
    order = _torch.argsort_rows(torch.tensor(x)).numpy()
    assert order[1, -1] == 2 and order[2, -1] == 0


def test_self_euclidean_is_the_generic_matrix():
    """`self_euclidean` (in place on PyTorch): the matrix and gradient of
    `distances._self_euclidean`, to the bit, with duplicate and zero rows."""
    import torch

    from keras_triplet import distances
    from keras_triplet._backend import _torch

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8)).astype("float32")
    x[3], x[7] = x[5], 0.0
    upstream = torch.tensor(rng.normal(size=(40, 40)).astype("float32"))
    results = []
    for fn in (_torch.self_euclidean, distances._self_euclidean):
        e = torch.tensor(x, requires_grad=True)
        d = fn(e)
        d.backward(upstream)
        results.append((d.detach().numpy(), e.grad.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_compact_columns_cover_every_true():
    """`compact_columns`: every True of each row, distinct columns, in ascending order
    for P×K masks (`flatnonzero`), for uneven counts (`nonzero`, `topk`) and for a
    cross-batch memory's `[B, R]` masks."""
    import torch

    from keras_triplet._backend import _torch

    rng = np.random.default_rng(2)
    batch = np.repeat(np.arange(16), 6)
    memory = np.concatenate([batch, np.repeat(np.arange(16), 3), -np.ones(48, int)])
    cases = [(batch, batch), (rng.integers(0, 30, 96), None), (batch, memory)]
    for labels, refs in cases:
        refs = labels if refs is None else refs
        mask = torch.tensor((labels[:, None] == refs[None, :]) & (refs >= 0)[None, :])
        mask[:, : len(labels)].fill_diagonal_(False)
        columns = _torch.compact_columns(mask)
        assert columns is not None
        covered = torch.gather(mask, 1, columns)
        assert int(covered.sum()) == int(mask.sum())
        for row in columns.numpy():
            assert len(set(row.tolist())) == len(row)
        if int(mask.sum(1).min()) == int(mask.sum(1).max()):
            assert np.all(np.diff(columns.numpy(), axis=1) > 0)
