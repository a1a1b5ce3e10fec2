"""keras_triplet.miners against the NumPy reference, on the current backend."""

import keras
import numpy as np
import pytest
import reference as ref
from conftest import make_batch, to_numpy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from keras_triplet import distances as distances_lib
from keras_triplet import miners

KEYS = ("pair_mask", "negative_count", "negative_distance_sum")

# (library miner factory, reference function of (labels, distances)), by id.
MINERS = {
    "batch-all-violating": (
        lambda m: miners.BatchAllMiner(margin=m, select="violating"),
        lambda y, d, m: ref.batch_all_miner(y, d, m, "violating"),
    ),
    "batch-all-hard": (
        lambda m: miners.BatchAllMiner(margin=m, select="hard"),
        lambda y, d, m: ref.batch_all_miner(y, d, m, "hard"),
    ),
    "batch-all-semi-hard": (
        lambda m: miners.BatchAllMiner(margin=m, select="semi-hard"),
        lambda y, d, m: ref.batch_all_miner(y, d, m, "semi-hard"),
    ),
    "batch-hard": (lambda m: miners.BatchHardMiner(), lambda y, d, m: ref.batch_hard_miner(y, d)),
    "semi-hard-farthest": (
        lambda m: miners.SemiHardMiner(fallback="farthest"),
        lambda y, d, m: ref.semi_hard_miner(y, d, "farthest"),
    ),
    "semi-hard-none": (
        lambda m: miners.SemiHardMiner(fallback="none"),
        lambda y, d, m: ref.semi_hard_miner(y, d, "none"),
    ),
}

# A few batch sizes only: JAX compiles each op once per shape, even eagerly.
BATCH_SIZES = (1, 2, 5, 8)


def labels_strategy(max_classes=4):
    return st.sampled_from(BATCH_SIZES).flatmap(
        lambda b: st.lists(st.integers(0, max_classes - 1), min_size=b, max_size=b)
    )


def integer_distances(seed, b, high=4):
    """A symmetric [B, B] matrix of small integers, zero diagonal: ties everywhere.

    Every comparison is exact in float32, so tie-breaking and the strict / non-strict
    edges of each band are tested exactly.
    """
    gen = np.random.default_rng(seed)
    d = gen.integers(0, high + 1, size=(b, b)).astype(np.float64)
    d = np.triu(d, 1)
    return d + d.T


def assert_miner_output(got, want, exact=False, atol=None):
    got = to_numpy(got)
    assert set(KEYS) <= set(got), f"miner output must hold {KEYS}; got {sorted(got)}"
    for key in KEYS:
        assert got[key].shape == want[key].shape, key
        assert np.issubdtype(got[key].dtype, np.floating), (key, got[key].dtype)
    np.testing.assert_array_equal(got["pair_mask"], want["pair_mask"], err_msg="pair_mask")
    np.testing.assert_array_equal(got["negative_count"], want["negative_count"], err_msg="negative_count")
    np.testing.assert_allclose(
        got["negative_distance_sum"],
        want["negative_distance_sum"],
        # Sums come from prefix sums: a few ulps off even on integer distances.
        rtol=1e-6 if exact else 1e-5,
        atol=atol or (1e-6 if exact else 1e-5),
        err_msg="negative_distance_sum",
    )


@pytest.mark.parametrize("name", sorted(MINERS))
@settings(max_examples=15)  # parametrized: fewer examples per case
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0, 1, 2]))
def test_exact_on_integer_distances(name, labels, seed, margin):
    """Ties and band edges: integer distances make every comparison exact."""
    make, reference_fn = MINERS[name]
    labels = np.array(labels)
    d = integer_distances(seed, len(labels))
    got = make(float(margin))(labels, distances=d.astype("float32"))
    assert_miner_output(got, reference_fn(labels, d, float(margin)), exact=True)


@pytest.mark.parametrize("name", sorted(MINERS))
@settings(max_examples=15)  # parametrized: fewer examples per case
@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0.1, 0.5, 1.0]))
def test_matches_reference_on_embeddings(name, labels, seed, margin):
    make, reference_fn = MINERS[name]
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3)
    d = ref.pairwise_distances(x)
    assume(ref.comparison_gap(d, [margin]) > 1e-4)
    miner = make(margin)
    assert_miner_output(miner(labels, embeddings=x.astype("float32")), reference_fn(labels, d, margin))
    # The same from a precomputed matrix.
    d_lib = distances_lib.pairwise_distances(x.astype("float32"))
    assert_miner_output(miner(labels, distances=d_lib), reference_fn(labels, d, margin))


@pytest.mark.parametrize("metric,p", [("squared_euclidean", None), ("cosine", None), ("minkowski", 3)])
@pytest.mark.parametrize("name", ["batch-all-violating", "batch-hard", "semi-hard-farthest"])
def test_miner_uses_its_distance(name, metric, p):
    make_default, _ = MINERS[name]
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    x = make_batch(3, labels, dim=3)
    d = ref.pairwise_distances(x, metric=metric, p=p)
    assert ref.comparison_gap(d, [0.5]) > 1e-4
    config = make_default(0.5).get_config()
    config.update({"distance": metric, "p": p})
    miner = type(make_default(0.5)).from_config(config)
    assert miner.distance == metric
    want = MINERS[name][1](labels, d, 0.5)
    assert_miner_output(miner(labels, embeddings=x.astype("float32")), want)


def test_labels_of_shape_b1_are_accepted():
    labels = np.array([[0], [0], [1], [1]])
    x = make_batch(0, labels.ravel(), dim=2)
    got = miners.BatchHardMiner()(labels, embeddings=x.astype("float32"))
    assert_miner_output(got, ref.batch_hard_miner(labels.ravel(), ref.pairwise_distances(x)))


def test_batch_hard_takes_first_index_on_ties():
    labels = np.array([0, 0, 0, 1, 1])
    d = np.array(
        [
            [0, 2, 2, 1, 1],
            [2, 0, 3, 3, 1],
            [2, 3, 0, 1, 2],
            [1, 3, 1, 0, 4],
            [1, 1, 2, 4, 0],
        ],
        dtype=np.float64,
    )
    got = to_numpy(miners.BatchHardMiner()(labels, distances=d.astype("float32")))
    # Anchor 0: positives 1 and 2 both at 2 -> the first, 1.
    np.testing.assert_array_equal(got["pair_mask"][0], [0, 1, 0, 0, 0])
    assert got["negative_distance_sum"][0, 1] == 1.0
    assert_miner_output(got, ref.batch_hard_miner(labels, d), exact=True)


def test_batch_all_band_edges():
    # One anchor row: d(0, p=1) = 1; negatives at 0.5, 1, 1.5, 2 (margin 1).
    labels = np.array([0, 0, 1, 2, 3, 4])
    d = np.zeros((6, 6))
    d[0, 1:] = [1.0, 0.5, 1.0, 1.5, 2.0]
    d = np.maximum(d, d.T)
    cases = {
        "violating": (3, 0.5 + 1.0 + 1.5),  # d_an < 2: 0.5, 1, 1.5 (2 is on the edge: out)
        "hard": (2, 0.5 + 1.0),  # d_an <= 1: 0.5, 1
        "semi-hard": (1, 1.5),  # 1 < d_an < 2
    }
    for select, (count, total) in cases.items():
        got = to_numpy(miners.BatchAllMiner(margin=1.0, select=select)(labels, distances=d.astype("float32")))
        assert got["negative_count"][0, 1] == count, select
        assert got["negative_distance_sum"][0, 1] == pytest.approx(total), select
        assert got["pair_mask"][0, 1] == 1.0


def test_semi_hard_fallback():
    labels = np.array([0, 0, 1, 1])
    # Anchor 0, positive 1 at 3: negatives at 1 and 2, none farther.
    d = np.array([[0, 3, 1, 2], [3, 0, 5, 4], [1, 5, 0, 1], [2, 4, 1, 0]], dtype=np.float64)
    far = to_numpy(miners.SemiHardMiner(fallback="farthest")(labels, distances=d.astype("float32")))
    none = to_numpy(miners.SemiHardMiner(fallback="none")(labels, distances=d.astype("float32")))
    assert far["pair_mask"][0, 1] == 1 and far["negative_distance_sum"][0, 1] == 2.0
    assert none["pair_mask"][0, 1] == 0 and none["negative_count"][0, 1] == 0
    # Anchor 1, positive 0 at 3: negatives at 5 and 4: the closest farther is 4.
    assert far["negative_distance_sum"][1, 0] == 4.0 and none["negative_distance_sum"][1, 0] == 4.0


def test_single_negative_flag():
    assert miners.BatchHardMiner.single_negative
    assert miners.SemiHardMiner.single_negative
    assert not miners.BatchAllMiner.single_negative


@pytest.mark.parametrize("name", sorted(MINERS))
def test_miner_outputs_are_zero_outside_used_pairs(name):
    make, _ = MINERS[name]
    labels = np.array([0, 1, 2, 3])  # no positive pair at all
    x = make_batch(1, labels, dim=3).astype("float32")
    got = to_numpy(make(1.0)(labels, embeddings=x))
    for key in KEYS:
        np.testing.assert_array_equal(got[key], np.zeros((4, 4)))


def test_exactly_one_of_distances_or_embeddings():
    labels = np.array([0, 0, 1, 1])
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError):
        miners.BatchHardMiner()(labels)
    with pytest.raises(ValueError):
        miners.BatchHardMiner()(labels, distances=np.zeros((4, 4), "float32"), embeddings=x)


@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0.0, 0.3, 1.0]))
def test_triplet_statistics(labels, seed, margin):
    labels = np.array(labels)
    x = make_batch(seed, labels, dim=3)
    d = ref.pairwise_distances(x)
    assume(ref.comparison_gap(d, [margin]) > 1e-4)
    got = to_numpy(
        miners.triplet_statistics(labels, distances_lib.pairwise_distances(x.astype("float32")), margin)
    )
    want = ref.triplet_statistics(labels, d, margin)
    assert set(want) <= set(got)
    for key in want:
        assert np.shape(got[key]) == (), key
        assert float(got[key]) == pytest.approx(want[key], rel=1e-5, abs=1e-5), key


@given(labels=labels_strategy(), seed=st.integers(0, 2**31 - 1), margin=st.sampled_from([0, 1, 2]))
def test_triplet_statistics_exact_on_integer_distances(labels, seed, margin):
    labels = np.array(labels)
    d = integer_distances(seed, len(labels))
    d_tensor = keras.ops.convert_to_tensor(d.astype("float32"))
    got = to_numpy(miners.triplet_statistics(labels, d_tensor, float(margin)))
    want = ref.triplet_statistics(labels, d, float(margin))
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-6, abs=1e-6), key


def test_triplet_statistics_accepts_numpy():
    labels = np.array([0, 0, 1, 1])
    d = integer_distances(0, 4).astype("float32")
    got = to_numpy(miners.triplet_statistics(labels, d, 1.0))
    assert float(got["positive_distance"]) == pytest.approx(
        ref.triplet_statistics(labels, d, 1.0)["positive_distance"]
    )


@pytest.mark.parametrize("name", sorted(MINERS))
def test_config_round_trip(name):
    make, _ = MINERS[name]
    miner = make(0.7)
    config = miner.get_config()
    clone = type(miner).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(miner))
    assert type(restored) is type(miner)
    assert restored.get_config() == config


# ------------------------------------------------- wide batches (compacted search on PyTorch)


@pytest.mark.parametrize("name", sorted(MINERS))
@pytest.mark.parametrize("layout", ["pk", "uneven"])
def test_wide_batches_match_reference(name, layout):
    """At 64+ columns eager PyTorch searches only each anchor's positive columns
    (`_backend.compact_columns`) and scatters the selection back; compiled backends search
    every column. Both must give the reference's selection, the loss on the compact
    layout (`mine_pairs`) included, ties and band edges too (integer distances)."""
    from keras_triplet.losses.triplet import triplet_loss_from_distances

    make, reference_fn = MINERS[name]
    rng = np.random.default_rng(7)
    if layout == "pk":  # P×K, K = 4
        labels = np.repeat(np.arange(24), 4)
    else:  # uneven classes, one singleton (no positive), one large class
        labels = np.concatenate([np.zeros(30, int), rng.integers(1, 12, size=65), [99]])
    d = integer_distances(11, len(labels), high=9)
    if keras.backend.backend() == "torch":  # P×K compacts; the large class makes it not pay
        from keras_triplet import _backend

        positive = keras.ops.convert_to_tensor(miners.pair_masks(keras.ops.convert_to_tensor(labels))[0])
        assert (_backend.compact_columns(positive) is not None) == (layout == "pk")
    margin = 2.0
    miner = make(margin)
    # Counts and masks exactly; band sums to float32 prefix-sum rounding (sums of ~90
    # distances up to 9: an ulp of the prefix is ~1e-5 in absolute terms).
    assert_miner_output(
        miner(labels, distances=d.astype("float32")), reference_fn(labels, d, margin), atol=1e-4
    )
    if "farthest" in name or "violating" in name:
        want = ref.triplet_statistics(labels, d, margin)
        got = to_numpy(miners.triplet_statistics(labels, d.astype("float32"), margin))
        for key in want:
            assert float(got[key]) == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
    loss = triplet_loss_from_distances(
        keras.ops.convert_to_tensor(labels.astype("int32")),
        keras.ops.convert_to_tensor(d.astype("float32")),
        miner,
        margin=margin,
    )
    full = reference_fn(labels, d, margin)
    pair_loss = full["pair_mask"] * np.maximum(
        full["negative_count"] * (d + margin) - full["negative_distance_sum"], 0
    )
    count = full["negative_count"] if miner.single_negative else full["negative_count"] * (pair_loss > 0)
    assert float(to_numpy(loss)) == pytest.approx(pair_loss.sum() / max(count.sum(), 1.0), rel=1e-5)
