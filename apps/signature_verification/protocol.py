"""The writer-independent verification protocol: splits, the decision rule, FAR/FRR/EER/AUC.

**Writer-independent.** Writers are split into disjoint *train*, *validation* and *test*
sets (`writer_split`, seeded). The network learns on the train writers only; the
decision threshold is chosen on the validation writers only; FAR, FRR, EER and AUC are
measured on the test writers, never seen before.

**Decision rule.** A writer is enrolled with `R` genuine reference signatures (default
5, drawn at random per writer with a fixed seed). A questioned signature `q` gets the
score

    s(q, w) = mean over the references r of w of ‖f(q) − f(r)‖₂

where `f` is the L2-normalised embedding (so `0 ≤ s ≤ 2`); `rule="min"` uses the
smallest distance instead of the mean. The `-norm` rules (`"mean-norm"`, `"min-norm"`)
divide that distance by the writer's own spread, the mean distance between two of its
references,

    s(q, w) = mean_r ‖f(q) − f(r)‖₂ / mean_{r ≠ r'} ‖f(r) − f(r')‖₂

(writer-dependent score normalisation: a writer who signs consistently gets a tighter
acceptance region, a variable one a looser one, while the threshold stays global; it
needs only the references, no forgery of the writer). With a single reference there is
no spread and the `-norm` rules fall back to the plain distance. The `"calibrated"` rule
normalises the distance against a cohort of other writers shipped with the model and
combines such normalised scores in a logistic regression fitted on writers with
forgeries (`cohort.py`; `calibrate` writes it). A questioned signature is accepted as
genuine when `s(q, w) <= threshold`.

The command line's default is `"min"`: on the validation writers of the built-in data it
gave a lower EER against skilled forgeries than `"mean"` for every model tried
(9.0 % against 10.6 % for the shipped one); `"mean-norm"` was about as good (8.8 %)
but worse against random forgeries (1.4 % against 0.7 %).

**Threshold.** `threshold` is the equal-error-rate threshold of genuine versus *skilled*
forgery scores on the validation writers (`keras_triplet.metrics.choose_threshold`),
the harder of the two cases; it is then applied unchanged to the test writers.

**Scores of one set of writers.** For every writer `w` with more than `R` genuine
signatures:

- *genuine* queries: its genuine signatures that are not references;
- *skilled forgeries*: all its forgeries;
- *random forgeries*: the genuine signatures of every other writer, scored against `w`.

EER and AUC are computed over the pooled scores of all writers (one global threshold),
separately for genuine-vs-skilled and genuine-vs-random; FRR is the rejected genuine
queries, FAR the accepted forgeries (of each kind).

**Per-writer EER** (`per_writer_eer`): the EER of each writer's own scores (its genuine
queries against its forgeries), as if each writer had a threshold of its own; its mean,
median and worst value say how evenly the global figure is spread over the writers
(a global EER of 10 % can be every writer at 10 % or a few writers at 50 %). With few
queries per writer each value is coarse (5 genuine queries: steps of 20 %).

Example:

>>> import numpy as np
>>> emb = np.array([[1, 0], [1, 0.1], [0.9, 0], [0, 1], [0.1, 1], [0, 0.9]], float)
>>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
>>> s = verification_scores(emb, ["a"] * 3 + ["b"] * 3, [True] * 6, references=2)
>>> len(s["genuine"]), len(s["skilled"]), len(s["random"])
(2, 0, 6)
"""

import numpy as np

from apps.signature_verification.loaders import natural_key

RULES = ("mean", "min", "mean-norm", "min-norm", "calibrated")
_MIN_SPREAD = 1e-3  # floor of the references' spread (identical references)


def writer_split(writers, val_fraction=0.15, test_fraction=0.25, seed=0, min_each=1):
    """Splits writers into disjoint `{"train", "val", "test"}` lists (seeded, sorted).

    `val_fraction` / `test_fraction` of the writers (rounded, at least `min_each` each
    when positive) go to validation / test; the rest train.
    """
    writers = sorted(set(writers), key=natural_key)
    n = len(writers)
    n_val = max(min_each, int(round(val_fraction * n))) if val_fraction > 0 else 0
    n_test = max(min_each, int(round(test_fraction * n))) if test_fraction > 0 else 0
    if n - n_val - n_test < (1 if val_fraction + test_fraction < 1 else 0):
        raise ValueError(
            f"{n} writers are too few for a validation set of {n_val} and a test set of {n_test} "
            "writers plus training writers; add writers or lower the fractions."
        )
    order = np.random.default_rng(seed).permutation(n)
    val = [writers[i] for i in order[:n_val]]
    test = [writers[i] for i in order[n_val : n_val + n_test]]
    train = [writers[i] for i in order[n_val + n_test :]]
    return {k: sorted(v, key=natural_key) for k, v in (("train", train), ("val", val), ("test", test))}


def reference_indices(writers, genuine, references=5, seed=0):
    """For each writer, the indices of its `references` reference signatures.

    Chosen at random among the writer's genuine images (a generator seeded by `seed` and
    the writer's position in the sorted writer list), so the choice does not depend on
    the backend or on the other writers. Writers with at most `references` genuine images
    are left out (they would have no genuine query). Returns `{writer: indices}`.
    """
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    out = {}
    for k, w in enumerate(sorted(set(writers.tolist()), key=natural_key)):
        idx = np.nonzero((writers == w) & genuine)[0]
        if len(idx) <= references:
            continue
        rng = np.random.default_rng([seed, k])
        out[w] = np.sort(rng.choice(idx, size=references, replace=False))
    return out


def score_matrix(embeddings, reference_embeddings, rule="mean", calibration=None):
    """Scores `[N]` of `embeddings [N, D]` against one reference set `[R, D]` (see module;
    the `"calibrated"` rule needs the model's `calibration`, a `cohort.CohortCalibration`)."""
    from keras_triplet.metrics import (
        pairwise_distances_numpy,  # here: the CLI imports this module before Keras
    )

    _check_rule(rule, calibration)
    embeddings = np.asarray(embeddings, np.float64)
    if rule == "calibrated":
        return calibration.score(embeddings, reference_embeddings)
    return _rule_scores(
        pairwise_distances_numpy(embeddings, reference_embeddings), reference_embeddings, rule
    )


def part_distances(a, b, parts=None):
    """The Euclidean distances `[N, M]` between the rows of `a [N, D]` and `b [M, D]`; with
    `parts` (the widths of several embeddings side by side in each row, a fused model),
    one matrix per part, `[P, N, M]` (what a fused `cohort.CohortCalibration` takes)."""
    from keras_triplet.metrics import pairwise_distances_numpy

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if parts is None:
        return pairwise_distances_numpy(a, b)
    return np.stack([pairwise_distances_numpy(a[:, i:j], b[:, i:j]) for i, j in part_bounds(parts)])


def part_bounds(parts):
    """The column ranges `[(start, stop)]` of embeddings of widths `parts` side by side."""
    stops = np.cumsum(parts).tolist()
    return list(zip([0, *stops[:-1]], stops))


def _check_rule(rule, calibration=None):
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}.")
    if rule == "calibrated" and calibration is None:
        raise ValueError(
            "rule 'calibrated' needs the model's cohort calibration (`calibrate DATA --model MODEL` "
            "writes it); this model has none, use another --rule."
        )


def _rule_scores(d, reference_embeddings, rule):
    """Scores `[N]` from the distances `d [N, R]` to one writer's references."""
    score = d.mean(axis=1) if rule.startswith("mean") else d.min(axis=1)
    if rule.endswith("-norm"):
        score = score / reference_spread(reference_embeddings)
    return score


def reference_spread(reference_embeddings):
    """The mean distance between two different references (`[R, D]`), the divisor of the
    `-norm` rules; 1.0 for a single reference, at least `_MIN_SPREAD`."""
    from keras_triplet.metrics import pairwise_distances_numpy

    r = np.asarray(reference_embeddings, np.float64)
    if len(r) < 2:
        return 1.0
    d = pairwise_distances_numpy(r, r)
    return max(float(d[np.triu_indices(len(r), 1)].mean()), _MIN_SPREAD)


_BLOCK_ELEMENTS = 2**23  # distances computed at once by `verification_scores` (64 MB of float64)


def verification_scores(embeddings, writers, genuine, references=5, rule="mean", seed=0, calibration=None):
    """Scores of one set of writers: a dict of arrays `genuine`, `skilled`, `random`
    (the scores) and `genuine_writer`, `skilled_writer`, `random_writer` (the claimed
    writer of each), plus `writers` (those enrolled). The `"calibrated"` rule needs the
    model's `calibration` (`cohort.CohortCalibration`)."""
    _check_rule(rule, calibration)
    if rule == "calibrated":
        stats = calibration.query_stats(np.asarray(embeddings, np.float64))

        def score(d, reference_embeddings):
            return calibration.scores(d, reference_embeddings, stats)

        parts = calibration.parts if calibration.fused else None
    else:

        def score(d, reference_embeddings):
            return _rule_scores(d, reference_embeddings, rule)

        parts = None
    return writer_scores(embeddings, writers, genuine, references, seed, score, parts)


def writer_scores(embeddings, writers, genuine, references, seed, score, parts=None):
    """`verification_scores` with the scores of `score(d [N, R], references [R, D])`,
    the distances of every embedding to one writer's references: an array `[N]` (or
    `[N, F]`, F values per pair, as `cohort.fit_calibration` collects). With `parts`
    (a fused model's embedding widths) `d` is `[P, N, R]`, one matrix per part
    (`part_distances`)."""
    embeddings = np.asarray(embeddings, np.float64)
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    refs = reference_indices(writers, genuine, references, seed)
    if not refs:
        raise ValueError(
            f"no writer has more than references={references} genuine signatures, so there is "
            "nothing to verify; lower --references or add genuine signatures."
        )
    out = {
        k: [] for k in ("genuine", "skilled", "random", "genuine_writer", "skilled_writer", "random_writer")
    }
    # The distances to many writers' references at once: one matrix product per block of
    # writers instead of a thin one per writer (which made 400 writers take minutes).
    names = list(refs)
    block = max(1, _BLOCK_ELEMENTS // max(1, len(embeddings) * references))
    for i in range(0, len(names), block):
        group = names[i : i + block]
        d = part_distances(embeddings, embeddings[np.concatenate([refs[w] for w in group])], parts)
        for k, w in enumerate(group):
            ref = refs[w]
            scores = score(d[..., k * references : (k + 1) * references], embeddings[ref])
            own = writers == w
            is_ref = np.zeros(len(writers), bool)
            is_ref[ref] = True
            for key, mask in (
                ("genuine", own & genuine & ~is_ref),
                ("skilled", own & ~genuine),
                ("random", ~own & genuine),
            ):
                out[key].append(scores[mask])
                out[key + "_writer"].append(np.full(int(mask.sum()), w))
    result = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    result["writers"] = list(refs)
    return result


def _pairs(scores, kind):
    d = np.r_[scores["genuine"], scores[kind]]
    same = np.r_[np.ones(len(scores["genuine"]), bool), np.zeros(len(scores[kind]), bool)]
    return d, same


def choose_threshold(scores):
    """The EER threshold of genuine versus skilled forgeries (versus random forgeries
    when there are no skilled ones), to use on other writers."""
    from keras_triplet import metrics

    kind = "skilled" if len(scores["skilled"]) else "random"
    return float(metrics.choose_threshold(*_pairs(scores, kind)))


def summarize(scores, threshold):
    """EER, AUC (per forgery kind) and FAR / FRR at `threshold`: a dict of floats."""
    from keras_triplet import metrics

    result = {}
    for kind in ("skilled", "random"):
        if len(scores[kind]) == 0 or len(scores["genuine"]) == 0:
            result[f"eer_{kind}"] = result[f"auc_{kind}"] = result[f"far_{kind}"] = None
            continue
        d, same = _pairs(scores, kind)
        eer, eer_threshold = metrics.equal_error_rate(d, same)
        result[f"eer_{kind}"] = float(eer)
        result[f"eer_threshold_{kind}"] = float(eer_threshold)
        result[f"auc_{kind}"] = float(metrics.roc_auc(d, same))
        result[f"far_{kind}"] = float(np.mean(scores[kind] <= threshold))
    result["frr"] = float(np.mean(scores["genuine"] > threshold)) if len(scores["genuine"]) else None
    result["far"] = (
        result["far_skilled"] if result.get("far_skilled") is not None else result.get("far_random")
    )
    result["threshold"] = float(threshold)
    result["num_genuine"] = int(len(scores["genuine"]))
    result["num_skilled"] = int(len(scores["skilled"]))
    result["num_random"] = int(len(scores["random"]))
    result["num_writers"] = len(scores["writers"])
    return result


def per_writer_eer(scores, kind="skilled"):
    """The EER of each writer's genuine queries against its `kind` forgeries ("skilled"
    or "random"): `{"mean", "median", "worst", "num_writers"}` over the writers that have
    both (all None when none has)."""
    from keras_triplet import metrics

    eers = []
    for w in scores["writers"]:
        same = scores["genuine"][scores["genuine_writer"] == w]
        other = scores[kind][scores[f"{kind}_writer"] == w]
        if len(same) and len(other):
            d = np.r_[same, other]
            is_same = np.r_[np.ones(len(same), bool), np.zeros(len(other), bool)]
            eers.append(float(metrics.equal_error_rate(d, is_same)[0]))
    if not eers:
        return {"mean": None, "median": None, "worst": None, "num_writers": 0}
    return {
        "mean": float(np.mean(eers)),
        "median": float(np.median(eers)),
        "worst": float(np.max(eers)),
        "num_writers": len(eers),
    }
