"""Retrieval and verification metrics of embeddings, and the `RetrievalEvaluation` callback.

The metric functions are NumPy (they take NumPy arrays and do not depend on the Keras
backend); `RetrievalEvaluation` (a Keras callback) is loaded on first use.

- `pairwise_distances_numpy(x, y, metric="euclidean")` and
  `paired_distances_numpy(a, b, metric="euclidean")`: the NumPy distances (same
  definitions as `keras_triplet.distances`) used by the metrics and `EmbeddingIndex`.
- `retrieval_metrics(embeddings, labels, ks=(1, 5))`: Recall@K, Precision@1,
  R-Precision and MAP@R (Musgrave et al., ECCV 2020), leave-one-out or against a
  reference set, computed by chunks.
- `verification_metrics(embeddings, labels)`: EER, its threshold and ROC AUC over pairs;
  `roc_curve`, `equal_error_rate`, `roc_auc`, `tar_at_far`, `far_frr_at_threshold`,
  `choose_threshold` and `pair_distances` for finer control.
- `clustering_metrics(embeddings, labels)`: NMI and AMI of a k-means clustering
  (`normalized_mutual_info`, `adjusted_mutual_info`, `kmeans_clusters`).
- `matching_curve`, `matching_metrics`, `choose_cutpoints`: nearest-neighbour matching
  with a distance threshold (precision, recall, F1, FAR, FRR), as
  `TripletModel.calibrate` / `match` use it.
- `export_projector(log_dir, embeddings, labels)`: files for TensorBoard's embedding projector.
"""

import importlib

from keras_triplet.metrics.clustering import (
    adjusted_mutual_info,
    clustering_metrics,
    kmeans_clusters,
    normalized_mutual_info,
)
from keras_triplet.metrics.distances import (
    paired_distances_numpy,
    pairwise_distances_numpy,
)
from keras_triplet.metrics.matching import choose_cutpoints, matching_curve, matching_metrics
from keras_triplet.metrics.projector import export_projector
from keras_triplet.metrics.retrieval import retrieval_metrics
from keras_triplet.metrics.verification import (
    choose_threshold,
    equal_error_rate,
    far_frr_at_threshold,
    pair_distances,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
)


def __getattr__(name):
    if name == "RetrievalEvaluation":
        return importlib.import_module("keras_triplet.metrics.callbacks").RetrievalEvaluation
    raise AttributeError(f"module 'keras_triplet.metrics' has no attribute {name!r}")


__all__ = [  # noqa: F822 - RetrievalEvaluation is loaded on first use, by __getattr__
    "RetrievalEvaluation",
    "choose_threshold",
    "equal_error_rate",
    "far_frr_at_threshold",
    "pair_distances",
    "paired_distances_numpy",
    "pairwise_distances_numpy",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_metrics",
    # --- issue 15, similarity workflow (begin)
    "adjusted_mutual_info",
    "choose_cutpoints",
    "clustering_metrics",
    "export_projector",
    "kmeans_clusters",
    "matching_curve",
    "matching_metrics",
    "normalized_mutual_info",
    # --- issue 15, similarity workflow (end)
]
