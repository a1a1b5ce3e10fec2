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


# ---- ProxyAnchorLoss, ProxyNCALoss, ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss (issue 12, P3)
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


def _softmax_cross_entropy(logits, target):
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
        cos = [max(_cos(x[i], w[:, c * sub_centers + k]) for k in range(sub_centers)) for c in range(num_classes)]
        theta = math.acos(min(max(cos[labels[i]], -1.0), 1.0))
        target = math.cos(theta + m) if theta <= math.pi - m else math.cos(theta) - m * math.sin(m)
        logits = [scale * (target if c == labels[i] else cos[c]) for c in range(num_classes)]
        total += _softmax_cross_entropy(logits, labels[i])
    return total / len(x)


def cosface_loss(labels, embeddings, W, margin=0.35, scale=64.0):
    """Wang et al. 2018: softmax cross-entropy of s·(cos θ_c − m [c = y]), mean over the batch."""
    labels, x, w = _labels(labels), _emb(embeddings), _emb(W)
    total = 0.0
    for i in range(len(x)):
        logits = [scale * (_cos(x[i], w[:, c]) - (margin if c == labels[i] else 0.0)) for c in range(w.shape[1])]
        total += _softmax_cross_entropy(logits, labels[i])
    return total / len(x)


# ---- end P3
