"""miners.search: the direct and the sorted search give the same selections, values,
statistics and gradients, eagerly and compiled (where the choice is an `ops.cond`)."""

import contextlib

import keras
import numpy as np
import pytest
import reference as ref
from conftest import compiled, make_batch, to_numpy, value_and_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from test_miners import MINERS, assert_miner_output, integer_distances, labels_strategy

from keras_triplet import losses, miners
from keras_triplet.miners import search
from keras_triplet.miners.search import DirectNegatives, with_negatives
from keras_triplet.models.step import loss_and_statistics

SEARCHING = [name for name in sorted(MINERS) if name != "batch-hard"]
KINDS = ["direct", "sorted"]


@contextlib.contextmanager
def forced_search(kind):
    """Within the block, every `with_negatives` call that names no search (those inside
    the losses, the statistics and the training step) uses `search=kind`: the default of
    the function's `search` argument is swapped, test-only."""
    if kind not in search.SEARCHES:
        raise ValueError(f"kind must be one of {search.SEARCHES}; got {kind!r}")
    original = with_negatives.__defaults__
    with_negatives.__defaults__ = (kind,)
    try:
        yield
    finally:
        with_negatives.__defaults__ = original


def _tensors(labels, d):
    return keras.ops.convert_to_tensor(labels.astype("int32")), keras.ops.convert_to_tensor(
        d.astype("float32")
    )


@pytest.mark.parametrize("name", SEARCHING)
@settings(max_examples=15)
@given(
    labels=labels_strategy(),
    seed=st.integers(0, 2**31 - 1),
    margin=st.sampled_from([0, 1, 2]),
    padding=st.integers(0, 3),
)
@pytest.mark.parametrize("broadcast", [False, True])
def test_direct_selection_is_exact(name, broadcast, labels, seed, margin, padding):
    """Ties and band edges (integer distances), with M the largest number of positives
    or more (a compiled step pads M to a static size); the column loop and all columns
    at once (`broadcast=True`, steps that are not fused) alike."""
    make, reference_fn = MINERS[name]
    labels = np.array(labels)
    d = integer_distances(seed, len(labels))
    y, dt = _tensors(labels, d)
    positive, negative = miners.pair_masks(y)
    width = int(np.max(np.sum(to_numpy(positive), axis=1), initial=0)) + padding
    width = min(max(width, 1), len(labels))
    found = DirectNegatives(dt, negative, positive, width, broadcast=broadcast)
    assert (found._across is not None) == broadcast
    got = make(float(margin)).mine(y, dt, negatives=found)
    assert_miner_output(got, reference_fn(labels, d, float(margin)), exact=True)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15)
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0, 1, 2]))
def test_statistics_exact_either_way(kind, labels, seed, margin):
    labels = np.array(labels)
    d = integer_distances(seed, len(labels))
    with forced_search(kind):
        got = to_numpy(miners.triplet_statistics(*_tensors(labels, d), float(margin)))
    want = ref.triplet_statistics(labels, d, float(margin))
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-6, abs=1e-6), key


LOSSES = {
    "semi-hard": lambda m: losses.TripletLoss(margin=m, miner="semi-hard"),
    "semi-hard-soft": lambda m: losses.TripletLoss(margin=m, miner="semi-hard", soft_margin=True),
    "batch-all": lambda m: losses.TripletLoss(margin=m, miner="batch-all"),
    "batch-all-semi-hard": lambda m: losses.TripletLoss(
        margin=m, miner=miners.BatchAllMiner(margin=m, select="semi-hard"), average="nonzero"
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_agree(name):
    """P×K batch, generic distances: the same loss and gradient either way."""
    labels = np.repeat(np.arange(6), 4)
    x = make_batch(3, labels, dim=5).astype("float32")
    loss = LOSSES[name](0.5)
    y = keras.ops.convert_to_tensor(labels.astype("int32"))
    results = {}
    for kind in KINDS:
        with forced_search(kind):
            results[kind] = value_and_grad(lambda e: loss(y, e), x)
    assert float(results["direct"][0]) == pytest.approx(float(results["sorted"][0]), rel=1e-5)
    np.testing.assert_allclose(results["direct"][1], results["sorted"][1], rtol=1e-4, atol=1e-6)


@contextlib.contextmanager
def unfused(flag):
    """Within the block, every `with_negatives` call that does not say whether its step
    is fused takes `fused=flag` (test-only, as `forced_search`)."""
    original = with_negatives.__kwdefaults__
    with_negatives.__kwdefaults__ = {"fused": flag}
    try:
        yield
    finally:
        with_negatives.__kwdefaults__ = original


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_columns_at_once_match_the_column_loop(name):
    """Steps that are not fused compare a small direct search's columns at once
    (`broadcast=True`): the same loss and gradient as the column loop, for generic
    embeddings and for integer distances (ties: the gradient of a semi-hard pick shared
    among the tied negatives; band edges)."""
    labels = np.repeat(np.arange(6), 4)
    x = make_batch(5, labels, dim=5).astype("float32")
    d = integer_distances(7, len(labels)).astype("float32")
    loss = LOSSES[name](1.0)
    y = keras.ops.convert_to_tensor(labels.astype("int32"))
    for fn, arg in [(lambda e: loss(y, e), x), (lambda t: loss.compute_from_distances(y, t), d)]:
        results = {}
        for fused in (True, False):
            with forced_search("direct"), unfused(fused):
                results[fused] = value_and_grad(fn, arg)
        assert float(results[False][0]) == pytest.approx(float(results[True][0]), rel=1e-6)
        np.testing.assert_allclose(results[False][1], results[True][1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_row_blocks_change_nothing(name, monkeypatch):
    """Where elementwise steps do not fuse (eager PyTorch), the direct search's column
    passes run in row blocks; forced here on every backend, with blocks of 5 rows (the
    last one shorter): the same loss and gradient, to the bit."""
    from keras_triplet.miners.search import direct_negatives

    labels = np.repeat(np.arange(6), 4)
    x = make_batch(4, labels, dim=5).astype("float32")
    loss = LOSSES[name](0.5)
    y = keras.ops.convert_to_tensor(labels.astype("int32"))
    with forced_search("direct"):
        want = value_and_grad(lambda e: loss(y, e), x)
        monkeypatch.setattr(direct_negatives, "FUSES_ELEMENTWISE_STEPS", False)
        monkeypatch.setattr(direct_negatives, "BLOCK_ENTRIES", 5 * len(labels))
        got = value_and_grad(lambda e: loss(y, e), x)
    assert float(got[0]) == float(want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="eager PyTorch frees arrays by reference count"
)
@pytest.mark.parametrize("kind", KINDS)
def test_searches_leave_no_reference_cycle(kind):
    """On PyTorch a step's `[B, B]` arrays are freed when the step ends, not at the next
    run of Python's cyclic garbage collector (Keras' `fori_loop` flattens its state with a
    pytree that leaves a cycle holding it: `_backend.fori_loop` does not)."""
    import gc

    import torch

    labels = np.repeat(np.arange(6), 4)
    x = torch.tensor(make_batch(5, labels, dim=5).astype("float32"))
    y = torch.tensor(labels)
    for miner in ("semi-hard", "batch-all"):
        loss = losses.TripletLoss(margin=0.5, miner=miner)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            with forced_search(kind):
                e = x.clone().requires_grad_(True)
                loss(y, e).backward()
                del e
            gc.collect()
            held = [o for o in gc.garbage if isinstance(o, torch.Tensor) and o.numel() >= len(labels) ** 2]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert not held, (miner, [tuple(t.shape) for t in held])


def test_unknown_searches_are_rejected():
    labels = np.array([0, 0, 1, 1])
    y, dt = _tensors(labels, integer_distances(0, len(labels)))
    positive, negative = miners.pair_masks(y)
    with pytest.raises(ValueError, match="direct"):
        with_negatives(dt, negative, positive, lambda found: found.count, search="dense")
    with pytest.raises(ValueError, match="direct"):
        with forced_search("dense"):
            pass


@pytest.mark.parametrize("layout", ["pk", "large-class"])
def test_compiled_choice(layout):
    """Compiled, the choice is an `ops.cond` on the data: a P×K batch takes the direct
    branch, a class larger than `DIRECT_MAX_POSITIVES + 1` the sorted one; both give the
    reference's loss and statistics."""
    rng = np.random.default_rng(5)
    if layout == "pk":
        labels = np.repeat(np.arange(8), 4)
    else:
        labels = np.concatenate([np.zeros(search.DIRECT_MAX_POSITIVES + 4, int), rng.integers(1, 5, size=12)])
    d = integer_distances(2, len(labels), high=9)
    margin = 2.0
    loss = losses.TripletLoss(margin=margin, miner="batch-all")

    value, stats = compiled(lambda y, dt: loss_and_statistics(loss, y, dt))(*_tensors(labels, d))
    value, stats = to_numpy(value), to_numpy(stats)
    want = ref.triplet_loss_from_distances(labels, d, margin=margin, miner="batch-all")
    assert float(value) == pytest.approx(want, rel=1e-5)
    for key, expected in ref.triplet_statistics(labels, d, margin).items():
        assert float(stats[key]) == pytest.approx(expected, rel=1e-6, abs=1e-6), key


def test_direct_search_has_no_positive_cap_when_asked():
    """Eagerly, `search="direct"` sizes M by the data, without the compiled backends' cap:
    a class of 40 still takes the direct search, exactly (as PyTorch's own direct kernels
    did, before the sorted search was measured as fast there); the automatic choice
    sorts."""
    labels = np.concatenate([np.zeros(40, int), np.arange(1, 9)])
    d = integer_distances(4, len(labels), high=9)
    y, dt = _tensors(labels, d)
    positive, negative = miners.pair_masks(y)
    kinds = with_negatives(dt, negative, positive, lambda found: type(found).__name__, search="direct")
    assert kinds == "DirectNegatives"
    assert with_negatives(dt, negative, positive, lambda found: type(found).__name__) == "SortedNegatives"
    got = miners.SemiHardMiner().mine(y, dt, negatives=DirectNegatives(dt, negative, positive, 39))
    assert_miner_output(got, ref.semi_hard_miner(labels, d, "farthest"), exact=True)


def test_automatic_choice_follows_the_backend():
    """A P×K batch gets the direct search on every backend (it compares one positive
    column at a time: nothing of size `[B, M, R]` to fuse); `"sorted"` always sorts."""
    labels = np.repeat(np.arange(6), 4)
    y, dt = _tensors(labels, integer_distances(6, len(labels)))
    positive, negative = miners.pair_masks(y)
    kind = with_negatives(dt, negative, positive, lambda found: type(found).__name__)
    assert kind == "DirectNegatives"
    sorted_kind = with_negatives(dt, negative, positive, lambda found: type(found).__name__, search="sorted")
    assert sorted_kind == "SortedNegatives"


# --- Sorted search in row blocks (compiled static shapes, large batches) ---------------


def _compiled_value_and_grad(fn, x):
    """`fn(x)` (a scalar and a nest of tensors) and the scalar's gradient, compiled as a
    training step would be (TensorFlow's `tf.cond` gradients and JAX's custom gradients
    under `jit` are what the blocks must survive); eager on PyTorch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(xt):
            with tf.GradientTape() as tape:
                tape.watch(xt)
                value, aux = fn(xt)
            return value, aux, tape.gradient(value, xt)

        value, aux, grad = step(tf.convert_to_tensor(x))
        return to_numpy(value), to_numpy(aux), to_numpy(grad)
    if backend == "jax":
        import jax

        (value, aux), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(x)
        return to_numpy(value), to_numpy(aux), to_numpy(grad)
    aux = []
    value, grad = value_and_grad(lambda e: aux.append(fn(e)[1]) or fn(e)[0], x)
    return value, to_numpy(aux[0]), grad


@pytest.mark.parametrize("rows", [5, 6])
@pytest.mark.parametrize("name", ["semi-hard", "batch-all-semi-hard"])
def test_sorted_blocks_change_nothing(name, rows, monkeypatch):
    """The sorted search by blocks of rows (`BlockedSortedNegatives`: compiled steps whose
    `[B, R]` matrix exceeds `BLOCK_ENTRIES`), forced here with blocks of 5 rows (the last
    one overlapping the one before) or of 6 (dividing the 24 rows: the backward passes
    write the gradient over their upstream, `over_row_blocks(overwrite_last=True)`) on
    every backend, in a compiled step whose choice's
    `ops.cond` takes the sorted branch (a class larger than `DIRECT_MAX_POSITIVES + 1`),
    with tied distances: the same loss (to float rounding of its sum), statistics and
    gradient as the unblocked sorted search."""
    from keras_triplet.miners.search import blocked_negatives

    labels = np.concatenate([np.zeros(search.DIRECT_MAX_POSITIVES + 3, int), np.arange(1, 6)])
    x = make_batch(6, labels, dim=5).astype("float32")
    # Ties: duplicated embeddings give equal distances across rows and columns.
    x[1] = x[0]
    x[len(labels) - 1] = x[2]
    loss = LOSSES[name](0.5)
    y = keras.ops.convert_to_tensor(labels.astype("int32"))

    def step(e):
        return loss_and_statistics(loss, y, loss.pairwise(e))

    monkeypatch.setattr(blocked_negatives, "BLOCK_ENTRIES", 10**9)
    want_value, want_stats, want_grad = _compiled_value_and_grad(step, x)
    monkeypatch.setattr(blocked_negatives, "FUSES_ELEMENTWISE_STEPS", True)
    monkeypatch.setattr(blocked_negatives, "BLOCK_ENTRIES", rows * len(labels))
    value, stats, grad = _compiled_value_and_grad(step, x)
    assert float(value) == pytest.approx(float(want_value), rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    for key in want_stats:
        assert float(stats[key]) == float(want_stats[key]), key


def test_sorted_blocks_only_for_large_compiled_matrices():
    """`blocked`: static shapes beyond `BLOCK_ENTRIES`, on backends that compile their
    loops; eager PyTorch keeps the unblocked (compacting) sorted search."""
    from keras_triplet.miners.search import blocked_negatives

    small = keras.ops.zeros((8, 8))
    assert not blocked_negatives.blocked(small)
    large = keras.ops.zeros((2048, 2048))
    assert blocked_negatives.blocked(large) == (keras.backend.backend() != "torch")


@pytest.mark.parametrize(
    "big_class, name, in_step",
    [
        (False, "semi-hard", True),
        (True, "semi-hard", False),
        (False, "batch-all", False),
        (True, "batch-all", True),
        ("wide", "semi-hard", False),
    ],
    ids=[
        "direct-semi-hard-step",
        "sorted-semi-hard",
        "direct-batch-all",
        "sorted-batch-all-step",
        "wide-semi-hard",
    ],
)
def test_switch_with_own_gradients_changes_nothing(big_class, name, in_step, monkeypatch):
    """A compiled triplet loss over a matrix beyond one block of rows (forced here: blocks
    of 5 rows), alone or in a training step's `loss_and_statistics`, takes the choice as
    one switch whose backward pass computes the chosen branch again
    (`with_negatives(own_gradients=True)`, JAX and TensorFlow; batch-all where
    `_backend.SWITCH_BAND_SEARCHES`): the same loss, statistics and gradient as the nested
    `ops.cond`s, in the direct branch (P×K) and in the blocked sorted one (a class larger
    than `DIRECT_MAX_POSITIVES + 1`; `"wide"`: K = 8, the direct search at the wider of
    `DIRECT_WIDTHS`; by blocks the switch has one direct branch for every tier, that width's
    search with its column loops stopped at the widest class), with tied distances. The
    gradient bit for bit; the loss and the statistics to float rounding (the switch's
    direct branch sums over the widest tier's columns, the `cond`'s over the narrowest's,
    in another order; on TensorFlow XLA also fuses the forward arithmetic of the switch,
    whose intermediates are not kept for the backward pass, otherwise)."""
    from keras_triplet import _backend
    from keras_triplet.miners.search import blocked_negatives, choice

    if big_class == "wide":
        labels = np.repeat(np.arange(3), 8)
    elif big_class:
        labels = np.concatenate([np.zeros(search.DIRECT_MAX_POSITIVES + 3, int), np.arange(1, 6)])
    else:
        labels = np.repeat(np.arange(6), 4)
    x = make_batch(6, labels, dim=5).astype("float32")
    x[1] = x[0]
    x[len(labels) - 1] = x[2]
    y = keras.ops.convert_to_tensor(labels.astype("int32"))
    loss = losses.TripletLoss(margin=0.5, miner=name)

    def step(e):
        if in_step:  # one search for the loss and the statistics
            return loss_and_statistics(loss, y, loss.pairwise(e))
        return loss(y, e), {}

    monkeypatch.setattr(blocked_negatives, "FUSES_ELEMENTWISE_STEPS", True)
    monkeypatch.setattr(blocked_negatives, "BLOCK_ENTRIES", 5 * len(labels))
    switches = []
    own = choice.switch_with_own_gradients
    monkeypatch.setattr(choice, "switch_with_own_gradients", lambda *args: switches.append(1) or own(*args))
    value, stats, grad = _compiled_value_and_grad(step, x)
    # Eager PyTorch decides in Python.
    asked = keras.backend.backend() != "torch" and (name == "semi-hard" or _backend.SWITCH_BAND_SEARCHES)
    assert bool(switches) == asked
    monkeypatch.setattr(choice, "switch_with_own_gradients", lambda *args: None)
    want_value, want_stats, want_grad = _compiled_value_and_grad(step, x)
    np.testing.assert_array_equal(grad, want_grad)
    # K = 8 ("wide") on TensorFlow: 3 ulp (the forward fusions).
    np.testing.assert_array_max_ulp(value, want_value, maxulp=4)
    for key in want_stats:
        np.testing.assert_array_max_ulp(stats[key], want_stats[key], maxulp=2)


# --- M16f: the direct search by blocks of rows under XLA (begin) ---


@pytest.mark.parametrize("name", ["semi-hard", "batch-all-semi-hard"])
def test_direct_blocks_change_nothing(name, monkeypatch):
    """The direct search by blocks of rows (compiled steps whose static `[B, R]` matrix
    exceeds `BLOCK_ENTRIES`: every question and hand-written gradient in a loop over
    blocks; a semi-hard pick, and a band with both edges), forced here with blocks of 5 rows (the last one overlapping the one before)
    on every backend, in a compiled step whose choice takes the direct branch (P×K), for
    embeddings with duplicates and for integer distances (ties: shared semi-hard picks,
    band edges): the same loss, statistics and gradient as the unblocked search."""
    from keras_triplet.miners.search import blocked_negatives

    labels = np.repeat(np.arange(6), 4)
    x = make_batch(7, labels, dim=5).astype("float32")
    x[1] = x[0]
    x[len(labels) - 1] = x[2]
    d = integer_distances(8, len(labels)).astype("float32")
    loss = LOSSES[name](1.0)
    y = keras.ops.convert_to_tensor(labels.astype("int32"))

    def from_embeddings(e):
        return loss_and_statistics(loss, y, loss.pairwise(e))

    def from_distances(t):
        return loss_and_statistics(loss, y, t)

    for step, arg in [(from_embeddings, x), (from_distances, d)]:
        monkeypatch.setattr(blocked_negatives, "BLOCK_ENTRIES", 10**9)
        want_value, want_stats, want_grad = _compiled_value_and_grad(step, arg)
        monkeypatch.setattr(blocked_negatives, "FUSES_ELEMENTWISE_STEPS", True)
        monkeypatch.setattr(blocked_negatives, "BLOCK_ENTRIES", 5 * len(labels))
        value, stats, grad = _compiled_value_and_grad(step, arg)
        monkeypatch.undo()
        assert float(value) == pytest.approx(float(want_value), rel=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
        # Forced blocks also send TensorFlow's choice through its switch, whose forward
        # pass XLA fuses otherwise: means of distances then differ in the last bits.
        for key in want_stats:
            assert float(stats[key]) == pytest.approx(float(want_stats[key]), rel=1e-6), key


def test_direct_blocks_only_without_broadcast():
    """A direct search compares its columns at once (`broadcast=True`, small batches in
    steps that are not fused) or, for a large static matrix on a compiling backend, by
    blocks of rows: never both."""
    from keras_triplet.miners.search import blocked_negatives

    rows = 2048
    distances = keras.ops.zeros((rows, rows))
    mask = keras.ops.zeros((rows, rows), "bool")
    found = DirectNegatives(distances, mask, mask, width=1)
    assert (found._block is not None) == blocked_negatives.blocked(distances)
    small = DirectNegatives(keras.ops.zeros((8, 8)), mask[:8, :8], mask[:8, :8], width=1, broadcast=True)
    assert small._block is None and small._across is not None


# --- M16f (end) ---


@pytest.mark.parametrize("shape", [(256, 256), (1024, 1024), (1024, 1025)])
def test_mask_counts_are_exact_on_both_sides_of_the_float32_limits(shape):
    """Row counts of a mask: in float32 for the sizes of `FLOAT_COUNT_ENTRIES` on
    TensorFlow and JAX, in int32 for the others (and on PyTorch): exact either way,
    compiled too."""
    from keras import ops

    from keras_triplet._backend import count_true

    def row_counts(m):
        return count_true(m, 1)

    mask = np.random.default_rng(0).random(shape) < 0.5
    for fn in (row_counts, compiled(row_counts)):
        counts = to_numpy(fn(ops.convert_to_tensor(mask)))
        assert np.issubdtype(counts.dtype, np.integer)
        np.testing.assert_array_equal(counts, mask.sum(1))
