"""Label masks: which pairs are positives and which are negatives, computed once.

Rows are anchors (the batch, `[B]` labels); columns are references (`[R]` labels).
Without `ref_labels` the references are the batch itself. With them (cross-batch
memory), the first `B` references must be the batch itself, so that self-pairs sit on
the diagonal of the first `B × B` block, and a reference label `< 0` marks an empty
slot that is neither a positive nor a negative.
"""

from keras import ops

from keras_triplet._backend import without_diagonal


def pair_masks(labels, ref_labels=None):
    """Returns `(positive, negative)`, boolean `[B, R]` masks.

    `positive[a, j]`: same label and `j` is not `a` itself.
    `negative[a, j]`: different label (and `j` is a valid reference).
    """
    if ref_labels is None:
        ref_labels = labels
        valid = None
    else:
        valid = ops.expand_dims(ref_labels >= 0, 0)
    same = ops.expand_dims(labels, 1) == ops.expand_dims(ops.cast(ref_labels, labels.dtype), 0)
    positive = without_diagonal(same)
    negative = ops.logical_not(same)
    if valid is not None:
        positive = ops.logical_and(positive, valid)
        negative = ops.logical_and(negative, valid)
    return positive, negative
