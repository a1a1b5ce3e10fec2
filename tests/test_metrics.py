"""Retrieval and verification metrics: hand-computed examples, a naive reference,
scikit-learn, chunked == unchunked, and the RetrievalEvaluation callback."""

import math
import os

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from keras_triplet.metrics import (
    RetrievalEvaluation,
    choose_threshold,
    equal_error_rate,
    far_frr_at_threshold,
    pair_distances,
    paired_distances_numpy,
    pairwise_distances_numpy,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
)

METRICS = ("euclidean", "squared_euclidean", "cosine", "angular")


# ------------------------------------------------------------------ naive reference


def naive_distances(x, y, metric):
    out = np.zeros((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            a, b = x[i], y[j]
            if metric == "euclidean":
                out[i, j] = math.sqrt(np.sum((a - b) ** 2))
            elif metric == "squared_euclidean":
                out[i, j] = np.sum((a - b) ** 2)
            else:
                na, nb = np.linalg.norm(a), np.linalg.norm(b)
                cos = 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)
                out[i, j] = 1 - cos if metric == "cosine" else max(1 - cos, 0.0)
    return out


def naive_retrieval(x, y, ks, metric, refs=None, ref_y=None):
    """Per-query loops straight from Musgrave et al.; ties broken by reference index."""
    loo = refs is None
    if loo:
        refs, ref_y = x, y
    d = naive_distances(x, refs, metric)
    rec = {k: [] for k in ks}
    p1, rp, mapr = [], [], []
    for i in range(len(x)):
        cand = [j for j in range(len(refs)) if not (loo and j == i)]
        cand.sort(key=lambda j: (d[i, j], j))
        rel = [1.0 if ref_y[j] == y[i] else 0.0 for j in cand]
        r = int(sum(rel))
        if r == 0:
            continue
        for k in ks:
            rec[k].append(1.0 if sum(rel[:k]) > 0 else 0.0)
        p1.append(rel[0])
        rp.append(sum(rel[:r]) / r)
        ap, hits = 0.0, 0
        for pos in range(r):
            if rel[pos]:
                hits += 1
                ap += hits / (pos + 1)
        mapr.append(ap / r)
    out = {f"recall@{k}": np.mean(v) for k, v in rec.items()}
    out.update(
        {
            "precision@1": np.mean(p1),
            "r_precision": np.mean(rp),
            "map@r": np.mean(mapr),
            "num_queries": len(p1),
        }
    )
    return out


# ------------------------------------------------------------------------ retrieval


def test_hand_computed_example():
    # 1-D points; labels a a b b a. Leave-one-out, euclidean.
    x = np.array([[0.0], [1.0], [1.5], [3.0], [10.0]])
    y = np.array(["a", "a", "b", "b", "a"])
    m = retrieval_metrics(x, y, ks=(1, 2))
    # Neighbours (nearest first):
    #  q0 (a, R=2): 1(a) 2(b) 3(b) 4(a)   rel 1 0 0 1  -> P@1 1, RP 1/2, AP (1/1)/2 = 0.5
    #  q1 (a, R=2): 2(b) 0(a) 3(b) 4(a)   rel 0 1 0 1  -> P@1 0, RP 1/2, AP (1/2)/2 = 0.25
    #  q2 (b, R=1): 1(a) 0(a) 3(b) ...    rel 0 0 1    -> P@1 0, RP 0,   AP 0
    #  q3 (b, R=1): 2(b) ...              rel 1        -> P@1 1, RP 1,   AP 1
    #  q4 (a, R=2): 3(b) 2(b) 1(a) 0(a)   rel 0 0 1 1  -> P@1 0, RP 0,   AP 0
    assert m["num_queries"] == 5 and m["num_skipped_queries"] == 0
    assert m["precision@1"] == pytest.approx(2 / 5)
    assert m["recall@1"] == pytest.approx(2 / 5)
    assert m["recall@2"] == pytest.approx(3 / 5)  # q0, q1, q3
    assert m["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 0) / 5)
    assert m["map@r"] == pytest.approx((0.5 + 0.25 + 0 + 1 + 0) / 5)


def test_queries_without_a_match_are_excluded():
    x = np.array([[0.0], [0.1], [5.0]])
    m = retrieval_metrics(x, [0, 0, 1], ks=(1,))
    assert m["num_queries"] == 2 and m["num_skipped_queries"] == 1
    assert m["recall@1"] == 1.0 and m["map@r"] == 1.0
    none = retrieval_metrics(x, [0, 1, 2], ks=(1,))
    assert none["num_queries"] == 0 and math.isnan(none["recall@1"])


@pytest.mark.parametrize("metric", METRICS)
def test_matches_naive_reference(metric):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 5, size=40)
    got = retrieval_metrics(x, y, ks=(1, 2, 5, 100), metric=metric, chunk_size=7)
    want = naive_retrieval(x, y, (1, 2, 5, 100), metric)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_ties_are_broken_by_index():
    # Every reference at the same distance: ranks follow reference index.
    x = np.zeros((6, 2))
    y = np.array([0, 1, 1, 0, 1, 0])
    got = retrieval_metrics(x, y, ks=(1, 3), chunk_size=2)
    want = naive_retrieval(x, y, (1, 3), "euclidean")
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # Duplicated points mixed with distinct ones.
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(50, 2)), 0)
    y = rng.integers(0, 4, size=50)
    got = retrieval_metrics(x, y, ks=(1, 4), chunk_size=9)
    want = naive_retrieval(x, y, (1, 4), "squared_euclidean")
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_query_against_references():
    rng = np.random.default_rng(2)
    q, ql = rng.normal(size=(15, 4)), rng.integers(0, 4, 15)
    r, rl = rng.normal(size=(30, 4)), rng.integers(0, 5, 30)
    got = retrieval_metrics(q, ql, ks=(1, 3), references=r, reference_labels=rl, chunk_size=4)
    want = naive_retrieval(q, ql, (1, 3), "euclidean", r, rl)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.integers(0, 12, size=300)
    full = retrieval_metrics(x, y, ks=(1, 5, 10), chunk_size=300)
    for chunk in (1, 17, 64):
        assert retrieval_metrics(x, y, ks=(1, 5, 10), chunk_size=chunk) == full


def _clustered(n, classes=50, dim=16, seed=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    return (centers[y] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32), y


def test_default_chunking_on_a_larger_set():
    x, y = _clustered(4000)
    m = retrieval_metrics(x, y, ks=(1, 10))
    assert m["num_queries"] == 4000
    assert 0.9 < m["recall@1"] <= m["recall@10"] <= 1.0
    assert m == retrieval_metrics(x, y, ks=(1, 10), chunk_size=1000)


def test_large_set_runs_in_bounded_memory():
    # 20 000 x 20 000 would be 3.2 GB as one float64 matrix; chunks keep it small.
    x, y = _clustered(20_000)
    m = retrieval_metrics(x, y, ks=(1,))
    assert m["num_queries"] == 20_000
    assert 0.9 < m["recall@1"] <= 1.0


def test_numpy_distances_match_the_library():
    from keras_triplet import distances

    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    x[3] = 0.0  # zero vector: cosine similarity 0 with everything
    for metric in METRICS:
        # y given explicitly: with y=None the library forces an exact-0 diagonal, even for
        # the zero vector's cosine self-distance.
        lib = keras.ops.convert_to_numpy(distances.pairwise_distances(x, x, metric=metric))
        ours = pairwise_distances_numpy(x, x, metric)
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(ours, naive_distances(x64, x64, metric), atol=1e-9)
        off = ~np.eye(7, dtype=bool)  # float32 sqrt of a rounded ~0 on the diagonal
        np.testing.assert_allclose(ours[off], lib[off], atol=1e-5, err_msg=metric)
        np.testing.assert_allclose(np.diag(ours), np.diag(lib), atol=2e-3, err_msg=metric)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_distances_are_the_diagonal_of_pairwise(metric):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    a[0] = 0.0  # a zero vector: cosine similarity 0
    want = np.diag(naive_distances(a, b, metric))
    np.testing.assert_allclose(paired_distances_numpy(a, b, metric), want, atol=1e-12)
    np.testing.assert_allclose(np.diag(pairwise_distances_numpy(a, b, metric)), want, atol=1e-12)
    with pytest.raises(ValueError, match="dimension"):
        pairwise_distances_numpy(a, b[:, :2], metric)
    with pytest.raises(ValueError, match="row by row"):
        paired_distances_numpy(a, b[:5], metric)
    with pytest.raises(ValueError, match="Unknown metric"):
        pairwise_distances_numpy(a, b, "manhattan")


def test_retrieval_rejects_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(4), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="4 rows"):
        retrieval_metrics(x, [0, 1, 1])
    with pytest.raises(ValueError, match="fractional"):
        retrieval_metrics(x, [0, 0.5, 1, 1])
    with pytest.raises(ValueError, match="Unknown metric"):
        retrieval_metrics(x, [0, 0, 1, 1], metric="manhattan")
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(x, [0, 0, 1, 1], ks=(0,))
    with pytest.raises(ValueError, match="dimension"):
        retrieval_metrics(x, [0, 0, 1, 1], references=np.zeros((3, 5)), reference_labels=[0, 1, 2])
    with pytest.raises(ValueError, match="reference_labels"):
        retrieval_metrics(x, [0, 0, 1, 1], references=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((4, 2), np.nan), [0, 0, 1, 1])


# --------------------------------------------------------------------- verification


def _random_pairs(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    d = rng.normal(loc=np.where(same, 1.0, 1.8), scale=0.4)
    if ties:
        d = np.round(d, 1)
    return d, same


@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(ties):
    d, same = _random_pairs(0, ties=ties)
    far, tar, thr = roc_curve(d, same)
    fpr, tpr, sk_thr = skm.roc_curve(same, -d, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr, atol=1e-12)
    np.testing.assert_allclose(tar, tpr, atol=1e-12)
    np.testing.assert_allclose(thr[1:], -sk_thr[1:], atol=1e-12)
    assert roc_auc(d, same) == pytest.approx(skm.roc_auc_score(same, -d), abs=1e-12)


def sklearn_eer(d, same):
    """EER and its threshold from scikit-learn's ROC, interpolated where FAR = FRR.

    `roc_curve(same, -d)` lists the ROC points by decreasing score (increasing distance);
    FRR − FAR falls from 1 to <= 0 along them. Between the last point where it is > 0
    and the first where it is <= 0, FAR, FRR and the threshold are interpolated
    linearly, at the fraction where FRR − FAR reaches 0. (The first point's threshold
    is +inf, i.e. nothing accepted; a crossing in that first segment takes the next
    point's threshold.) Written from scikit-learn's outputs alone, not from ours.
    """
    fpr, tpr, thresholds = skm.roc_curve(same, -d, drop_intermediate=False)
    fnr = 1.0 - tpr
    gap = fnr - fpr
    i = next(j for j in range(len(gap)) if gap[j] <= 0)
    alpha = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    assert eer == pytest.approx(fnr[i - 1] + alpha * (fnr[i] - fnr[i - 1]), abs=1e-12)
    if np.isfinite(thresholds[i - 1]):
        threshold = -(thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1]))
    else:
        threshold = -thresholds[i]
    return eer, threshold, (-thresholds[i - 1], -thresholds[i])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_interpolated_sklearn_roc(seed):
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq

    d, same = _random_pairs(seed)
    fpr, tpr, _ = skm.roc_curve(same, -d, drop_intermediate=False)
    want = brentq(lambda f: 1.0 - f - interp1d(fpr, tpr)(f), 0.0, 1.0)
    eer, threshold = equal_error_rate(d, same)
    assert eer == pytest.approx(want, abs=1e-9)
    # The threshold is the interpolated crossing, not a neighbouring ROC point.
    assert threshold == pytest.approx(sklearn_eer(d, same)[1], abs=1e-12)


# (seed, rounded to 0.1 so that distances tie, number of pairs): random cases whose
# crossing lies between two ROC points (cases crossing on a point are left out: there a
# threshold moved to that point would not be wrong).
EER_CASES = [
    (0, False, 400),
    (1, False, 60),
    (1, False, 400),
    (2, False, 400),
    (3, False, 60),
    (4, False, 400),
    (5, False, 2000),
    (0, True, 400),
    (1, True, 60),
    (2, True, 2000),
    (3, True, 2000),
    (4, True, 400),
]


@pytest.mark.parametrize("seed,ties,n", EER_CASES)
def test_eer_and_threshold_match_the_interpolated_sklearn_crossing(seed, ties, n):
    d, same = _random_pairs(seed, n=n, ties=ties)
    want_eer, want_threshold, (before, after) = sklearn_eer(d, same)
    # Each case is one where a threshold on a ROC point would be wrong: the crossing
    # lies strictly between two points, away from both.
    assert 0.01 < (want_threshold - before) / (after - before) < 0.99
    eer, threshold = equal_error_rate(d, same)
    assert eer == pytest.approx(want_eer, abs=1e-12)
    assert threshold == pytest.approx(want_threshold, abs=1e-12)
    assert choose_threshold(d, same) == pytest.approx(want_threshold, abs=1e-12)


def test_verification_hand_computed():
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([1, 1, 0, 1, 0, 0])
    far, tar, thr = roc_curve(d, same)
    np.testing.assert_allclose(far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert thr[0] == -np.inf
    # FRR - FAR: 1, 2/3, 1/3, 0 ... crossing exactly at threshold 0.3: FAR = FRR = 1/3.
    assert equal_error_rate(d, same) == pytest.approx((1 / 3, 0.3))
    assert roc_auc(d, same) == pytest.approx(8 / 9)  # one discordant pair of 9
    assert tar_at_far(d, same, far=0.0) == pytest.approx(2 / 3)
    assert tar_at_far(d, same, far=0.5) == pytest.approx(1.0)
    assert far_frr_at_threshold(d, same, 0.25) == pytest.approx((0.0, 1 / 3))
    assert choose_threshold(d, same, far=0.0) == pytest.approx(0.2)
    assert choose_threshold(d, same) == pytest.approx(0.3)


def test_choose_threshold_on_one_split_apply_on_another():
    d_val, same_val = _random_pairs(10, n=2000)
    d_test, same_test = _random_pairs(11, n=2000)
    t = choose_threshold(d_val, same_val, target="eer")
    eer_val = equal_error_rate(d_val, same_val)[0]
    far, frr = far_frr_at_threshold(d_test, same_test, t)
    # Same distribution: the test split's error rates are close to the validation EER.
    assert abs(far - eer_val) < 0.05 and abs(frr - eer_val) < 0.05
    t_far = choose_threshold(d_val, same_val, far=0.01)
    far_val, _ = far_frr_at_threshold(d_val, same_val, t_far)
    assert far_val <= 0.01


def test_verification_metrics_on_embeddings():
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(6), 10)
    x = rng.normal(size=(6, 5))[y] + 0.5 * rng.normal(size=(60, 5))
    m = verification_metrics(x, y, fars=(0.01,))
    d, same = pair_distances(x, y)
    assert m["num_pairs"] == 60 * 59 // 2 == d.size
    assert same.sum() == 6 * 45
    assert m["auc"] == pytest.approx(skm.roc_auc_score(same, -d), abs=1e-12)
    assert (m["eer"], m["eer_threshold"]) == pytest.approx(equal_error_rate(d, same))
    assert m["tar@far=0.01"] == pytest.approx(tar_at_far(d, same, 0.01))
    # Pair i < j distances agree with a direct computation.
    i, j = np.triu_indices(60, k=1)
    np.testing.assert_allclose(d, np.linalg.norm(x[i] - x[j], axis=1), atol=1e-12)
    np.testing.assert_array_equal(same, y[i] == y[j])


@pytest.mark.parametrize("metric", METRICS)
def test_sampled_pairs_use_the_same_distances(metric):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 6))
    y = rng.integers(0, 3, 300)
    full = verification_metrics(x, y, metric=metric)
    sampled = verification_metrics(x, y, metric=metric, max_pairs=20_000, seed=1)
    assert sampled["num_pairs"] == 20_000
    assert sampled["auc"] == pytest.approx(full["auc"], abs=0.02)
    d, same = pair_distances(x, y, metric=metric, max_pairs=500, seed=3)
    gen = np.random.default_rng(3)
    i = gen.integers(0, 300, 500)
    j = gen.integers(0, 299, 500)
    j = j + (j >= i)
    want = np.array([naive_distances(x[a : a + 1], x[b : b + 1], metric)[0, 0] for a, b in zip(i, j)])
    np.testing.assert_allclose(d, want, atol=1e-12)
    np.testing.assert_array_equal(same, y[i] == y[j])


def test_verification_rejects_bad_input():
    with pytest.raises(ValueError, match="both same-class and different-class"):
        roc_curve([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="one ground-truth flag"):
        roc_curve([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="booleans"):
        roc_curve([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="far"):
        tar_at_far([0.1, 0.2], [True, False], far=2.0)
    with pytest.raises(ValueError, match="target"):
        choose_threshold([0.1, 0.2], [True, False], target="min-error")
    with pytest.raises(ValueError, match="both same-class"):
        verification_metrics(np.zeros((3, 2)), [0, 1, 2])


# ------------------------------------------------------------------------- callback


def _blobs(n_classes=4, per_class=12, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = 3 * rng.normal(size=(n_classes, dim))[y] + 0.3 * rng.normal(size=(len(y), dim))
    return x.astype("float32"), y


def test_callback_writes_metrics_into_history():
    x, y = _blobs()
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6)])
    model.compile(optimizer="sgd", loss="mse")
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = dict(logs)

    cb = RetrievalEvaluation(x, y, every_n_epochs=2, ks=(1, 5), batch_size=16)
    history = model.fit(x, x, epochs=4, batch_size=16, verbose=0, callbacks=[cb, Spy()])
    for key in (
        "val_recall@1",
        "val_recall@5",
        "val_precision@1",
        "val_r_precision",
        "val_map@r",
        "val_eer",
        "val_eer_threshold",
        "val_auc",
    ):
        assert len(history.history[key]) == 2, key  # epochs 2 and 4
    assert not any(k.startswith("val_num") for k in history.history)
    assert "val_recall@1" not in seen[0] and "val_recall@1" in seen[1]  # later callbacks see it
    assert [e for e, _ in cb.results] == [1, 3]
    want = retrieval_metrics(model.predict(x, verbose=0), y, ks=(1, 5))
    assert history.history["val_map@r"][-1] == pytest.approx(want["map@r"], abs=1e-6)


def test_callback_uses_model_embed_when_present():
    x, y = _blobs()

    class WithEmbed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)
            self.calls = []

        def call(self, inputs):
            return self.dense(inputs)

        def embed(self, inputs, batch_size=256):
            self.calls.append(batch_size)
            return np.asarray(inputs)  # the raw, well-separated features

    model = WithEmbed()
    model.compile(optimizer="sgd", loss="mse")
    cb = RetrievalEvaluation(x, y, ks=(1,), batch_size=32, verification=False)
    history = model.fit(x, np.zeros((len(x), 3)), epochs=1, verbose=0, callbacks=[cb])
    assert model.calls == [32]
    assert history.history["val_recall@1"] == [1.0]
    assert "val_eer" not in history.history


def test_callback_rejects_bad_period():
    with pytest.raises(ValueError, match="every_n_epochs"):
        RetrievalEvaluation(np.zeros((2, 2)), [0, 1], every_n_epochs=0)


def test_callback_metrics_reach_tensorboard(tmp_path):
    import tensorboard  # noqa: F401 - keras.callbacks.TensorBoard writes through it (a dev dependency)
    import tensorflow as tf

    x, y = _blobs()
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6)])
    model.compile(optimizer="sgd", loss="mse")
    callbacks = [RetrievalEvaluation(x, y, ks=(1,)), keras.callbacks.TensorBoard(str(tmp_path))]
    model.fit(x, x, epochs=1, verbose=0, callbacks=callbacks)
    tags = set()
    for root, _, files in os.walk(tmp_path):
        for name in files:
            if "tfevents" in name:
                for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                    tags.update(v.tag for v in event.summary.value)
    assert {"epoch_recall@1", "epoch_map@r", "epoch_eer"} <= tags


def test_callback_with_triplet_model():
    from keras_triplet.losses import TripletLoss
    from keras_triplet.models import TripletModel

    x, y = _blobs(n_classes=4, per_class=8)
    model = TripletModel(keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)]))
    model.compile(optimizer="adam", loss=TripletLoss(margin=0.2))
    cb = RetrievalEvaluation(x, y, ks=(1, 5), batch_size=8)
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
    assert len(history.history["val_recall@1"]) == 1
    want = retrieval_metrics(model.embed(x), y, ks=(1, 5))
    assert history.history["val_map@r"][-1] == pytest.approx(want["map@r"], abs=1e-6)
