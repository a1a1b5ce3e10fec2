"""Open-set evaluation: every clip queries all the others (leave-one-out), against the
non-learned MFCC baseline on the same clips.

`score_embeddings` is the NumPy core (retrieval: Recall@1, Recall@5, Precision@1,
R-Precision, MAP@R; verification of all pairs: EER, ROC AUC); `evaluate_features`
embeds a `FeatureSet` with a model and scores it, optionally beside the baseline.

Example:

>>> import numpy as np
>>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> s = score_embeddings(emb, np.array([0, 0, 1, 1]))
>>> print(s["recall@1"], s["eer"])
1.0 0.0
"""

from apps.audio_similarity import features as F

METRICS = (
    ("recall@1", "Recall@1"),
    ("recall@5", "Recall@5"),
    ("map@r", "MAP@R"),
    ("eer", "EER"),
    ("auc", "ROC AUC"),
)


def score_embeddings(embeddings, labels, metric="euclidean"):
    """Leave-one-out retrieval and verification metrics of `embeddings [N, D]` (a dict
    of floats)."""
    from keras_triplet.metrics import retrieval_metrics, verification_metrics

    r = retrieval_metrics(embeddings, labels, ks=(1, 5), metric=metric)
    v = verification_metrics(embeddings, labels, metric=metric)
    return {
        "recall@1": float(r["recall@1"]),
        "recall@5": float(r["recall@5"]),
        "precision@1": float(r["precision@1"]),
        "r_precision": float(r["r_precision"]),
        "map@r": float(r["map@r"]),
        "eer": float(v["eer"]),
        "auc": float(v["auc"]),
    }


def baseline_embeddings(features):
    """The MFCC mean+std baseline of clips (compare with the cosine distance)."""
    return F.mfcc_stats(features)


def evaluate_features(model, frames, fs, baseline=None, batch_size=256):
    """`(result, embeddings)`: the metrics of a `FeatureSet` embedded by `model`, and
    with `baseline="mfcc"` the baseline's as `baseline_<metric>`."""
    emb = F.embed_clips(model, fs.features, frames, batch_size=batch_size)
    result = score_embeddings(emb, fs.labels, "euclidean")
    result.update(num_files=len(fs), num_classes=len(fs.class_names), skipped=len(fs.report))
    if baseline == "mfcc":
        base = score_embeddings(baseline_embeddings(fs.features), fs.labels, "cosine")
        result.update({f"baseline_{k}": v for k, v in base.items()})
    return result, emb


def format_metrics(result):
    """The metrics as a small table (model, and the baseline when present)."""
    has_base = "baseline_recall@1" in result
    lines = [f"{'':10s} {'model':>8s}" + (f" {'MFCC baseline':>14s}" if has_base else "")]
    for key, title in METRICS:
        line = f"{title:10s} {result[key]:8.3f}"
        if has_base:
            line += f" {result['baseline_' + key]:14.3f}"
        lines.append(line)
    return "\n".join(lines)
