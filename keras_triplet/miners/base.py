"""The base class of triplet miners and the contract of what they return."""

import keras
from keras import ops

from keras_triplet._validation import as_float, check_embeddings, check_labels
from keras_triplet.distances import check_metric, pairwise_distances
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.search import SortedNegatives


class Miner(keras.layers.Layer):
    """What every miner layer shares (`TripletMiner`, `miners.PairMiner`): its distance,
    float32 selection, and a call on a precomputed `[B, B]` matrix (`distances=`) or on
    embeddings (`embeddings=`, the matrix computed with the miner's distance), which
    hands the validated labels and matrix to the subclass's `mine`."""

    def __init__(self, distance="euclidean", p=None, **kwargs):
        # Selection compares distances: keep float32 even under a mixed-precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.distance = check_metric(distance, p)
        self.p = p

    def call(self, labels, distances=None, embeddings=None):
        if (distances is None) == (embeddings is None):
            raise ValueError("Pass exactly one of `distances=` ([B, B] matrix) or `embeddings=` ([B, D]).")
        if distances is None:
            embeddings = check_embeddings(embeddings)
            distances = pairwise_distances(embeddings, metric=self.distance, p=self.p)
        else:
            distances = as_float(distances)
            if len(distances.shape) != 2:
                raise ValueError(f"`distances` must be a [B, B] matrix; got shape {tuple(distances.shape)}.")
        labels = check_labels(labels, batch_size=distances.shape[0])
        return self.mine(labels, distances)

    def mine(self, labels, distances, ref_labels=None):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"distance": self.distance, "p": self.p})
        return config


class TripletMiner(Miner):
    """Base class: a Keras layer that selects triplets from a distance matrix.

    Call it as `miner(labels, distances=D)` (a precomputed `[B, B]` matrix) or
    `miner(labels, embeddings=E)` (the miner computes the matrix with its `distance`).
    It returns a dict of `[B, B]` float tensors indexed `[anchor, positive]`:

    * `pair_mask`: 1 where the positive pair `(a, p)` is used;
    * `negative_count`: how many negatives were chosen for `(a, p)`;
    * `negative_distance_sum`: the sum of `d(a, n)` over those negatives (differentiable).

    Static shapes and O(B²) memory: the selection is never a list of indices, and no
    `B × B × B` tensor is built, so miners compile with `jit_compile=True`.

    Subclasses implement `mine(labels, distances, ref_labels=None, negatives=None)`. Single-negative
    miners set `single_negative = True` (`negative_count` is 0 or 1, so
    `negative_distance_sum` is the chosen negative's distance).
    """

    single_negative = False

    def mine(self, labels, distances, ref_labels=None, negatives=None):
        """The selection from a `[B, R]` matrix (see the class docstring).

        `negatives`: a `miners.search` object (sorted or direct) already built from
        `distances` and these labels, to reuse (a training step shares one with
        `triplet_statistics`); miners that do not search negatives ignore it.
        """
        raise NotImplementedError

    def mine_pairs(self, labels, distances, ref_labels=None, negatives=None):
        """`(pair_distances, selection)`: the selection of `mine` with the positive-pair
        distances `d(a, p)` it refers to, in a layout of the miner's choosing (`[B, R]`;
        `[B, M]` over each anchor's positives when `negatives` compacts them; `[B, 1]` for
        one pair per anchor). A loss that only sums over pairs uses this and skips the
        `[B, R]` layout."""
        return distances, self.mine(labels, distances, ref_labels=ref_labels, negatives=negatives)

    def compute_output_spec(self, labels, distances=None, embeddings=None):
        b = labels.shape[0]
        spec = keras.KerasTensor((b, b), dtype="float32")
        return {"pair_mask": spec, "negative_count": spec, "negative_distance_sum": spec}


class NegativeSearchMiner(TripletMiner):
    """Base of the miners that choose, per positive pair, among the anchor's negatives
    by comparing them with `d(a, p)` (semi-hard, batch-all). Subclasses implement
    `choose(negatives)`: the selection in the query layout of `negatives`, a
    `miners.search` object (`SortedNegatives`, or whichever `search.with_negatives` chose
    when a loss or a training step passes one). `mine` scatters it back to `[B, R]`; `mine_pairs`
    returns it as is, beside the positive distances it refers to."""

    def choose(self, negatives):
        raise NotImplementedError

    def mine(self, labels, distances, ref_labels=None, negatives=None):
        negatives = self._negatives(labels, distances, ref_labels, negatives)
        return {key: negatives.expand(value) for key, value in self.choose(negatives).items()}

    def mine_pairs(self, labels, distances, ref_labels=None, negatives=None):
        negatives = self._negatives(labels, distances, ref_labels, negatives)
        chosen = self.choose(negatives)
        # Read after the question: a search by blocks hands out its query distances with
        # the answer's gradient (`DirectNegatives._differentiable`).
        return negatives.query_distances, chosen

    @staticmethod
    def _negatives(labels, distances, ref_labels, negatives):
        if negatives is None:
            positive, negative = pair_masks(labels, ref_labels)
            negatives = SortedNegatives(distances, negative, positive)
        return negatives


def selection(pair_mask, negative_count, negative_distance_sum):
    """Packs a miner's output, zeroing everything outside the used pairs."""
    dtype = negative_distance_sum.dtype
    pair = ops.cast(pair_mask, dtype)
    # On eager PyTorch each op on a large `[B, B]` array costs about as much in fresh
    # memory as in arithmetic, and `where` costs about two products. So: a `where` to
    # substitute a value, but a product with a 0/1 mask (cast once) to zero out finite
    # values, as here. Compiled graphs fuse either form.
    return {
        "pair_mask": pair,
        "negative_count": pair * ops.cast(negative_count, dtype),
        "negative_distance_sum": pair * negative_distance_sum,
    }
