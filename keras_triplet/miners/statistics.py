"""Mining statistics: what people watch while training with online mining."""

from keras import ops

from keras_triplet._validation import as_float
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.search import with_negatives


def _mean_where(values, mask):
    mask = ops.cast(mask, values.dtype)
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


def triplet_statistics(labels, distances, margin=0.0, ref_labels=None, negatives=None):
    """Batch statistics over **all** valid triplets `(a, p, n)`, in O(B²) memory.

    Returns a dict of scalar tensors (each 0 when undefined):

    * `active_fraction`: fraction of triplets with `d(a, n) < d(a, p) + margin`
      (a non-zero hinge loss): it falls as the embedding learns;
    * `hard_fraction`: fraction of triplets with `d(a, n) < d(a, p)`;
    * `positive_distance`: mean `d(a, p)` over positive pairs;
    * `negative_distance`: mean `d(a, n)` over negative pairs.

    Gradients are stopped: these are for logging. `negatives`: a `miners.search`
    object of the same matrix and labels to reuse (a training step shares the loss's).

    Example:

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> from keras_triplet.distances import pairwise_distances
    >>> stats = triplet_statistics(np.array([0, 0, 1, 1]), pairwise_distances(x), margin=0.2)
    >>> float(stats["hard_fraction"])  # 5 of the 8 triplets have d(a, n) < d(a, p)
    0.625
    """
    distances = ops.stop_gradient(as_float(distances))
    labels = ops.convert_to_tensor(labels)
    if ref_labels is not None:
        ref_labels = ops.convert_to_tensor(ref_labels)
    if negatives is None:
        positive, negative = pair_masks(labels, ref_labels)
        return with_negatives(
            distances, negative, positive, lambda found: _statistics(distances, margin, found)
        )
    return _statistics(distances, margin, negatives)


def _statistics(distances, margin, negatives):
    positive, negative = negatives.positive_mask, negatives.negative_mask
    n_negative = ops.cast(ops.expand_dims(negatives.count, 1), distances.dtype)
    pos = ops.cast(negatives.query_mask, distances.dtype)
    triplets = ops.maximum(ops.sum(pos * n_negative), 1.0)
    active = ops.cast(negatives.count_within(margin), distances.dtype)
    hard = ops.cast(negatives.count_within(0.0), distances.dtype)
    return {
        "active_fraction": ops.sum(pos * active) / triplets,
        "hard_fraction": ops.sum(pos * hard) / triplets,
        "positive_distance": _mean_where(distances, positive),
        "negative_distance": _mean_where(distances, negative),
    }
