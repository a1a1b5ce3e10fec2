"""ContrastiveLoss, MultiSimilarityLoss and the pair miners (PairMarginMiner,
MultiSimilarityMiner): the NumPy reference, cross-batch memory, degenerate batches,
half precision, NaN propagation, bad input, serialization and training in TripletModel.
(pytorch-metric-learning's numbers: tests/test_fixtures_pml_pair_losses.py.)"""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import (
    assert_config_round_trip,
    assert_saved_and_loaded,
    cast_input,
    compiled,
    make_batch,
    to_numpy,
    value_and_grad,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from keras import ops

from keras_triplet import TripletModel, losses, miners
from keras_triplet.models import step

BACKEND = keras.backend.backend()
BATCH_SIZES = (2, 5, 8)  # few shapes: JAX compiles each op once per shape, even eagerly


def labels_strategy(max_classes=4):
    return st.sampled_from(BATCH_SIZES).flatmap(
        lambda b: st.lists(st.integers(0, max_classes - 1), min_size=b, max_size=b)
    )


def _miner_pair(kind, distance):
    """(library miner, reference miner function) for a kind of pair mining."""
    if kind == "pair-margin":
        pos, neg = (0.2, 0.9) if distance == "cosine" else (0.8, 1.6)
        return (
            miners.PairMarginMiner(pos_margin=pos, neg_margin=neg),
            lambda y, d, r: ref.pair_margin_miner(y, d, r, pos, neg),
        )
    if kind == "multi-similarity":
        return miners.MultiSimilarityMiner(epsilon=0.1), lambda y, d, r: ref.multi_similarity_miner(
            y, d, r, 0.1
        )
    return None, None


# id -> (library loss given a miner, reference function of (labels, d, ref_labels, miner), distance)
CASES = {
    "contrastive": (
        lambda m: losses.ContrastiveLoss(miner=m),
        lambda y, d, r, m: ref.contrastive_loss_from_distances(y, d, ref_labels=r, miner=m),
        "euclidean",
    ),
    "contrastive-pairs-margins": (
        lambda m: losses.ContrastiveLoss(pos_margin=0.3, neg_margin=1.5, average="pairs", miner=m),
        lambda y, d, r, m: ref.contrastive_loss_from_distances(
            y, d, 0.3, 1.5, "pairs", ref_labels=r, miner=m
        ),
        "euclidean",
    ),
    "contrastive-cosine": (
        lambda m: losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.6, distance="cosine", miner=m),
        lambda y, d, r, m: ref.contrastive_loss_from_distances(y, d, 0.1, 0.6, ref_labels=r, miner=m),
        "cosine",
    ),
    "multi-similarity": (
        lambda m: losses.MultiSimilarityLoss(miner=m),
        lambda y, d, r, m: ref.multi_similarity_loss_from_distances(y, d, ref_labels=r, miner=m),
        "cosine",
    ),
    "multi-similarity-params": (
        lambda m: losses.MultiSimilarityLoss(alpha=1.0, beta=10.0, base=0.2, miner=m),
        lambda y, d, r, m: ref.multi_similarity_loss_from_distances(
            y, d, 1.0, 10.0, 0.2, ref_labels=r, miner=m
        ),
        "cosine",
    ),
    "multi-similarity-euclidean": (
        lambda m: losses.MultiSimilarityLoss(alpha=2.0, beta=10.0, base=1.0, distance="euclidean", miner=m),
        lambda y, d, r, m: ref.multi_similarity_loss_from_distances(
            y, d, 2.0, 10.0, 1.0, similarity=False, ref_labels=r, miner=m
        ),
        "euclidean",
    ),
}
MINER_KINDS = ("none", "pair-margin", "multi-similarity")


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("kind", MINER_KINDS)
@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=8)  # parametrized: fewer examples per case
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_matches_reference(name, kind, labels, seed, scale):
    make, reference_fn, distance = CASES[name]
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3, scale=scale)
    d = ref.pairwise_distances(x, metric=distance)
    miner, ref_miner = _miner_pair(kind, distance)
    if miner is not None:
        assume(ref.comparison_gap(d, [0.1, 0.2, 0.8, 0.9, 1.6], rows_only=False) > 1e-4)
    want = reference_fn(labels, d, None, ref_miner)
    loss = make(miner)
    got = float(to_numpy(loss(labels, x.astype("float32"))))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_form_equals_the_class(name):
    labels = np.array([0, 0, 1, 1, 2, 2, 1, 0])
    x = make_batch(3, labels, dim=4).astype("float32")
    loss = CASES[name][0](miners.MultiSimilarityMiner())
    kwargs = {k: v for k, v in loss.get_config().items() if k not in ("name", "reduction", "dtype")}
    kwargs["miner"] = loss.miner
    fn = losses.contrastive_loss if isinstance(loss, losses.ContrastiveLoss) else losses.multi_similarity_loss
    assert float(to_numpy(fn(labels, x, **kwargs))) == pytest.approx(
        float(to_numpy(loss(labels, x))), rel=1e-6
    )


@pytest.mark.parametrize("kind", ["pair-margin", "multi-similarity"])
@settings(max_examples=15)
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), with_memory=st.booleans())
def test_miners_match_reference(kind, labels, seed, with_memory):
    labels = np.array(labels)
    b = len(labels)
    x = make_batch(seed, labels, dim=3)
    ref_labels = None
    if with_memory:  # cross-batch memory: the batch, then 4 slots (one empty)
        memory = make_batch(seed + 1, np.zeros(4), dim=3)
        x_ref = np.concatenate([x, memory])
        ref_labels = np.concatenate([labels, [0, 1, -1, 3]])
        d = ref.pairwise_distances(x, x_ref)
    else:
        d = ref.pairwise_distances(x)
    assume(ref.comparison_gap(d, [0.1, 0.8, 1.6], rows_only=False) > 1e-4)
    miner, ref_miner = _miner_pair(kind, "euclidean")
    positive, negative = miner.mine(
        ops.convert_to_tensor(labels),
        ops.convert_to_tensor(d.astype("float32")),
        ref_labels=None if ref_labels is None else ops.convert_to_tensor(ref_labels),
    )
    want_pos, want_neg = ref_miner(labels, d, ref_labels)
    assert sorted(map(tuple, np.argwhere(to_numpy(positive)).tolist())) == sorted(want_pos)
    assert sorted(map(tuple, np.argwhere(to_numpy(negative)).tolist())) == sorted(want_neg)
    assert to_numpy(positive).shape == (b, d.shape[1])


@pytest.mark.parametrize("kind", MINER_KINDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_cross_batch_memory_matches_reference(name, kind):
    """`compute_from_distances` on `[B, B + M]` with `ref_labels` (label < 0: empty slot)."""
    make, reference_fn, distance = CASES[name]
    labels = np.array([0, 0, 1, 1, 2, 3])
    x = make_batch(11, labels, dim=4)
    memory = make_batch(12, np.zeros(5), dim=4)
    ref_labels = np.concatenate([labels, [1, 3, 4, -1, 0]])
    d = ref.pairwise_distances(x, np.concatenate([x, memory]), metric=distance)
    miner, ref_miner = _miner_pair(kind, distance)
    want = reference_fn(labels, d, ref_labels, ref_miner)
    got = make(miner).compute_from_distances(
        ops.convert_to_tensor(labels),
        ops.convert_to_tensor(d.astype("float32")),
        ref_labels=ops.convert_to_tensor(ref_labels),
    )
    assert float(to_numpy(got)) == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name):
    make, reference_fn, distance = CASES[name]
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = make_batch(21, labels, dim=3)
    loss = make(None)
    labels_t = ops.convert_to_tensor(labels)
    _, grad = value_and_grad(lambda e: loss(labels_t, e), x)
    want = ref.numerical_gradient(
        lambda e: reference_fn(labels, ref.pairwise_distances(e, metric=distance), None, None), x
    )
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- corner cases

_normal6 = np.random.default_rng(1234).normal(size=(6, 4)).astype("float32")
PAIRS = np.array([0, 0, 1, 1, 2, 2])
# id -> (labels, embeddings)
BATCHES = {
    "one-sample": (np.array([0]), _normal6[:1]),
    "no-positive-pair": (np.array([0, 1, 2, 3]), _normal6[:4]),
    "no-negative": (np.array([5, 5, 5, 5]), _normal6[:4]),
    "identical-embeddings": (PAIRS, np.tile(_normal6[:1], (6, 1))),
    "zero-vectors": (PAIRS, np.zeros((6, 4), "float32")),
    "one-zero-vector": (PAIRS, np.concatenate([np.zeros((1, 4), "float32"), _normal6[1:]])),
    "large-values": (PAIRS, (_normal6 * 1e4).astype("float32")),
}


@pytest.mark.parametrize("kind", ["none", "multi-similarity"])
@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", ["contrastive", "multi-similarity", "multi-similarity-euclidean"])
def test_degenerate_batches(name, batch, kind):
    make, reference_fn, distance = CASES[name]
    labels, x = BATCHES[batch]
    miner, ref_miner = _miner_pair(kind, distance)
    loss = make(miner)
    labels_t = ops.convert_to_tensor(labels)
    value, grad = value_and_grad(lambda e: loss(labels_t, e), x)
    assert np.isfinite(value), f"{name} on {batch}: loss {value}"
    assert np.all(np.isfinite(grad)), f"{name} on {batch}: non-finite gradient {grad}"
    want = reference_fn(
        labels, ref.pairwise_distances(x.astype(np.float64), metric=distance), None, ref_miner
    )
    rel = 1e-4 if batch == "large-values" else 1e-5
    assert float(value) == pytest.approx(want, rel=rel, abs=1e-5), f"{name} on {batch}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["contrastive", "multi-similarity"])
def test_half_precision_inputs(name, dtype):
    make, reference_fn, distance = CASES[name]
    loss = make(None)
    labels_t = ops.convert_to_tensor(PAIRS)
    value, grad = value_and_grad(lambda e: loss(labels_t, e), _normal6, dtype=dtype)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    rounded = np.asarray(to_numpy(ops.cast(cast_input(_normal6, dtype), "float32")), np.float64)
    want = reference_fn(PAIRS, ref.pairwise_distances(rounded, metric=distance), None, None)
    assert float(value) == pytest.approx(want, rel=1e-4, abs=1e-4)  # float32 inside
    out = losses.multi_similarity_loss(PAIRS, cast_input(_normal6, dtype))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


FUNCTIONAL = {
    "contrastive_loss": losses.contrastive_loss,
    "multi_similarity_loss": losses.multi_similarity_loss,
    "ContrastiveLoss": lambda y, x: losses.ContrastiveLoss(miner=miners.PairMarginMiner())(y, x),
    "MultiSimilarityLoss": lambda y, x: losses.MultiSimilarityLoss(miner=miners.MultiSimilarityMiner())(y, x),
}


@pytest.mark.parametrize("bad", ["nan", "inf"])
@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_non_finite_embeddings_give_nan(name, bad):
    x = _normal6.copy()
    x[2, 1] = float(bad)
    assert np.isnan(float(to_numpy(FUNCTIONAL[name](PAIRS, x))))


def test_bad_input_raises_clear_errors():
    x = _normal6
    with pytest.raises(ValueError, match="whole numbers|integer"):
        losses.contrastive_loss(np.array([0.5, 0, 1, 1, 2, 2]), x)
    with pytest.raises(ValueError, match="2-D"):
        losses.multi_similarity_loss(PAIRS, x[:, 0])
    with pytest.raises(ValueError, match="labels"):
        losses.ContrastiveLoss()(PAIRS[:4], x)
    with pytest.raises(ValueError, match="PairMiner"):
        losses.ContrastiveLoss(miner="semi-hard")
    with pytest.raises(ValueError, match="PairMiner"):
        losses.MultiSimilarityLoss(miner=miners.BatchHardMiner())
    with pytest.raises(ValueError, match="pos_margin"):
        losses.ContrastiveLoss(pos_margin=-1.0)
    with pytest.raises(ValueError, match="average"):
        losses.ContrastiveLoss(average="mean")
    with pytest.raises(ValueError, match="alpha"):
        losses.MultiSimilarityLoss(alpha=0.0)
    with pytest.raises(ValueError, match="base"):
        losses.MultiSimilarityLoss(base=float("nan"))
    with pytest.raises(ValueError, match="epsilon"):
        miners.MultiSimilarityMiner(epsilon=-0.1)
    with pytest.raises(ValueError, match="distance metric"):
        losses.MultiSimilarityLoss(distance="dot")


def test_defaults_follow_pytorch_metric_learning():
    c = losses.ContrastiveLoss()
    assert (c.pos_margin, c.neg_margin, c.miner) == (0.0, 1.0, None)
    m = losses.MultiSimilarityLoss()
    assert (m.alpha, m.beta, m.base, m.distance) == (2.0, 50.0, 0.5, "cosine")
    assert miners.MultiSimilarityMiner().epsilon == 0.1
    pm = miners.PairMarginMiner()
    assert (pm.pos_margin, pm.neg_margin) == (0.2, 0.8)
    assert c.margin is None and m.margin is None  # no triplet margin: no active_fraction


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles(name):
    loss = CASES[name][0](miners.MultiSimilarityMiner())
    labels = ops.convert_to_tensor(PAIRS)
    x = ops.convert_to_tensor(_normal6)
    got = compiled(lambda y, e: loss(y, e))(labels, x)
    assert float(to_numpy(got)) == pytest.approx(float(to_numpy(loss(labels, x))), rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- serialization

SAVED = {
    "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, average="pairs"),
    "contrastive-pair-margin": lambda: losses.ContrastiveLoss(
        miner=miners.PairMarginMiner(pos_margin=0.1, neg_margin=0.7, distance="cosine"), distance="cosine"
    ),
    "multi-similarity": lambda: losses.MultiSimilarityLoss(alpha=1.5, beta=40.0, base=0.4),
    "multi-similarity-miner": lambda: losses.MultiSimilarityLoss(
        miner=miners.MultiSimilarityMiner(epsilon=0.2), distance="euclidean", base=1.0
    ),
}


@pytest.mark.parametrize("name", sorted(SAVED))
def test_get_config_round_trip(name):
    loss = SAVED[name]()
    restored = assert_config_round_trip(loss)
    if loss.miner is not None:
        assert type(restored.miner) is type(loss.miner)


@pytest.mark.parametrize(
    "make", [lambda: miners.PairMarginMiner(0.3, 0.6), lambda: miners.MultiSimilarityMiner(0.05)]
)
def test_miner_get_config_round_trip(make):
    assert_config_round_trip(make())


@pytest.mark.parametrize("name", sorted(SAVED))
def test_model_save_and_load(name, tmp_path):
    assert_saved_and_loaded(SAVED[name](), tmp_path)


# --------------------------------------------------------------------------- TripletModel


@pytest.mark.parametrize("name", ["contrastive-pair-margin", "multi-similarity-miner"])
def test_triplet_model_with_memory_and_jit(name):
    """In TripletModel, compiled (jit on TensorFlow and JAX), with a cross-batch memory.
    (The step computes no `active_fraction` for a pair loss: see the next test.)"""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10)).astype("float32")
    y = np.repeat(np.arange(8), 4).astype("int32")
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)]
    )
    model = TripletModel(embedder, memory_size=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SAVED[name](), jit_compile=BACKEND != "torch")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "positive_distance" in history.history
    assert int(ops.convert_to_numpy(model.memory.count.value)) == 32


def test_step_loss_with_memory_is_the_reference():
    """The memory branch of the training step: the loss on batch ++ memory."""
    labels = PAIRS
    x = ref.l2_normalize(_normal6).astype("float32")
    memory = ref.l2_normalize(make_batch(3, np.zeros(4), dim=4)).astype("float32")
    memory_labels = np.array([0, 3, 1, 2], "int32")
    state = (memory, memory_labels, np.int32(3), np.int32(3))  # 3 slots filled, the 4th empty
    loss = losses.MultiSimilarityLoss(miner=miners.MultiSimilarityMiner())
    value, stats, _ = step.batch_loss_and_statistics(
        loss, labels, ops.convert_to_tensor(x), state, training=True
    )
    d = ref.pairwise_distances(
        x.astype(np.float64), np.concatenate([x, memory]).astype(np.float64), metric="cosine"
    )
    ref_labels = np.concatenate([labels, [0, 3, 1, -1]])
    want = ref.multi_similarity_loss_from_distances(
        labels, d, ref_labels=ref_labels, miner=lambda y, d, r: ref.multi_similarity_miner(y, d, r, 0.1)
    )
    assert float(to_numpy(value)) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert "active_fraction" not in stats
