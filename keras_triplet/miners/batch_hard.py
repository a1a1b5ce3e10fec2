"""Batch-hard mining (Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for
Person Re-Identification", 2017)."""

import keras
from keras import ops

from keras_triplet.miners.base import TripletMiner, selection
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.masked_extremes import gather_rows, masked_argmax, masked_argmin


@keras.saving.register_keras_serializable(package="keras_triplet")
class BatchHardMiner(TripletMiner):
    """One triplet per anchor: its farthest positive and its closest negative.

    For every anchor `a` with at least one positive and one negative:
    `p* = argmax_p d(a, p)`, `n* = argmin_n d(a, n)` (first index on ties); anchors
    lacking either are left out. B triplets at most.

    Example:

    >>> import numpy as np
    >>> miner = BatchHardMiner()
    >>> x = np.array([[0.0], [1.0], [3.0], [3.5]], "float32")
    >>> out = miner(np.array([0, 0, 1, 1]), embeddings=x)
    >>> np.asarray(out["negative_distance_sum"])[0].tolist()  # anchor 0: p*=1, n*=2
    [0.0, 3.0, 0.0, 0.0]
    """

    single_negative = True

    def _hardest(self, labels, distances, ref_labels):
        positive, negative = pair_masks(labels, ref_labels)
        hardest_positive, has_positive = masked_argmax(distances, positive)
        hardest_negative, has_negative = masked_argmin(distances, negative)
        return hardest_positive, hardest_negative, ops.logical_and(has_positive, has_negative)

    def mine_pairs(self, labels, distances, ref_labels=None, negatives=None):
        # One pair per anchor: `[B, 1]` arrays instead of the `[B, R]` layout of `mine`.
        hardest_positive, hardest_negative, valid = self._hardest(labels, distances, ref_labels)
        positive_distance = ops.expand_dims(gather_rows(distances, hardest_positive), 1)
        negative_distance = ops.expand_dims(gather_rows(distances, hardest_negative), 1)
        return positive_distance, selection(ops.expand_dims(valid, 1), 1.0, negative_distance)

    def mine(self, labels, distances, ref_labels=None, negatives=None):
        hardest_positive, hardest_negative, valid = self._hardest(labels, distances, ref_labels)
        columns = ops.expand_dims(ops.arange(ops.shape(distances)[1]), 0)
        pair = ops.logical_and(
            columns == ops.expand_dims(ops.cast(hardest_positive, columns.dtype), 1),
            ops.expand_dims(valid, 1),
        )
        negative_distance = ops.expand_dims(gather_rows(distances, hardest_negative), 1)
        return selection(pair, 1.0, ops.broadcast_to(negative_distance, ops.shape(distances)))
