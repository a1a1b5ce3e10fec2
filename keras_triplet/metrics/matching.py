"""Matching metrics: classify a query by its nearest indexed neighbour, or say "unknown".

A query is *matched* (accepted) when the distance `d` to its nearest indexed neighbour is
`<= threshold`; it then takes that neighbour's label. Over a calibration set, with
`correct` true where the nearest neighbour's label is the query's own:

| | matched (`d <= t`) | not matched (`d > t`) |
|---|---|---|
| nearest label correct | true positive `tp` | false negative `fn` |
| nearest label wrong | false positive `fp` | true negative `tn` |

- precision `tp / (tp + fp)` (1 when nothing is matched: no wrong match was made),
- recall `tp / (tp + fn)`, F1 their harmonic mean, accuracy `(tp + tn) / N`,
- FAR (false accept rate) `fp / (fp + tn)`, FRR (false reject rate) `fn / (tp + fn)`;

a rate whose denominator is 0 is 0. These are the counts TF Similarity's
`match_nearest` calibration uses. NumPy (float64), independent of the Keras backend.
"""

import numpy as np

MATCHING_METRICS = ("precision", "recall", "f1", "accuracy", "far", "frr")
# Targets on these are upper bounds (`far <= 0.01`); on the others lower bounds.
_ERROR_RATES = ("far", "frr")
# Metrics that only grow as the threshold grows: a target on them is met from some
# threshold up, and the smallest such threshold is the cautious choice. On the others
# (precision, F1, accuracy, FAR as an upper bound) the largest threshold that meets the
# target matches the most queries.
_GROW_WITH_THRESHOLD = ("recall", "frr")


def _as_curve_inputs(distances, correct):
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct).reshape(-1)
    if distances.shape != correct.shape:
        raise ValueError(
            f"`distances` has {distances.size} entries but `correct` has {correct.size}; "
            "give one flag per query."
        )
    if distances.size == 0:
        raise ValueError("Matching metrics need at least one query.")
    if np.any(np.isnan(distances)):
        raise ValueError("`distances` contains NaN.")
    return distances, correct.astype(bool)


def _rates(tp, fp, fn, tn):
    """The metrics of counts (arrays or scalars), as a dict of float64 arrays."""
    tp, fp, fn, tn = (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn, tn))

    def ratio(num, den, empty):
        safe = np.where(den > 0, den, 1.0)  # no division by zero, even where unused
        return np.where(den > 0, num / safe, empty)

    precision = ratio(tp, tp + fp, 1.0)
    recall = ratio(tp, tp + fn, 0.0)
    f1 = ratio(2 * precision * recall, precision + recall, 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
        "far": ratio(fp, fp + tn, 0.0),
        "frr": ratio(fn, tp + fn, 0.0),
    }


def matching_curve(distances, correct):
    """The matching metrics at every threshold: `(thresholds, metrics)`.

    `distances` `[N]`: each query's distance to its nearest indexed neighbour;
    `correct` `[N]`: whether that neighbour's label is the query's. `thresholds` are the
    distinct distances, increasing; `metrics` maps each name of `MATCHING_METRICS`, and
    `tp`, `fp`, `fn`, `tn`, to a `[T]` array (values at `distance <= thresholds[i]`).

    Example:

    >>> thr, m = matching_curve([0.1, 0.2, 0.4, 0.9], [True, True, False, True])
    >>> thr.tolist(), m["precision"].round(3).tolist(), m["recall"].round(3).tolist()
    ([0.1, 0.2, 0.4, 0.9], [1.0, 1.0, 0.667, 0.75], [0.333, 0.667, 0.667, 1.0])
    """
    distances, correct = _as_curve_inputs(distances, correct)
    order = np.argsort(distances, kind="stable")
    d, ok = distances[order], correct[order]
    ends = np.r_[np.nonzero(np.diff(d))[0], d.size - 1]  # last position of each distinct value
    tp = np.cumsum(ok)[ends]
    fp = (ends + 1) - tp
    fn = ok.sum() - tp
    tn = (~ok).sum() - fp
    metrics = _rates(tp, fp, fn, tn)
    metrics.update(tp=tp, fp=fp, fn=fn, tn=tn)
    return d[ends], metrics


def matching_metrics(distances, correct, threshold):
    """The matching metrics at one `threshold`: a dict of floats (and the four counts).

    Example:

    >>> m = matching_metrics([0.1, 0.2, 0.4, 0.9], [True, True, False, True], 0.3)
    >>> m["precision"], m["recall"], m["far"], m["frr"]
    (1.0, 0.6666666666666666, 0.0, 0.3333333333333333)
    """
    distances, correct = _as_curve_inputs(distances, correct)
    accepted = distances <= float(threshold)
    tp = int(np.sum(accepted & correct))
    fp = int(np.sum(accepted & ~correct))
    fn = int(np.sum(~accepted & correct))
    tn = int(np.sum(~accepted & ~correct))
    out = {k: float(v) for k, v in _rates(tp, fp, fn, tn).items()}
    out.update(tp=tp, fp=fp, fn=fn, tn=tn)
    return out


def check_matching_metric(name, what="metric"):
    if name not in MATCHING_METRICS:
        raise ValueError(f"Unknown matching {what} {name!r}; expected one of {MATCHING_METRICS}.")
    return name


def choose_cutpoints(thresholds, metrics, metric="f1", targets=None):
    """Distance thresholds chosen on a matching curve: `(cutpoints, unmet)`.

    `cutpoints["optimal"]` is the threshold that maximises `metric` (`"precision"`,
    `"recall"`, `"f1"` or `"accuracy"`; among ties the largest threshold). Each
    `targets` entry `name: value` adds `cutpoints[name]`: for `far` and `frr` a target is
    an upper bound (`far <= value`), for the others a lower bound; the threshold chosen is
    the largest that meets it, or for `recall` and `frr`, which only improve as the
    threshold grows, the smallest. Each cutpoint is a dict with `distance` and every
    metric at that threshold. `unmet` lists the targets no threshold meets (they get no
    cutpoint).

    Example:

    >>> thr, m = matching_curve([0.1, 0.2, 0.4, 0.9], [True, True, False, True])
    >>> cut, unmet = choose_cutpoints(thr, m, "f1", {"precision": 0.9, "recall": 0.99})
    >>> cut["precision"]["distance"], cut["recall"]["distance"], cut["optimal"]["distance"]
    (0.2, 0.9, 0.9)
    """
    check_matching_metric(metric, "calibration metric")
    if metric in _ERROR_RATES:
        raise ValueError(
            f"The calibration metric is maximised; {metric!r} is an error rate. Use "
            "'precision', 'recall', 'f1' or 'accuracy', and a target such as {'far': 0.01}."
        )
    thresholds = np.asarray(thresholds, dtype=np.float64)

    def cut_at(i):
        out = {"distance": float(thresholds[i])}
        out.update({name: float(metrics[name][i]) for name in MATCHING_METRICS})
        return out

    values = metrics[metric]
    best = int(np.flatnonzero(values == values.max())[-1])
    cutpoints, unmet = {"optimal": cut_at(best)}, []
    for name, target in dict(targets or {}).items():
        check_matching_metric(name, "target")
        target = float(target)
        meets = metrics[name] <= target if name in _ERROR_RATES else metrics[name] >= target
        where = np.flatnonzero(meets)
        if where.size == 0:
            unmet.append(name)
            continue
        cutpoints[name] = cut_at(int(where[0] if name in _GROW_WITH_THRESHOLD else where[-1]))
    return cutpoints, unmet
