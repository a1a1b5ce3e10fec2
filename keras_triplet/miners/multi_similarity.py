"""`MultiSimilarityMiner`: the pair mining of the multi-similarity loss (Wang et al., CVPR 2019)."""

import keras
import numpy as np
from keras import ops

from keras_triplet._validation import check_margin
from keras_triplet.miners.pair_miner import PairMiner


@keras.saving.register_keras_serializable(package="keras_triplet")
class MultiSimilarityMiner(PairMiner):
    """Keeps the informative pairs of each anchor `a`, as the multi-similarity paper mines
    them (Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning", CVPR 2019; pytorch-metric-learning's
    `MultiSimilarityMiner`):

        positive (a, p) kept  iff  d(a, p) + epsilon > min_{n: y_n ≠ y_a} d(a, n)
        negative (a, n) kept  iff  d(a, n) − epsilon < max_{p: y_p = y_a, p ≠ a} d(a, p)

    A positive is kept when it is farther than the closest negative less `epsilon`, a
    negative when it is closer than the farthest positive plus `epsilon`. An anchor
    without negatives keeps no positive, one without positives keeps no negative. On
    `distance="cosine"` (`d = 1 − s`) this is exactly the paper's rule on similarities
    `s`: `s_ap − ε < max s_an` and `s_an + ε > min s_ap`. Two masked row extremes, O(B²).

    Args:
        epsilon: the slack of both comparisons (>= 0; the paper's ε, default 0.1).
        distance, p: the metric used when the miner is called with `embeddings=`
            (default `"cosine"`, as the paper and pytorch-metric-learning).

    Example:

    >>> import numpy as np
    >>> miner = MultiSimilarityMiner(epsilon=0.1)
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]], "float32")
    >>> positive, negative = miner(np.array([0, 0, 1, 1]), embeddings=x)
    >>> np.argwhere(np.asarray(positive)).tolist()  # d = 0.4 and 0.2, beyond a negative at 0.2
    [[1, 0], [2, 3]]
    >>> np.argwhere(np.asarray(negative)).tolist()  # items 1 and 2 (d = 0.2) of different classes
    [[1, 2], [2, 1]]
    """

    def __init__(self, epsilon=0.1, distance="cosine", p=None, **kwargs):
        super().__init__(distance=distance, p=p, **kwargs)
        self.epsilon = check_margin(epsilon, "epsilon")

    def select(self, distances, positive, negative):
        big = ops.cast(np.finfo("float32").max, distances.dtype)
        # Masked row extremes: +max / −max stand for "no candidate" and make every
        # comparison against them false.
        closest_negative = ops.min(ops.where(negative, distances, big), axis=1, keepdims=True)
        farthest_positive = ops.max(ops.where(positive, distances, -big), axis=1, keepdims=True)
        keep_positive = distances + self.epsilon > closest_negative
        keep_negative = distances - self.epsilon < farthest_positive
        return keep_positive, keep_negative

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
