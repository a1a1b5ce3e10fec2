"""An independent NumPy reference for the core of keras_triplet, used only by the tests.

Written from docs/semantics.md and the papers, deliberately naive: float64, explicit Python
loops over pairs and triplets, no vectorisation tricks, and no import of keras_triplet.
It is only ever run on small batches, so clarity wins over speed.

Every function takes plain NumPy arrays (labels ``[B]`` or ``[B, 1]``, embeddings ``[B, D]``)
and returns NumPy values.
"""

import math

import numpy as np

METRICS = ("euclidean", "squared_euclidean", "cosine", "angular", "minkowski")
TFA_METRICS = {"L2": "euclidean", "squared-L2": "squared_euclidean", "angular": "angular"}


# --------------------------------------------------------------------------- helpers


def _labels(labels):
    return np.asarray(labels).reshape(-1)


def _emb(embeddings):
    embeddings = np.asarray(embeddings, dtype=np.float64)
    assert embeddings.ndim == 2, embeddings.shape
    return embeddings


def is_positive_pair(labels, a, p):
    return a != p and labels[a] == labels[p]


def is_negative(labels, a, n):
    return labels[a] != labels[n]


def positives_of(labels, a):
    return [p for p in range(len(labels)) if is_positive_pair(labels, a, p)]


def negatives_of(labels, a):
    return [n for n in range(len(labels)) if is_negative(labels, a, n)]


def positive_pairs(labels):
    labels = _labels(labels)
    return [(a, p) for a in range(len(labels)) for p in positives_of(labels, a)]


def all_triplets(labels):
    labels = _labels(labels)
    return [(a, p, n) for a, p in positive_pairs(labels) for n in negatives_of(labels, a)]


def _first_argmax(values, indices):
    best = None
    for i in indices:
        if best is None or values[i] > values[best]:
            best = i
    return best


def _first_argmin(values, indices):
    best = None
    for i in indices:
        if best is None or values[i] < values[best]:
            best = i
    return best


# --------------------------------------------------------------------------- distances


def distance(u, v, metric="euclidean", p=None):
    """The distance between two vectors, from the table in docs/semantics.md."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    diff = u - v
    if metric == "euclidean":
        return math.sqrt(float(np.sum(diff * diff)))
    if metric == "squared_euclidean":
        return float(np.sum(diff * diff))
    if metric in ("cosine", "angular"):
        nu = math.sqrt(float(np.sum(u * u)))
        nv = math.sqrt(float(np.sum(v * v)))
        cos = 0.0 if nu == 0.0 or nv == 0.0 else float(np.dot(u, v)) / (nu * nv)
        d = 1.0 - cos
        return max(d, 0.0) if metric == "angular" else d
    if metric == "minkowski":
        assert p is not None and p >= 1, p
        return float(np.sum(np.abs(diff) ** p)) ** (1.0 / p)
    raise ValueError(f"reference: unknown metric {metric!r}")


def pairwise_distances(x, y=None, metric="euclidean", p=None):
    x = _emb(x)
    square = y is None
    y = x if square else _emb(y)
    out = np.zeros((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            if square and i == j:
                continue  # the diagonal of a square matrix is exactly 0
            out[i, j] = distance(x[i], y[j], metric, p)
    return out


# --------------------------------------------------------------------------- miners
#
# Each miner is first written as the list of (anchor, positive, negative) triplets it
# chooses; the [B, B] arrays of the miner contract are then read off that list.


def batch_all_triplets(labels, distances, margin=1.0, select="violating"):
    labels = _labels(labels)
    d = np.asarray(distances, dtype=np.float64)
    out = []
    for a, p in positive_pairs(labels):
        for n in negatives_of(labels, a):
            if select == "violating":
                keep = d[a, n] < d[a, p] + margin
            elif select == "hard":
                # At margin 0 a tie has zero loss and zero gradient: not mined.
                keep = d[a, n] <= d[a, p] if margin > 0 else d[a, n] < d[a, p]
            elif select == "semi-hard":
                keep = d[a, p] < d[a, n] < d[a, p] + margin
            else:
                raise ValueError(select)
            if keep:
                out.append((a, p, n))
    return out


def batch_hard_triplets(labels, distances):
    labels = _labels(labels)
    d = np.asarray(distances, dtype=np.float64)
    out = []
    for a in range(len(labels)):
        pos, neg = positives_of(labels, a), negatives_of(labels, a)
        if pos and neg:
            out.append((a, _first_argmax(d[a], pos), _first_argmin(d[a], neg)))
    return out


def semi_hard_triplets(labels, distances, fallback="farthest"):
    labels = _labels(labels)
    d = np.asarray(distances, dtype=np.float64)
    out = []
    for a, p in positive_pairs(labels):
        neg = negatives_of(labels, a)
        if not neg:
            continue
        farther = [n for n in neg if d[a, n] > d[a, p]]
        if farther:
            out.append((a, p, _first_argmin(d[a], farther)))
        elif fallback == "farthest":
            out.append((a, p, _first_argmax(d[a], neg)))
        elif fallback != "none":
            raise ValueError(fallback)
    return out


def triplets_to_arrays(triplets, distances):
    """The miner contract: pair_mask, negative_count, negative_distance_sum ([B, B])."""
    d = np.asarray(distances, dtype=np.float64)
    b = d.shape[0]
    pair_mask = np.zeros((b, b))
    count = np.zeros((b, b))
    dist_sum = np.zeros((b, b))
    for a, p, n in triplets:
        pair_mask[a, p] = 1.0
        count[a, p] += 1.0
        dist_sum[a, p] += d[a, n]
    return {"pair_mask": pair_mask, "negative_count": count, "negative_distance_sum": dist_sum}


def mine(labels, distances, miner="semi-hard", **kwargs):
    """Triplets chosen by a miner given by name: "batch-all", "batch-hard", "semi-hard"."""
    if miner == "batch-all":
        return batch_all_triplets(labels, distances, **kwargs)
    if miner == "batch-hard":
        return batch_hard_triplets(labels, distances)
    if miner == "semi-hard":
        return semi_hard_triplets(labels, distances, **kwargs)
    raise ValueError(miner)


def batch_all_miner(labels, distances, margin=1.0, select="violating"):
    return triplets_to_arrays(batch_all_triplets(labels, distances, margin, select), distances)


def batch_hard_miner(labels, distances):
    return triplets_to_arrays(batch_hard_triplets(labels, distances), distances)


def semi_hard_miner(labels, distances, fallback="farthest"):
    return triplets_to_arrays(semi_hard_triplets(labels, distances, fallback), distances)


def triplet_statistics(labels, distances, margin=1.0):
    labels = _labels(labels)
    d = np.asarray(distances, dtype=np.float64)
    triplets = all_triplets(labels)
    active = sum(1 for a, p, n in triplets if d[a, n] < d[a, p] + margin)
    hard = sum(1 for a, p, n in triplets if d[a, n] < d[a, p])
    pos = [d[a, p] for a, p in positive_pairs(labels)]
    b = len(labels)
    neg = [d[a, n] for a in range(b) for n in negatives_of(labels, a)]
    return {
        "active_fraction": active / len(triplets) if triplets else 0.0,
        "hard_fraction": hard / len(triplets) if triplets else 0.0,
        "positive_distance": float(np.mean(pos)) if pos else 0.0,
        "negative_distance": float(np.mean(neg)) if neg else 0.0,
    }


# --------------------------------------------------------------------------- losses


def _softplus(x):
    # log(1 + exp(x)) without overflow.
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def triplet_loss_from_distances(
    labels,
    d,
    margin=1.0,
    miner="semi-hard",
    soft_margin=False,
    average="auto",
    miner_kwargs=None,
):
    """TripletLoss on a precomputed distance matrix.

    `miner` is a name; for "batch-all" the miner's margin defaults to the loss margin and
    `select` to "violating" (both overridable in `miner_kwargs`, like a miner instance).
    """
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    miner_kwargs = dict(miner_kwargs or {})
    if miner == "batch-all":
        miner_kwargs.setdefault("margin", margin)
    triplets = mine(labels, d, miner, **miner_kwargs)
    if average == "auto":
        average = "nonzero" if miner == "batch-all" else "triplets"
    losses = []
    for a, p, n in triplets:
        if soft_margin:
            losses.append(_softplus(d[a, p] - d[a, n]))
        else:
            losses.append(max(d[a, p] - d[a, n] + margin, 0.0))
    if average == "triplets":
        count = len(losses)
    elif average == "nonzero":
        count = sum(1 for v in losses if v > 0.0)
    else:
        raise ValueError(average)
    return sum(losses) / count if count else 0.0


def triplet_loss(
    labels,
    embeddings,
    margin=1.0,
    distance="euclidean",
    miner="semi-hard",
    soft_margin=False,
    average="auto",
    p=None,
    miner_kwargs=None,
):
    d = pairwise_distances(embeddings, metric=distance, p=p)
    return triplet_loss_from_distances(labels, d, margin, miner, soft_margin, average, miner_kwargs)


def quadruplet_loss_from_distances(labels, d, margin=1.0, margin2=0.5):
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    b = len(labels)
    terms = []
    for a in range(b):
        pos, neg = positives_of(labels, a), negatives_of(labels, a)
        if not (pos and neg):
            continue
        d_ap = max(d[a, q] for q in pos)
        d_an = min(d[a, n] for n in neg)
        term = max(d_ap - d_an + margin, 0.0)
        others = [
            d[l, k]
            for l in range(b)
            for k in range(b)
            if labels[l] != labels[k] and labels[l] != labels[a] and labels[k] != labels[a]
        ]
        if others:
            term += max(d_ap - min(others) + margin2, 0.0)
        terms.append(term)
    return sum(terms) / len(terms) if terms else 0.0


def quadruplet_loss(labels, embeddings, margin=1.0, margin2=0.5, distance="euclidean", p=None):
    d = pairwise_distances(embeddings, metric=distance, p=p)
    return quadruplet_loss_from_distances(labels, d, margin, margin2)


def l2_normalize(embeddings):
    x = _emb(embeddings)
    out = np.zeros_like(x)
    for i in range(len(x)):
        norm = math.sqrt(float(np.sum(x[i] * x[i])))
        if norm > 0:
            out[i] = x[i] / norm
    return out


def angular_loss(labels, embeddings, alpha=40.0):
    """Wang et al. 2017, N-pair form (as pytorch-metric-learning computes it)."""
    labels = _labels(labels)
    x = l2_normalize(embeddings)
    t2 = math.tan(math.radians(alpha)) ** 2
    terms = []
    for a, p in positive_pairs(labels):
        s = 0.0
        for n in negatives_of(labels, a):
            s += math.exp(
                4.0 * t2 * float(np.dot(x[a] + x[p], x[n])) - 2.0 * (1.0 + t2) * float(np.dot(x[a], x[p]))
            )
        terms.append(math.log1p(s))
    return sum(terms) / len(terms) if terms else 0.0


# --------------------------------------------------------------------------- tensorflow-addons


def _tfa_distances(embeddings, distance_metric):
    if callable(distance_metric):
        return np.asarray(distance_metric(_emb(embeddings)), dtype=np.float64)
    if distance_metric == "angular":
        # tensorflow-addons does not zero this diagonal: a zero embedding is at distance 1
        # from itself, which its corner cases (row minimum / maximum) can read.
        return pairwise_distances(embeddings, embeddings, metric="angular")
    return pairwise_distances(embeddings, metric=TFA_METRICS[distance_metric])


def tfa_semihard_from_distances(labels, d, margin=1.0):
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    pairs = positive_pairs(labels)
    total = 0.0
    for a, p in pairs:
        neg = negatives_of(labels, a)
        if not neg:
            # tensorflow-addons' value in a single-class batch: the row's minimum, that is
            # the self-distance (0, except for a zero embedding under "angular").
            d_an = min(d[a, j] for j in range(len(labels)))
        else:
            farther = [n for n in neg if d[a, n] > d[a, p]]
            d_an = min(d[a, n] for n in farther) if farther else max(d[a, n] for n in neg)
        total += max(d[a, p] - d_an + margin, 0.0)
    return total / len(pairs) if pairs else 0.0  # tensorflow-addons: NaN; we: 0


def tfa_triplet_semihard_loss(labels, embeddings, margin=1.0, distance_metric="L2"):
    return tfa_semihard_from_distances(labels, _tfa_distances(embeddings, distance_metric), margin)


def tfa_hard_from_distances(labels, d, margin=1.0, soft=False):
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    b = len(labels)
    terms = []
    for a in range(b):
        pos, neg = positives_of(labels, a), negatives_of(labels, a)
        # Without a positive: the row's minimum (the self-distance, normally 0).
        d_ap = max(d[a, q] for q in pos) if pos else min(d[a, j] for j in range(b))
        d_an = min(d[a, n] for n in neg) if neg else max(d[a, j] for j in range(b))
        terms.append(_softplus(d_ap - d_an) if soft else max(d_ap - d_an + margin, 0.0))
    return sum(terms) / len(terms)


def tfa_triplet_hard_loss(labels, embeddings, margin=1.0, soft=False, distance_metric="L2"):
    return tfa_hard_from_distances(labels, _tfa_distances(embeddings, distance_metric), margin, soft)


# --------------------------------------------------------------------------- test helpers


def numerical_gradient(fn, x, eps=1e-6):
    """Central finite differences of a scalar function of a float64 array."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = fn(x)
        x[idx] = old - eps
        down = fn(x)
        x[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def comparison_gap(distances, margins=(), rows_only=True):
    """The smallest gap between two comparisons a loss or miner could make.

    Differences between off-diagonal distances (within each anchor's row, or across the
    whole matrix with ``rows_only=False``), also shifted by each margin (which covers the
    hinge ``d_ap - d_an + m`` against 0). When it is tiny, float32 and float64 may disagree
    on a selection, so tests skip such inputs. Exact zeros (the same value, such as
    ``d[i, j]`` against itself) are not comparisons that can flip and are ignored.
    """
    d = np.asarray(distances, dtype=np.float64)
    b = d.shape[0]
    rows = [[d[i, j] for j in range(b) if j != i] for i in range(b)]
    groups = rows if rows_only else [[v for row in rows for v in row]]
    best = math.inf
    for values in groups:
        values = np.asarray(values)
        if values.size == 0:
            continue
        diff = values[:, None] - values[None, :]
        off = ~np.eye(len(values), dtype=bool)
        candidates = [np.abs(diff[off])] + [np.abs(diff + m).ravel() for m in margins]
        gaps = np.concatenate(candidates)
        gaps = gaps[gaps > 0.0]
        if gaps.size:
            best = min(best, float(gaps.min()))
    return best


# --------------------------------------------------------------------------- circle, lifted structure, N-pairs, NT-Xent, SupCon
#
# Written from docs/semantics.md (and pytorch-metric-learning 2.9's definitions): every
# function takes a [B, R] matrix `d` ("smaller is closer": a distance, or minus a
# similarity), the batch labels, and optionally `ref_labels` ([R], the first B columns are
# the batch, a label < 0 is an empty slot) and `keep(a, j, is_positive, d_aj)`, a pair
# miner's choice. Sums run over explicit Python lists of pairs.


def pair_lists(labels, d, ref_labels=None, keep=None):
    """`(positives, negatives)`: for each anchor `a` of the batch, the lists of the columns
    `j` that form a (kept) positive / negative pair with it."""
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    refs = labels if ref_labels is None else _labels(ref_labels)
    positives, negatives = [], []
    for a in range(len(labels)):
        pos, neg = [], []
        for j in range(len(refs)):
            if refs[j] < 0 and ref_labels is not None:
                continue
            if refs[j] == labels[a] and j != a:
                if keep is None or keep(a, j, True, d[a, j]):
                    pos.append(j)
            elif refs[j] != labels[a]:
                if keep is None or keep(a, j, False, d[a, j]):
                    neg.append(j)
        positives.append(pos)
        negatives.append(neg)
    return positives, negatives


def _logsumexp(values):
    """log Σ exp(values), 0 for an empty list (pytorch-metric-learning's convention)."""
    if not values:
        return 0.0
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _mean_nonzero(values):
    kept = [v for v in values if v > 0]
    return sum(kept) / len(kept) if kept else 0.0


def _has_pairs(positives, negatives):
    return any(positives) and any(negatives)


def circle_loss_from_distances(labels, d, m=0.4, gamma=80.0, ref_labels=None, keep=None, weights_from=None):
    """Sun et al. 2020 on cosine distances `d = 1 − s`: softplus of the two log-sum-exps
    per anchor with a positive and a negative; mean of the terms > 0. The weights
    `[·]₊` are read from `weights_from` (another distance matrix) when given: the paper
    does not differentiate them, so a finite-difference gradient holds them fixed."""
    positives, negatives = pair_lists(labels, d, ref_labels, keep)
    s = 1.0 - np.asarray(d, dtype=np.float64)
    w = s if weights_from is None else 1.0 - np.asarray(weights_from, dtype=np.float64)
    terms = []
    for a, (pos, neg) in enumerate(zip(positives, negatives)):
        if not pos or not neg:
            continue
        lp = _logsumexp([-gamma * max(1.0 + m - w[a, j], 0.0) * (s[a, j] - (1.0 - m)) for j in pos])
        ln = _logsumexp([gamma * max(w[a, j] + m, 0.0) * (s[a, j] - m) for j in neg])
        terms.append(_softplus(lp + ln))
    return _mean_nonzero(terms)


def circle_loss(labels, embeddings, m=0.4, gamma=80.0, keep=None, weights_at=None):
    """`weights_at`: embeddings whose similarities give the (fixed) weights."""
    fixed = None if weights_at is None else pairwise_distances(weights_at, metric="cosine")
    d = pairwise_distances(embeddings, metric="cosine")
    return circle_loss_from_distances(labels, d, m, gamma, keep=keep, weights_from=fixed)


def lifted_structure_loss_from_distances(
    labels, d, neg_margin=1.0, pos_margin=0.0, ref_labels=None, keep=None
):
    """Oh Song et al. 2016 as pytorch-metric-learning: per positive pair (a, p), the
    negatives of a and (when p is in the batch) of p; ½ relu(·)²; mean over the pairs."""
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    positives, negatives = pair_lists(labels, d, ref_labels, keep)
    if not _has_pairs(positives, negatives):
        return 0.0
    terms = []
    for a, pos in enumerate(positives):
        for p in pos:
            rows = [a] + ([p] if p < len(labels) else [])
            pooled = [neg_margin - d[i, n] for i in rows for n in negatives[i]]
            terms.append(max(_logsumexp(pooled) + d[a, p] - pos_margin, 0.0) ** 2 / 2.0)
    return sum(terms) / len(terms)


def lifted_structure_loss(
    labels, embeddings, neg_margin=1.0, pos_margin=0.0, distance="euclidean", keep=None
):
    d = pairwise_distances(embeddings, metric=distance)
    return lifted_structure_loss_from_distances(labels, d, neg_margin, pos_margin, keep=keep)


def generalized_lifted_structure_loss_from_distances(
    labels, d, neg_margin=1.0, pos_margin=0.0, ref_labels=None, keep=None
):
    """Hermans et al. 2017, page 4: per anchor, relu(log Σ_p e^{d − pos_margin} +
    log Σ_n e^{neg_margin − d}), an empty sum giving 0; mean over the B anchors."""
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    positives, negatives = pair_lists(labels, d, ref_labels, keep)
    terms = []
    for a in range(len(labels)):
        lp = _logsumexp([d[a, j] - pos_margin for j in positives[a]])
        ln = _logsumexp([neg_margin - d[a, j] for j in negatives[a]])
        terms.append(max(lp + ln, 0.0))
    return sum(terms) / len(terms)


def generalized_lifted_structure_loss(
    labels, embeddings, neg_margin=1.0, pos_margin=0.0, distance="euclidean", keep=None
):
    d = pairwise_distances(embeddings, metric=distance)
    return generalized_lifted_structure_loss_from_distances(labels, d, neg_margin, pos_margin, keep=keep)


def ntxent_loss_from_distances(labels, d, temperature=0.07, ref_labels=None, keep=None):
    """van den Oord 2018 / Chen et al. 2020 as pytorch-metric-learning: per positive pair,
    −log softmax of s_ap/τ against s_an/τ over the anchor's negatives (s = −d); mean over
    the pairs; 0 without a positive or a negative pair."""
    d = np.asarray(d, dtype=np.float64)
    positives, negatives = pair_lists(labels, d, ref_labels, keep)
    if not _has_pairs(positives, negatives):
        return 0.0
    terms = []
    for a, pos in enumerate(positives):
        for p in pos:
            logits = [-d[a, p] / temperature] + [-d[a, n] / temperature for n in negatives[a]]
            terms.append(_logsumexp(logits) - logits[0])
    return sum(terms) / len(terms)


def ntxent_loss(labels, embeddings, temperature=0.07, distance="cosine", keep=None):
    return ntxent_loss_from_distances(
        labels, pairwise_distances(embeddings, metric=distance), temperature, keep=keep
    )


def supcon_loss_from_distances(labels, d, temperature=0.1, ref_labels=None, keep=None):
    """Khosla et al. 2020 ("out" form) as pytorch-metric-learning: per anchor, the mean
    over its positives of −log softmax over its positives and negatives (s = −d); mean
    of the terms > 0; 0 without a positive or a negative pair."""
    d = np.asarray(d, dtype=np.float64)
    positives, negatives = pair_lists(labels, d, ref_labels, keep)
    if not _has_pairs(positives, negatives):
        return 0.0
    terms = []
    for a, (pos, neg) in enumerate(zip(positives, negatives)):
        if not pos:
            continue
        denominator = _logsumexp([-d[a, j] / temperature for j in pos + neg])
        terms.append(-sum(-d[a, p] / temperature - denominator for p in pos) / len(pos))
    return _mean_nonzero(terms)


def supcon_loss(labels, embeddings, temperature=0.1, distance="cosine", keep=None):
    return supcon_loss_from_distances(
        labels, pairwise_distances(embeddings, metric=distance), temperature, keep=keep
    )


def dot_products(embeddings):
    x = _emb(embeddings)
    return np.array([[float(np.dot(x[i], x[j])) for j in range(len(x))] for i in range(len(x))])


def npairs_loss_from_distances(labels, d, keep=None):
    """Sohn 2016 as pytorch-metric-learning: per class, its first (kept) positive pair in
    row-major order; each anchor classified among the chosen positives (logits −d); mean."""
    labels = _labels(labels)
    d = np.asarray(d, dtype=np.float64)
    positives, _ = pair_lists(labels, d, keep=keep)
    chosen = {}
    for a, pos in enumerate(positives):
        if pos and labels[a] not in chosen:
            chosen[labels[a]] = (a, pos[0])
    pairs = list(chosen.values())
    terms = []
    for a, p in pairs:
        logits = [-d[a, q] for _, q in pairs]
        terms.append(_logsumexp(logits) + d[a, p])
    return sum(terms) / len(terms) if terms else 0.0


def npairs_loss(labels, embeddings, distance="dot", keep=None):
    d = -dot_products(embeddings) if distance == "dot" else pairwise_distances(embeddings, metric=distance)
    return npairs_loss_from_distances(labels, d, keep=keep)


# --------------------------------------------------------------------------- contrastive, multi-similarity, pair miners, tfa pair losses
#
# Pair losses take optional ``ref_labels`` (cross-batch memory: the first B references are
# the batch itself, a label < 0 is an empty slot) and an optional miner function
# ``miner(labels, d, ref_labels) -> (positive_pairs, negative_pairs)`` (lists of (a, j)).


def _ref_labels(labels, ref_labels):
    return labels if ref_labels is None else np.asarray(ref_labels).reshape(-1)


def all_pairs(labels, ref_labels=None):
    """Every ordered positive pair (a, j), j not a, and every negative pair (a, j)."""
    labels = _labels(labels)
    refs = _ref_labels(labels, ref_labels)
    positive, negative = [], []
    for a in range(len(labels)):
        for j in range(len(refs)):
            if refs[j] < 0 and ref_labels is not None:
                continue
            if refs[j] == labels[a]:
                if j != a:
                    positive.append((a, j))
            else:
                negative.append((a, j))
    return positive, negative


def pair_margin_miner(labels, d, ref_labels=None, pos_margin=0.2, neg_margin=0.8):
    """Positive pairs with d > pos_margin, negative pairs with d < neg_margin."""
    positive, negative = all_pairs(labels, ref_labels)
    return [q for q in positive if d[q] > pos_margin], [q for q in negative if d[q] < neg_margin]


def multi_similarity_miner(labels, d, ref_labels=None, epsilon=0.1):
    """Wang et al. 2019, on distances: a positive (a, p) is kept when d_ap + ε exceeds the
    anchor's closest negative, a negative (a, n) when d_an − ε is below its farthest
    positive."""
    positive, negative = _by_anchor(labels, *all_pairs(labels, ref_labels))
    kept_positive, kept_negative = [], []
    for a in range(len(_labels(labels))):
        pos, neg = positive[a], negative[a]
        if not pos or not neg:
            continue
        closest_negative = min(d[q] for q in neg)
        farthest_positive = max(d[q] for q in pos)
        kept_positive += [q for q in pos if d[q] + epsilon > closest_negative]
        kept_negative += [q for q in neg if d[q] - epsilon < farthest_positive]
    return kept_positive, kept_negative


def _by_anchor(labels, positive, negative):
    """The pair lists grouped by anchor: ({a: [(a, j), ...]}, {a: [...]})."""
    b = len(_labels(labels))
    pos, neg = {a: [] for a in range(b)}, {a: [] for a in range(b)}
    for q in positive:
        pos[q[0]].append(q)
    for q in negative:
        neg[q[0]].append(q)
    return pos, neg


def _mined(labels, d, ref_labels, miner):
    if miner is None:
        return all_pairs(labels, ref_labels)
    return miner(labels, d, ref_labels)


def contrastive_loss_from_distances(
    labels, d, pos_margin=0.0, neg_margin=1.0, average="nonzero", ref_labels=None, miner=None
):
    """Hadsell et al. 2006 in pytorch-metric-learning's form: mean (over nonzero terms, or
    all pairs) of max(d_ap − pos_margin, 0) plus the same of max(neg_margin − d_an, 0)."""
    positive, negative = _mined(labels, d, ref_labels, miner)

    def mean(values):
        counted = [v for v in values if v > 0] if average == "nonzero" else values
        return sum(values) / len(counted) if counted else 0.0

    return mean([max(d[q] - pos_margin, 0.0) for q in positive]) + mean(
        [max(neg_margin - d[q], 0.0) for q in negative]
    )


def contrastive_loss(
    labels, embeddings, pos_margin=0.0, neg_margin=1.0, distance="euclidean", average="nonzero"
):
    d = pairwise_distances(embeddings, metric=distance)
    return contrastive_loss_from_distances(labels, d, pos_margin, neg_margin, average)


def multi_similarity_loss_from_distances(
    labels, d, alpha=2.0, beta=50.0, base=0.5, similarity=True, ref_labels=None, miner=None
):
    """Wang et al. 2019: mean over the B anchors of
    1/α log(1 + Σ_p exp(−α (s_ap − base))) + 1/β log(1 + Σ_n exp(β (s_an − base))),
    s = 1 − d for a cosine distance; on a distance proper, exp(α (d_ap − base)) and
    exp(β (base − d_an))."""
    positive, negative = _by_anchor(labels, *_mined(labels, d, ref_labels, miner))
    b = len(_labels(labels))
    total = 0.0
    for a in range(b):
        if similarity:
            pos = [-alpha * ((1.0 - d[q]) - base) for q in positive[a]]
            neg = [beta * ((1.0 - d[q]) - base) for q in negative[a]]
        else:
            pos = [alpha * (d[q] - base) for q in positive[a]]
            neg = [beta * (base - d[q]) for q in negative[a]]
        for exponents, weight in ((pos, alpha), (neg, beta)):
            if exponents:
                m = max(0.0, max(exponents))
                total += (m + math.log(math.exp(-m) + sum(math.exp(z - m) for z in exponents))) / weight
    return total / b


def multi_similarity_loss(labels, embeddings, alpha=2.0, beta=50.0, base=0.5, distance="cosine"):
    d = pairwise_distances(embeddings, metric=distance)
    return multi_similarity_loss_from_distances(
        labels, d, alpha, beta, base, similarity=distance in ("cosine", "angular")
    )


def tfa_contrastive_loss(y_true, y_pred, margin=1.0):
    """tensorflow-addons: per pair, y·d² + (1 − y)·max(margin − d, 0)²."""
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    d = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    return np.array([yi * di * di + (1.0 - yi) * max(margin - di, 0.0) ** 2 for yi, di in zip(y, d)])


def tfa_lifted_struct_loss(labels, embeddings, margin=1.0):
    """Song et al. 2016 as tensorflow-addons computes it: for each unordered positive pair
    {i, j}, J = log(Σ_{k neg of i} exp(m − d_ik) + Σ_{k neg of j} exp(m − d_jk)) + d_ij;
    the loss is Σ max(J, 0)² / (2 · #pairs). No positive pair, or a pair whose members
    have no negative: that pair gives 0 (tensorflow-addons: NaN), and so does the batch."""
    labels = _labels(labels)
    d = pairwise_distances(embeddings)
    b = len(labels)
    total, count = 0.0, 0
    for i in range(b):
        for j in range(i + 1, b):
            if labels[i] != labels[j]:
                continue
            count += 1
            exponents = [margin - d[i, k] for k in range(b) if labels[k] != labels[i]]
            exponents += [margin - d[j, k] for k in range(b) if labels[k] != labels[j]]
            if exponents:  # log Σ exp, its largest term factored out (1e4-scale batches)
                m = max(exponents)
                log_sum = m + math.log(sum(math.exp(z - m) for z in exponents))
                total += max(log_sum + d[i, j], 0.0) ** 2
    return total / (2.0 * count) if count else 0.0


def _softmax_cross_entropy(logits, target):
    m = max(logits)
    lse = m + math.log(sum(math.exp(v - m) for v in logits))
    return sum(t * (lse - v) for t, v in zip(target, logits))


def tfa_npairs_loss(labels, similarity):
    """tensorflow-addons: mean over rows i of the softmax cross-entropy between the
    logits similarity[i] and the target y_ij = [y_i == y_j] / #{j: y_i == y_j}."""
    labels = _labels(labels)
    s = np.asarray(similarity, dtype=np.float64)
    rows = []
    for i in range(len(labels)):
        same = [1.0 if labels[j] == labels[i] else 0.0 for j in range(len(labels))]
        rows.append(_softmax_cross_entropy(list(s[i]), [v / sum(same) for v in same]))
    return sum(rows) / len(rows)


def tfa_npairs_multilabel_loss(y_true, similarity):
    """tensorflow-addons: as tfa_npairs_loss with target row i ∝ |labels(i) ∩ labels(j)|.
    A row without any label gives 0 (tensorflow-addons: NaN)."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(similarity, dtype=np.float64)
    rows = []
    for i in range(len(y)):
        counts = [float(np.dot(y[i], y[j])) for j in range(len(y))]
        total = sum(counts)
        rows.append(_softmax_cross_entropy(list(s[i]), [c / total for c in counts]) if total > 0 else 0.0)
    return sum(rows) / len(rows)


# --------------------------------------------------------------------------- proxy and margin-softmax losses
# From the papers (and PML's reductions), loops over examples and classes, float64.


def _unit(v):
    n = math.sqrt(float(np.dot(v, v)))
    return v / n if n > 0 else v * 0.0


def _cos(u, v):
    return float(np.dot(_unit(u), _unit(v)))


def proxy_anchor_loss(labels, embeddings, proxies, margin=0.1, alpha=32.0):
    """Kim et al. 2020: mean over the proxies of classes in the batch of
    log(1 + Σ_{i in class} exp(−α(s − δ))) + mean over all proxies of
    log(1 + Σ_{i not in class} exp(α(s + δ)))."""
    labels, x, p = _labels(labels), _emb(embeddings), _emb(proxies)
    pos_total, neg_total, present = 0.0, 0.0, 0
    for c in range(len(p)):
        members = [i for i in range(len(x)) if labels[i] == c]
        others = [i for i in range(len(x)) if labels[i] != c]
        if members:
            present += 1
            pos_total += math.log1p(sum(math.exp(-alpha * (_cos(x[i], p[c]) - margin)) for i in members))
        if others:
            neg_total += math.log1p(sum(math.exp(alpha * (_cos(x[i], p[c]) + margin)) for i in others))
    return pos_total / max(present, 1) + neg_total / len(p)


def proxy_nca_loss(labels, embeddings, proxies, softmax_scale=1.0):
    """Movshovitz-Attias et al. 2017: mean over the batch of −log softmax_c(−s‖x̂ − p̂_c‖²)[y]."""
    labels, x, p = _labels(labels), _emb(embeddings), _emb(proxies)
    total = 0.0
    for i in range(len(x)):
        logits = [-softmax_scale * float(np.sum((_unit(x[i]) - _unit(p[c])) ** 2)) for c in range(len(p))]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(v - top) for v in logits))
        total += log_z - logits[labels[i]]
    return total / len(x)


def _cross_entropy_of_class(logits, target):
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[target]


def arcface_loss(labels, embeddings, W, margin=28.6, scale=64.0, sub_centers=1):
    """Deng et al. 2019 (2020 with sub-centres): softmax cross-entropy of s·cos(θ_y + m)
    (s·(cos θ_y − m sin m) past θ_y = π − m) and s·cos θ_c, mean over the batch;
    cos θ_c is the largest over class c's sub-centres (columns c·K + k of W)."""
    labels, x, w = _labels(labels), _emb(embeddings), _emb(W)
    m = math.radians(margin)
    num_classes = w.shape[1] // sub_centers
    total = 0.0
    for i in range(len(x)):
        cos = [
            max(_cos(x[i], w[:, c * sub_centers + k]) for k in range(sub_centers)) for c in range(num_classes)
        ]
        theta = math.acos(min(max(cos[labels[i]], -1.0), 1.0))
        target = math.cos(theta + m) if theta <= math.pi - m else math.cos(theta) - m * math.sin(m)
        logits = [scale * (target if c == labels[i] else cos[c]) for c in range(num_classes)]
        total += _cross_entropy_of_class(logits, labels[i])
    return total / len(x)


def cosface_loss(labels, embeddings, W, margin=0.35, scale=64.0):
    """Wang et al. 2018: softmax cross-entropy of s·(cos θ_c − m [c = y]), mean over the batch."""
    labels, x, w = _labels(labels), _emb(embeddings), _emb(W)
    total = 0.0
    for i in range(len(x)):
        logits = [
            scale * (_cos(x[i], w[:, c]) - (margin if c == labels[i] else 0.0)) for c in range(w.shape[1])
        ]
        total += _cross_entropy_of_class(logits, labels[i])
    return total / len(x)
