"""Cohort score calibration: the `"calibrated"` decision rule (`protocol.RULES`).

**Why.** One global threshold needs every writer's distances on one scale, and they are
not: a learned metric separates each writer's forgeries better than HOG (a lower
per-writer EER) but spreads the writers' distance scales, so with one threshold it loses
(README, "Tried: the HOG metric on the varied population"). Dividing by the references'
own spread (`min-norm`) fixes that only in part.

**What.** Score normalisation against a *cohort*, as in speaker verification (Auckenthaler
et al. 2000, "Score normalization for text-independent speaker verification systems"):
`K` cohort writers, other people's genuine signatures that ship with the model
(`MODEL.keras.cohort.npz`, `K × R` embeddings), give

- Z-norm: `z = (s − μ_w) / σ_w`, with `μ_w, σ_w` the mean and standard deviation of the
  cohort signatures' scores against writer `w`'s references (how close an impostor gets
  to this writer);
- T-norm: `t = (s − μ_q) / σ_q`, over the query's scores against the cohort writers'
  reference sets (how close this query gets to anyone);

and, from the references alone, their spread (mean distance between two of them) and
`ρ_w`, the mean distance from a reference to its nearest other reference (how far a
genuine signature usually is). The score of a questioned signature `q` against writer
`w`, with `s` the smallest distance to the references and `m` the mean one, is a
logistic regression over eight such normalised scores,

    x = (s, m, s / spread, s / ρ_w, z, t, (s − ρ_w) / (μ_w − ρ_w), (s − μ_q) / (μ_q − ρ_w))
    score(q, w) = −(a · (x − mean) / scale + b)

fitted (`fit_calibration`) on writers *with* skilled forgeries, none of them in the
cohort: genuine queries against skilled and (a sample of, weighted 0.2) random forgeries.
The score is a negated log-odds: lower means more likely genuine, so, as for every rule,
a questioned signature is accepted when `score <= threshold`. The `calibrate` command fits
it for a saved model; it needs no forgery of the enrolled writers. A fused calibration (two
models' embeddings) also holds the first model's own regression as a veto
(`CohortCalibration`, "Guard").

Example (two writers' references; the cohort of two others):

>>> rng = np.random.default_rng(0)
>>> centres = rng.normal(size=(8, 16))
>>> emb = np.repeat(centres, 6, axis=0) + 0.1 * rng.normal(size=(48, 16))
>>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
>>> writers = np.repeat(np.arange(8).astype(str), 6)
>>> cal = fit_calibration(emb, writers, np.ones(48, bool), references=3, cohort_writers=2)
>>> cal.cohort.shape
(2, 3, 16)
>>> genuine, impostor = cal.score(emb[1:2], emb[2:5]), cal.score(emb[7:8], emb[2:5])
>>> bool(genuine[0] < impostor[0])
True
"""

import os

import numpy as np

from apps.signature_verification import protocol

FEATURES = ("min", "mean", "min/spread", "min/nearest", "z", "t", "z-affine", "t-affine")
COHORT_SUFFIX = ".cohort.npz"
COHORT_FORMAT = "keras-triplet/signature-cohort/1"
# A fused calibration (several embeddings of the same images, `parts` > 1): another format,
# so that a reader of the single-embedding format refuses it rather than misreads it.
FUSED_FORMAT = "keras-triplet/signature-cohort-fused/1"
# A fused calibration with the first model's own regression as a veto (`guard`): a third
# format, so that a reader of the second one refuses it rather than scores without the veto.
GUARDED_FORMAT = "keras-triplet/signature-cohort-fused-guarded/1"
_FLOOR = 1e-3  # the smallest spread / standard deviation divided by (identical references)


def cohort_path(model_path):
    """`MODEL.keras.cohort.npz`, the calibration beside `MODEL.keras`."""
    return os.fspath(model_path) + COHORT_SUFFIX


def _distances(a, b):
    from keras_triplet.metrics import pairwise_distances_numpy

    return pairwise_distances_numpy(np.asarray(a, np.float64), np.asarray(b, np.float64))


class CohortCalibration:
    """The `"calibrated"` rule's cohort (`[K, R, D]` reference embeddings of `K` cohort
    writers) and logistic regression (`mean`, `scale`, `weights` over `FEATURES`, `bias`).

    **Fusion.** With `parts` (the widths of several embeddings of the same images, side by
    side in each `D = sum(parts)` row: `model.FusedModel`), each part gets the eight
    features of its own distances and cohort statistics, and one regression weighs all
    `8 * len(parts)` of them (score-level fusion). The distances `d` that `features` and
    `scores` take are then `[P, N, R]`, one `[N, R]` per part (`protocol.part_distances`),
    and `query_stats` gives one pair of statistics per part.

    **Guard.** A fused calibration may hold a second regression (`guard`: its weights over
    the same standardised features, zero outside the first part, and its bias): the first
    model's own calibrated score. The score is then the larger of the two negated
    log-odds, so a signature is accepted only when the fused score *and* the first model
    alone accept it: the partner can veto, never let through what the first model rejects.
    Why: the shipped partner (the CNN) does not transfer to other populations, and its
    errors on random forgeries, which the HOG metric alone almost never makes, came
    through the fused regression (README, "The random-forgery guard")."""

    def __init__(self, cohort, mean, scale, weights, bias, references, parts=None, guard=None):
        self.cohort = np.asarray(cohort, np.float32)
        self.mean, self.scale, self.weights = (np.asarray(v, np.float64) for v in (mean, scale, weights))
        self.bias = float(bias)
        self.references = int(references)  # the number of references it was fitted with
        self.parts = tuple(int(p) for p in parts) if parts is not None else (self.cohort.shape[-1],)
        if sum(self.parts) != self.cohort.shape[-1]:
            raise ValueError(
                f"parts {self.parts} do not add up to the cohort's width {self.cohort.shape[-1]}."
            )
        self.cohort_writers = None  # their names, known after `fit_calibration` (not saved)
        self.regularization = None  # the regression's C, known after `fit_calibration` (not saved)
        self.guard = None  # (weights, bias) of the first part's own regression (class docstring)
        if guard is not None:
            if not self.fused:
                raise ValueError("a guard needs a fused calibration (several parts).")
            weights_, bias_ = np.asarray(guard[0], np.float64), float(guard[1])
            if weights_.shape != self.weights.shape or np.any(weights_[len(FEATURES) :]):
                raise ValueError("the guard weighs the first part's features only.")
            self.guard = (weights_, bias_)

    @property
    def fused(self):
        return len(self.parts) > 1

    @property
    def feature_names(self):
        """`FEATURES`, or with several parts `"<part>:<feature>"` for each."""
        return (
            FEATURES
            if not self.fused
            else tuple(f"{i}:{f}" for i in range(len(self.parts)) for f in FEATURES)
        )

    def _check_width(self, embeddings):
        if embeddings.shape[-1] != self.cohort.shape[-1]:
            raise ValueError(
                f"the cohort calibration holds {self.cohort.shape[-1]}-dimensional embeddings {self.parts}, "
                f"the model gives {embeddings.shape[-1]}: calibrate this model (`calibrate DATA --model MODEL`)."
            )

    def query_stats(self, embeddings):
        """`(μ_q, σ_q)`, each `[N]`: the T-norm statistics of `embeddings [N, D]` (with
        several parts, a list of one pair per part)."""
        embeddings = np.asarray(embeddings, np.float64)
        self._check_width(embeddings)
        k, r, _ = self.cohort.shape
        stats = []
        for a, b in protocol.part_bounds(self.parts):
            cohort = self.cohort[..., a:b].reshape(k * r, -1)
            d = _distances(embeddings[:, a:b], cohort).reshape(len(embeddings), k, r).min(axis=2)
            stats.append((d.mean(axis=1), np.maximum(d.std(axis=1), _FLOOR)))
        return stats if self.fused else stats[0]

    def features(self, d, reference_embeddings, query_stats):
        """`[N, len(feature_names)]` of the distances `d [N, R]` of N queries to one
        writer's references `[R, D]` (`[P, N, R]` with several parts), with the queries'
        `query_stats`."""
        refs = np.asarray(reference_embeddings, np.float64)
        if not self.fused:
            return self._features(d, refs, self.cohort, query_stats)
        return np.concatenate(
            [
                self._features(d[i], refs[:, a:b], self.cohort[..., a:b], query_stats[i])
                for i, (a, b) in enumerate(protocol.part_bounds(self.parts))
            ],
            axis=1,
        )

    @staticmethod
    def _features(d, refs, cohort, query_stats):
        """The eight `FEATURES` `[N, 8]` of one embedding."""
        s, m = d.min(axis=1), d.mean(axis=1)
        if len(refs) > 1:
            rr = _distances(refs, refs) + np.diag(np.full(len(refs), np.inf))
            spread = max(float(rr[np.isfinite(rr)].mean()), _FLOOR)
            nearest = float(rr.min(axis=1).mean())
        else:  # one reference: no spread to divide by
            spread, nearest = 1.0, 0.0
        k, r, _ = cohort.shape
        z = _distances(cohort.reshape(k * r, -1), refs).min(axis=1)
        z_mean, z_std = z.mean(), max(z.std(), _FLOOR)
        t_mean, t_std = query_stats
        return np.stack(
            [
                s,
                m,
                s / spread,
                s / max(nearest, _FLOOR) if len(refs) > 1 else s,
                (s - z_mean) / z_std,
                (s - t_mean) / t_std,
                (s - nearest) / max(z_mean - nearest, _FLOOR),
                (s - t_mean) / np.maximum(t_mean - nearest, _FLOOR),
            ],
            axis=1,
        )

    def scores(self, d, reference_embeddings, query_stats):
        """The calibrated scores `[N]` (lower: more likely genuine) of `features(...)`."""
        x = (self.features(d, reference_embeddings, query_stats) - self.mean) / self.scale
        score = -(x @ self.weights + self.bias)
        if self.guard is not None:  # the first model alone must accept too (class docstring)
            score = np.maximum(score, -(x @ self.guard[0] + self.guard[1]))
        return score

    def distances(self, embeddings, reference_embeddings):
        """The distances `features` takes: `[N, R]`, or `[P, N, R]` with several parts."""
        from apps.signature_verification.protocol import part_distances

        return part_distances(embeddings, reference_embeddings, self.parts if self.fused else None)

    def score(self, embeddings, reference_embeddings):
        """The calibrated scores `[N]` of `embeddings [N, D]` against one writer's references."""
        e = np.asarray(embeddings, np.float64)
        stats = self.query_stats(e)
        return self.scores(self.distances(e, reference_embeddings), reference_embeddings, stats)

    def save(self, path):
        """Writes the calibration to `path` (`.npz`, no pickle; the cohort as float16)."""
        tmp = f"{path}.tmp.npz"
        np.savez(
            tmp,
            format=GUARDED_FORMAT
            if self.guard is not None
            else FUSED_FORMAT
            if self.fused
            else COHORT_FORMAT,
            cohort=self.cohort.astype(np.float16),
            mean=self.mean,
            scale=self.scale,
            weights=self.weights,
            bias=self.bias,
            references=self.references,
            features=np.array(self.feature_names),
            **({"parts": np.array(self.parts)} if self.fused else {}),
            **(
                {"guard_weights": self.guard[0], "guard_bias": self.guard[1]}
                if self.guard is not None
                else {}
            ),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """The calibration at `path` (one embedding, or fused); ValueError when it is not one of ours."""
        try:
            with np.load(path, allow_pickle=False) as z:
                kind = str(z["format"])
                if kind not in (COHORT_FORMAT, FUSED_FORMAT, GUARDED_FORMAT):
                    raise ValueError("another format")
                parts = z["parts"].tolist() if kind != COHORT_FORMAT else None
                guard = (z["guard_weights"], z["guard_bias"]) if kind == GUARDED_FORMAT else None
                calibration = cls(
                    z["cohort"], z["mean"], z["scale"], z["weights"], z["bias"], z["references"], parts, guard
                )
                if tuple(z["features"].tolist()) != calibration.feature_names:
                    raise ValueError("other features")
                return calibration
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not a cohort calibration ({e}).") from None


def load_calibration(model_path):
    """The calibration beside `model_path` (`MODEL.keras.cohort.npz`), or None."""
    path = cohort_path(model_path)
    return CohortCalibration.load(path) if os.path.isfile(path) else None


def fit_calibration(
    embeddings,
    writers,
    genuine,
    references=5,
    cohort_writers=100,
    seed=0,
    random_weight=0.2,
    max_random=20000,
    parts=None,
    regularization=1.0,
    guard=True,
):
    """A `CohortCalibration` fitted on one set of writers (see module).

    `cohort_writers` of the writers (drawn with `seed`) become the cohort (their
    `references` reference signatures); the logistic regression learns, on the others,
    genuine queries against skilled forgeries (weight 1) and at most `max_random` random
    forgeries (weight `random_weight`), with scikit-learn's inverse L2 strength
    `regularization` (its `C`). `parts`: the widths of the embeddings side by side in
    `embeddings` (a fused calibration, see `CohortCalibration`); with `guard` (the default)
    a fused calibration also fits the first part's own regression on the same examples, its
    veto. Raises ValueError when fewer than two writers are
    left beside the cohort or there is no forgery.
    """
    from sklearn.linear_model import LogisticRegression

    embeddings = np.asarray(embeddings, np.float32)
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    refs = protocol.reference_indices(writers, genuine, references, seed)
    names = list(refs)
    if len(names) < cohort_writers + 2:
        raise ValueError(
            f"{len(names)} writers with more than {references} genuine signatures are too few for a cohort "
            f"of {cohort_writers} and at least 2 writers to fit on; lower --cohort-writers or add writers."
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(names), size=cohort_writers, replace=False))
    cohort = np.stack([embeddings[refs[names[i]]] for i in chosen])
    rest = ~np.isin(writers, [names[i] for i in chosen])
    n = len(FEATURES) * (len(parts) if parts is not None else 1)
    unfitted = CohortCalibration(cohort, np.zeros(n), np.ones(n), np.zeros(n), 0, references, parts)
    stats = unfitted.query_stats(embeddings[rest])
    f = protocol.writer_scores(
        embeddings[rest],
        writers[rest],
        genuine[rest],
        references,
        seed,
        lambda d, r: unfitted.features(d, r, stats),
        parts=parts,
    )
    random = f["random"].reshape(-1, n)
    if len(random) > max_random:
        random = random[rng.choice(len(random), size=max_random, replace=False)]
    skilled = f["skilled"].reshape(-1, n)
    positives = f["genuine"].reshape(-1, n)
    if not len(skilled) and not len(random):
        raise ValueError("calibration needs forgeries: skilled ones, or several writers.")
    x = np.concatenate([positives, skilled, random])
    y = np.r_[np.ones(len(positives)), np.zeros(len(skilled) + len(random))]
    weight = np.r_[np.ones(len(positives) + len(skilled)), np.full(len(random), random_weight)]
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-12)
    x = (x - mean) / scale
    fit = LogisticRegression(C=regularization, max_iter=5000).fit(x, y, sample_weight=weight)
    veto = None
    if guard and parts is not None and len(parts) > 1:
        k = len(FEATURES)
        alone = LogisticRegression(C=regularization, max_iter=5000).fit(x[:, :k], y, sample_weight=weight)
        veto = (np.r_[alone.coef_[0], np.zeros(n - k)], alone.intercept_[0])
    calibration = CohortCalibration(
        cohort, mean, scale, fit.coef_[0], fit.intercept_[0], references, parts, veto
    )
    calibration.cohort_writers = [names[i] for i in chosen]
    calibration.regularization = regularization
    return calibration
