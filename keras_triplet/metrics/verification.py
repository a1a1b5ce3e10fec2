"""Verification metrics: is this pair of items the same class or not?

A pair's score is its distance; a pair is *accepted* (predicted "same") when
`distance <= threshold`. Over a set of pairs with ground truth `is_same`:

- `FAR(t)` (false accept rate, the false positive rate) = accepted different pairs / different pairs,
- `TAR(t)` (true accept rate, the true positive rate) = accepted same pairs / same pairs,
- `FRR(t) = 1 − TAR(t)` (false reject rate).

The ROC curve is `(FAR(t), TAR(t))` over all thresholds; the equal error rate (EER) is
where `FAR = FRR`, found by linear interpolation between the two ROC points around the
crossing (the same as intersecting the piecewise-linear ROC with `FAR = 1 − TAR`).
`AUC` is the area under the ROC curve (trapezoids), equal to
`sklearn.metrics.roc_auc_score(is_same, -distances)`.

All of this is NumPy (float64), independent of the Keras backend.
"""

import numpy as np

from keras_triplet._validation import check_embedding_array, check_label_array
from keras_triplet.metrics.distances import (
    check_metric,
    paired_distances_numpy,
    pairwise_distances_numpy,
)
from keras_triplet.metrics.retrieval import _label_codes

# verification_metrics uses every pair up to this many, then samples pairs.
DEFAULT_MAX_PAIRS = 5_000_000


def _as_pairs(distances, is_same):
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    is_same = np.asarray(is_same).reshape(-1)
    if distances.shape != is_same.shape:
        raise ValueError(
            f"`distances` has {distances.size} entries but `is_same` has {is_same.size}; "
            "give one ground-truth flag per pair."
        )
    if is_same.dtype != bool:
        if not np.all(np.isin(is_same, (0, 1))):
            raise ValueError("`is_same` must be booleans (or 0/1): True where the pair is the same class.")
        is_same = is_same.astype(bool)
    if np.any(np.isnan(distances)):
        raise ValueError("`distances` contains NaN.")
    n_same = int(np.sum(is_same))
    if n_same == 0 or n_same == is_same.size:
        raise ValueError(
            f"Verification needs both same-class and different-class pairs; got {n_same} same "
            f"and {is_same.size - n_same} different pairs."
        )
    return distances, is_same


def roc_curve(distances, is_same):
    """ROC curve of pair distances: `(far, tar, thresholds)`, thresholds increasing.

    `thresholds[0] = -inf` (nothing accepted: `far = tar = 0`), then every distinct
    distance in increasing order; at threshold `t` a pair is accepted when
    `distance <= t`, `far[i] = FAR(thresholds[i])` and `tar[i] = TAR(thresholds[i])`
    (TAR is the true positive rate). This is
    `sklearn.metrics.roc_curve(is_same, -distances, drop_intermediate=False)` with the
    thresholds negated.

    Example:

    >>> far, tar, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [True, True, False, False])
    >>> far.tolist(), tar.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    distances, is_same = _as_pairs(distances, is_same)
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    same = is_same[order]
    # The last position of each run of equal distances.
    ends = np.r_[np.nonzero(np.diff(d))[0], d.size - 1]
    tp = np.cumsum(same)[ends]
    fp = (ends + 1) - tp
    far = np.r_[0.0, fp / (d.size - same.sum())]
    tar = np.r_[0.0, tp / same.sum()]
    thresholds = np.r_[-np.inf, d[ends]]
    return far, tar, thresholds


def _eer_from_curve(far, tar, thresholds):
    frr = 1.0 - tar
    diff = frr - far  # decreasing from 1 (at -inf) to <= 0 (at the largest distance)
    i = int(np.argmax(diff <= 0))
    gap_before, gap_after = diff[i - 1], diff[i]
    alpha = gap_before / (gap_before - gap_after)
    eer = far[i - 1] + alpha * (far[i] - far[i - 1])
    if np.isfinite(thresholds[i - 1]):
        threshold = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])
    else:
        threshold = thresholds[i]
    return float(eer), float(threshold)


def equal_error_rate(distances, is_same):
    """Equal error rate and its threshold: `(eer, threshold)`.

    The EER is the error rate where `FAR = FRR`, linearly interpolated between the two
    ROC points around the crossing; `threshold` is interpolated the same way (a pair is
    accepted when `distance <= threshold`). Perfectly separated pairs give `eer = 0` at
    the largest same-class distance.

    Example:

    >>> eer, t = equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, True, False, False])
    >>> eer, t
    (0.0, 0.2)
    """
    return _eer_from_curve(*roc_curve(distances, is_same))


def roc_auc(distances, is_same):
    """Area under the ROC curve (trapezoids; ties count one half).

    Equals `sklearn.metrics.roc_auc_score(is_same, -distances)`: the probability that a
    random same-class pair is closer than a random different-class pair.

    Example:

    >>> roc_auc([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    0.75
    """
    far, tar, _ = roc_curve(distances, is_same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def tar_at_far(distances, is_same, far=1e-3):
    """True accept rate at a false accept rate of at most `far`.

    The largest TAR over the thresholds whose FAR is `<= far` (no interpolation, so the
    operating point is one you can actually set).

    Example:

    >>> tar_at_far([0.1, 0.2, 0.3, 0.4], [True, False, True, False], far=0.0)
    0.5
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"`far` must be in [0, 1]; got {far}.")
    fars, tars, _ = roc_curve(distances, is_same)
    return float(np.max(tars[fars <= far]))


def far_frr_at_threshold(distances, is_same, threshold):
    """`(far, frr)` when pairs with `distance <= threshold` are accepted.

    Use it to apply a threshold chosen on one split (`choose_threshold`) to another.

    Example:

    >>> far_frr_at_threshold([0.1, 0.2, 0.3, 0.4], [True, False, True, False], 0.25)
    (0.5, 0.5)
    """
    distances, is_same = _as_pairs(distances, is_same)
    accepted = distances <= threshold
    far = float(np.mean(accepted[~is_same]))
    frr = float(np.mean(~accepted[is_same]))
    return far, frr


def choose_threshold(distances, is_same, target="eer", far=None):
    """Picks a distance threshold on one split, to apply on another.

    - `target="eer"` (default): the equal-error-rate threshold (`equal_error_rate`).
    - `far=x`: the largest threshold whose FAR on these pairs is `<= x` (the highest TAR
      at that FAR).

    Example:

    >>> d_val, same_val = [0.1, 0.2, 0.3, 0.4], [True, True, False, False]
    >>> t = choose_threshold(d_val, same_val)
    >>> far_frr_at_threshold([0.15, 0.5, 0.25], [True, False, False], t)
    (0.0, 0.0)
    """
    if far is not None:
        if not 0.0 <= far <= 1.0:
            raise ValueError(f"`far` must be in [0, 1]; got {far}.")
        fars, _, thresholds = roc_curve(distances, is_same)
        return float(thresholds[np.nonzero(fars <= far)[0][-1]])
    if target != "eer":
        raise ValueError(f"`target` must be 'eer' (or give `far=`); got {target!r}.")
    return equal_error_rate(distances, is_same)[1]


def pair_distances(embeddings, labels, metric="euclidean", max_pairs=DEFAULT_MAX_PAIRS, seed=0):
    """Distances and same-class flags of the pairs of a labelled set: `(distances, is_same)`.

    Every unordered pair `i < j` when there are at most `max_pairs` of them (computed by
    chunks of rows). Above that, `max_pairs` pairs `(i, j)`, `i != j`, are drawn
    uniformly at random with replacement (seeded by `seed`), so memory stays
    `O(max_pairs)`; with many classes, same-class pairs are then rare (about `1/C` of
    them). `max_pairs=None` always uses every pair.

    Example:

    >>> import numpy as np
    >>> d, same = pair_distances(np.array([[0.0], [1.0], [3.0]]), [0, 0, 1])
    >>> d.tolist(), same.tolist()
    ([1.0, 3.0, 2.0], [True, False, False])
    """
    check_metric(metric)
    x = check_embedding_array(embeddings, "`embeddings`")
    y = check_label_array(labels, len(x))
    codes, _ = _label_codes(y, y[:0])
    n = len(x)
    total = n * (n - 1) // 2
    if max_pairs is None or total <= max_pairs:
        rows = max(1, (1 << 22) // max(n, 1))
        dists, sames = [], []
        for start in range(0, n - 1, rows):
            stop = min(start + rows, n - 1)
            d = pairwise_distances_numpy(x[start:stop], x, metric)
            i = np.arange(start, stop)[:, None]
            upper = np.arange(n)[None, :] > i
            dists.append(d[upper])
            sames.append((codes[start:stop, None] == codes[None, :])[upper])
        if not dists:
            return np.zeros((0,)), np.zeros((0,), dtype=bool)
        return np.concatenate(dists), np.concatenate(sames)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=int(max_pairs))
    j = rng.integers(0, n - 1, size=int(max_pairs))
    j = j + (j >= i)
    dists = np.empty(int(max_pairs))
    step = 1 << 16
    for start in range(0, int(max_pairs), step):
        a = x[i[start : start + step]]
        b = x[j[start : start + step]]
        dists[start : start + step] = paired_distances_numpy(a, b, metric)
    return dists, codes[i] == codes[j]


def verification_metrics(
    embeddings, labels, metric="euclidean", max_pairs=DEFAULT_MAX_PAIRS, seed=0, fars=()
):
    """EER, its threshold and ROC AUC over the pairs of a labelled set.

    Pairs are every unordered pair `i < j` (or, above `max_pairs` pairs, a uniform random
    sample of `max_pairs` of them, see `pair_distances`); a pair's score is its distance
    (smaller means "same"). Needs at least one same-class and one different-class pair.

    Args:
        embeddings: `[N, D]` embeddings.
        labels: `[N]` class labels.
        metric: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or `"angular"`.
        max_pairs: the most pairs used; `None` for every pair whatever `N`.
        seed: seed of the pair sample (only used above `max_pairs`).
        fars: optional FAR values; adds `tar@far=<far>` for each.

    Returns:
        A dict of floats: `eer`, `eer_threshold`, `auc` (and `tar@far=...`), plus
        `num_pairs` (int).

    Example:

    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> m = verification_metrics(x, [0, 0, 1, 1])
    >>> m["eer"], m["auc"]
    (0.0, 1.0)
    """
    distances, is_same = pair_distances(embeddings, labels, metric, max_pairs, seed)
    far, tar, thresholds = roc_curve(distances, is_same)
    eer, threshold = _eer_from_curve(far, tar, thresholds)
    result = {
        "eer": eer,
        "eer_threshold": threshold,
        "auc": float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0)),
    }
    for f in fars:
        result[f"tar@far={f:g}"] = float(np.max(tar[far <= f]))
    result["num_pairs"] = int(distances.size)
    return result
