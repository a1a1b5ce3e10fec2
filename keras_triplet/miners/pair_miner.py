"""The base class of pair miners (for the pair losses) and the contract of what they return."""

import keras
from keras import ops

from keras_triplet.miners.base import Miner
from keras_triplet.miners.labels import pair_masks


class PairMiner(Miner):
    """Base class: a Keras layer that selects positive and negative pairs.

    Call it as `miner(labels, distances=D)` (a precomputed `[B, B]` matrix) or
    `miner(labels, embeddings=E)` (the miner computes the matrix with its `distance`).
    It returns `(positive, negative)`, two boolean `[B, R]` masks indexed
    `[anchor, reference]`: the positive pairs (same label, not the anchor itself) and the
    negative pairs (different labels) it keeps. They are subsets of
    `miners.pair_masks(labels)`, so a pair loss multiplies them into its sums: static
    shapes, O(B²) memory, no list of indices.

    Distances are distances throughout: smaller is closer, whatever the metric (a loss
    defined on a cosine similarity `s` passes `d = 1 − s`), so every miner reads the
    same way under every metric.

    Subclasses implement `select(distances, positive, negative)`: the kept subsets of
    the valid `positive` / `negative` masks, from the `[B, R]` distances (gradients are
    already stopped). A pair loss calls `mine(labels, distances, ref_labels)`, which
    also supports cross-batch memory (`ref_labels`, as `miners.pair_masks` defines it).
    """

    def mine(self, labels, distances, ref_labels=None):
        """`(positive, negative)` boolean `[B, R]` masks of the kept pairs."""
        positive, negative = pair_masks(labels, ref_labels)
        kept_positive, kept_negative = self.select(ops.stop_gradient(distances), positive, negative)
        return ops.logical_and(kept_positive, positive), ops.logical_and(kept_negative, negative)

    def select(self, distances, positive, negative):
        raise NotImplementedError

    def compute_output_spec(self, labels, distances=None, embeddings=None):
        b = labels.shape[0]
        spec = keras.KerasTensor((b, b), dtype="bool")
        return spec, spec


def check_pair_miner(miner):
    """`miner` if it is None or a `PairMiner`; a clear error otherwise (pair losses)."""
    if miner is None or isinstance(miner, PairMiner):
        return miner
    raise ValueError(
        f"A pair loss's `miner` must be None or a keras_triplet.miners.PairMiner (e.g. "
        f"miners.MultiSimilarityMiner() or miners.PairMarginMiner()); got {miner!r}. Triplet "
        "miners ('semi-hard', 'batch-hard', 'batch-all') select triplets, for TripletLoss."
    )
