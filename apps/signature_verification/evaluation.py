"""The writer-independent evaluation of a saved model (see `protocol` for the rules).

`score_writers` is the NumPy core: the verification scores of one set of writers and
their summary (EER, AUC, FAR, FRR) at a threshold, chosen on those writers when none is
given. `evaluate` runs the protocol on a data folder: the threshold on the validation
writers, the metrics on the test writers.

Example:

>>> import numpy as np
>>> emb = np.array([[1, 0], [1, 0.1], [0.9, 0], [1, 0.05], [0, 1], [0.1, 1], [0, 0.9], [0.05, 1]])
>>> emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
>>> s, _ = score_writers(emb, ["a"] * 4 + ["b"] * 4, [True] * 8, references=2)
>>> print(s["eer_random"], s["num_genuine"])
0.0 4
"""

import os

import numpy as np

from apps._common import SkipReport, log
from apps.signature_verification import protocol


def score_writers(
    embeddings, writers, genuine, references=5, rule="min", seed=0, threshold=None, calibration=None
):
    """`(summary, scores)`: the protocol's summary (`protocol.summarize`) and scores
    (`protocol.verification_scores`) of one set of writers; the threshold is the EER
    one of these writers unless `threshold` is given."""
    scores = protocol.verification_scores(embeddings, writers, genuine, references, rule, seed, calibration)
    if threshold is None:
        threshold = protocol.choose_threshold(scores)
    return protocol.summarize(scores, threshold), scores


FEW_WRITERS = 30  # below this many test writers `evaluate` warns that its rates are rough


def eer_interval(scores, kind="skilled", level=0.95, resamples=200, seed=0):
    """`[low, high]`: a `level` confidence interval of the EER of genuine signatures
    against `kind` forgeries; None without scores.

    The wider of two: a bootstrap over writers (each resample draws the writers with
    replacement and keeps all their scores, since one writer's scores are not
    independent), and the Wilson interval of the EER as a proportion of the smaller of the
    two score counts (which stays honest where every resample gives the same EER, e.g. 0
    on a few perfectly separated writers).

    >>> rng = np.random.default_rng(0)
    >>> writers = np.repeat(np.arange(20).astype(str), 5)
    >>> scores = {"writers": list(np.unique(writers)), "genuine": rng.normal(1, 0.3, 100),
    ...           "genuine_writer": writers, "skilled": rng.normal(1.6, 0.3, 100), "skilled_writer": writers}
    >>> low, high = eer_interval(scores)
    >>> bool(low < 0.16 < high)
    True
    """
    from keras_triplet.metrics import equal_error_rate

    if len(scores[kind]) == 0 or len(scores["genuine"]) == 0:
        return None
    writers = np.asarray(scores["writers"]).astype(str)
    by_writer = {
        key: {
            w: np.asarray(scores[key])[np.asarray(scores[key + "_writer"]).astype(str) == w] for w in writers
        }
        for key in ("genuine", kind)
    }
    rng = np.random.default_rng(seed)
    eers = []
    for _ in range(resamples):
        sample = rng.choice(writers, size=len(writers), replace=True)
        g = np.concatenate([by_writer["genuine"][w] for w in sample])
        f = np.concatenate([by_writer[kind][w] for w in sample])
        if len(g) and len(f):
            eers.append(
                equal_error_rate(np.r_[g, f], np.r_[np.ones(len(g), bool), np.zeros(len(f), bool)])[0]
            )
    if not eers:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(eers, tail), np.percentile(eers, 100 - tail)
    g, f = np.asarray(scores["genuine"]), np.asarray(scores[kind])
    eer = equal_error_rate(np.r_[g, f], np.r_[np.ones(len(g), bool), np.zeros(len(f), bool)])[0]
    w_low, w_high = _wilson(eer, min(len(g), len(f)), level)
    return [float(min(low, w_low)), float(max(high, w_high))]


def _wilson(p, n, level=0.95):
    """The Wilson score interval of a proportion `p` observed on `n` trials."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_split_images(dataset, writers, size):
    """Images, writer ids and genuine flags of `writers` (unreadable files skipped and
    reported); ValueError when the writers have images but none can be read."""
    from apps.signature_verification.preprocessing import load_images

    samples = list(dataset.subset(writers).samples)
    images, kept, skipped = load_images([s.path for s in samples], size)
    dataset.skipped.extend(skipped)
    SkipReport(skipped).print()
    if samples and not len(kept):
        raise ValueError(
            f"none of the {len(samples)} signature image(s) of {len(writers)} writer(s) in {dataset.root} "
            "could be read (the skipped files above say why); give PNG, TIFF or JPEG scans."
        )
    samples = [samples[i] for i in kept]
    return (
        images,
        np.array([s.writer for s in samples], dtype=str),
        np.array([s.genuine for s in samples], bool),
    )


BASELINES = ("pixels", "hog")


def baseline_embeddings(images, kind):
    """Non-learned embeddings of preprocessed images `[N, H, W, 1]`, L2-normalised:
    `"pixels"` (the raw pixels) or `"hog"` (scikit-image's histograms of oriented
    gradients: 9 orientations, 8×8-pixel cells, 2×2-cell blocks; `features.hog_descriptors`).
    They are what a learned model has to beat."""
    images = np.asarray(images, np.float32)
    if kind == "pixels":
        x = images.reshape(len(images), -1)
    elif kind == "hog":
        from apps.signature_verification.features import hog_descriptors

        return hog_descriptors(images)
    else:
        raise ValueError(f"baseline must be one of {BASELINES}; got {kind!r}.")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate(
    data,
    model_path,
    references=None,
    rule=None,
    layout="auto",
    seed=None,
    plots=None,
    verbose=True,
    baseline=None,
):
    """The writer-independent evaluation of `model_path` on `data`; returns the result
    dict (see `commands.evaluate`).

    `baseline` ("pixels" or "hog", see `baseline_embeddings`) scores those embeddings
    instead of the model's, on the same writers with the same protocol (the model's
    split, input size, references and rule; without a model, `model_path=None`: all
    writers unseen, 64×128 images, 5 references, rule `min`).

    `references` is a number of references per writer (default: the model's), or a list
    of them: then the result is that of the first, and `result["sweep"]` holds one
    result per number (each with its own validation threshold; writers with no more
    genuine signatures than the number are left out of its row, and a number that leaves
    no writer is skipped with a warning).
    """
    from apps.signature_verification.cohort import load_calibration
    from apps.signature_verification.loaders import load_dataset
    from apps.signature_verification.plots import write_plots
    from apps.signature_verification.preprocessing import DEFAULT_SIZE
    from apps.signature_verification.training import load_model

    if model_path is None and baseline is None:
        raise ValueError("evaluate needs a model, a baseline or both.")
    if model_path is not None:
        model, meta = load_model(model_path)
    else:
        model, meta = None, {"image_size": list(DEFAULT_SIZE), "rule": "min"}

    def embed(images):
        return baseline_embeddings(images, baseline) if baseline else model.embed(images, batch_size=128)

    counts = [references] if isinstance(references, int) or references is None else list(references)
    counts = [n or meta.get("references", 5) for n in counts]
    rule = rule or meta.get("rule", "mean")
    calibration = load_calibration(model_path) if model_path is not None and not baseline else None
    if baseline and rule == "calibrated":
        # The model's cohort holds its own embeddings, not the baseline's: the baseline's plain rule.
        rule = "min"
        if verbose:
            log("baseline: rule min (the model's cohort calibration is for its own embeddings)")
    seed = meta.get("seed", 0) if seed is None else seed
    dataset = load_dataset(data, layout)
    if verbose:
        log(dataset.summary())
    SkipReport(dataset.skipped).print()
    val_writers, test_writers, source = _split(dataset, meta, seed)
    size = tuple(meta["image_size"])
    vx, vw, vg = load_split_images(dataset, val_writers, size)
    tx, tw, tg = load_split_images(dataset, test_writers, size)
    val_emb, test_emb = embed(vx), embed(tx)
    results = []
    for n in counts:
        try:
            val, val_scores = score_writers(val_emb, vw, vg, n, rule, seed, calibration=calibration)
            result, test_scores = score_writers(
                test_emb, tw, tg, n, rule, seed, threshold=val["threshold"], calibration=calibration
            )
        except ValueError as e:
            if len(counts) == 1:
                raise
            log(f"warning: --references {n} skipped: {e}")
            continue
        for kind in ("skilled", "random"):
            result[f"eer_{kind}_ci95"] = eer_interval(test_scores, kind, seed=seed)
        result.update(
            {
                "references": n,
                "rule": rule,
                "split": source,
                "val_writers": len(val_scores["writers"]),
                "test_writers": len(test_scores["writers"]),
                "per_writer_eer_skilled": protocol.per_writer_eer(test_scores, "skilled"),
                "per_writer_eer_random": protocol.per_writer_eer(test_scores, "random"),
                "model": os.fspath(model_path) if model_path is not None else None,
                "baseline": baseline,
                "data": os.fspath(data),
            }
        )
        if plots and not results:
            result["plots"] = write_plots(test_scores, plots, threshold=val["threshold"])
        results.append(result)
    if not results:
        raise ValueError(f"no writer has more genuine signatures than any of --references {counts}.")
    if len(counts) > 1:
        results[0] = {**results[0], "sweep": [dict(r) for r in results]}
    return results[0]


def _split(dataset, meta, seed):
    """`(validation writers, test writers, how they were chosen)`."""
    split = meta.get("split")
    if split and meta.get("data_fingerprint") == dataset.fingerprint() and split.get("test"):
        return split["val"], split["test"], "the training run's split (training writers left out)"
    # Data the model never saw: half the writers choose the threshold, half are tested.
    s = protocol.writer_split(dataset.writers, 0.5, 0.5, seed=seed)
    return s["val"], s["test"], "all writers unseen; threshold on half of them, metrics on the other half"


def percent(x, pct=True):
    """`12.34%` (or `0.1234` with `pct=False`); `n/a` for None."""
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.4f}"
