"""Semi-hard mining (Schroff, Kalenichenko and Philbin, "FaceNet", CVPR 2015)."""

import keras
from keras import ops

from keras_triplet._validation import check_choice
from keras_triplet.miners.base import NegativeSearchMiner, selection


@keras.saving.register_keras_serializable(package="keras_triplet")
class SemiHardMiner(NegativeSearchMiner):
    """For each positive pair, the closest negative farther than the positive.

    For every positive pair `(a, p)` whose anchor has a negative, one negative:
    `n = argmin {d(a, n) : d(a, n) > d(a, p)}` (FaceNet's semi-hard negative; the margin
    does not enter the choice). When no negative is farther than the positive:

    * `fallback="farthest"` (default, tensorflow-addons' choice): the farthest negative,
      `argmax_n d(a, n)`, which is the hardest such pair can still learn from;
    * `fallback="none"`: the pair is left out.

    Found by `miners.search`: one sort per anchor and a binary search, O(B² log B)
    time and O(B²) memory, or (P×K batches) direct comparisons with each anchor's positives.

    Example:

    >>> import numpy as np
    >>> miner = SemiHardMiner()
    >>> x = np.array([[0.0], [1.0], [0.5], [2.0]], "float32")
    >>> out = miner(np.array([0, 0, 1, 1]), embeddings=x)
    >>> float(np.asarray(out["negative_distance_sum"])[0, 1])  # d(0,1)=1: closest negative beyond is 2.0
    2.0
    """

    single_negative = True

    def __init__(self, fallback="farthest", **kwargs):
        super().__init__(**kwargs)
        self.fallback = check_choice(fallback, ("farthest", "none"), "semi-hard fallback")

    def choose(self, negatives):
        farthest = self.fallback == "farthest"
        distance, has_semi_hard = negatives.closest_beyond(or_farthest=farthest)
        if farthest:
            pair = ops.logical_and(negatives.query_mask, ops.expand_dims(negatives.count, 1) > 0)
        else:
            pair = ops.logical_and(negatives.query_mask, has_semi_hard)
        return selection(pair, 1.0, distance)

    def get_config(self):
        config = super().get_config()
        config["fallback"] = self.fallback
        return config
