"""`PairMarginMiner`: the positive pairs that are too far and the negative pairs that are too close."""

import keras

from keras_triplet._validation import check_margin
from keras_triplet.miners.pair_miner import PairMiner


@keras.saving.register_keras_serializable(package="keras_triplet")
class PairMarginMiner(PairMiner):
    """Keeps the positive pairs with `d(a, p) > pos_margin` and the negative pairs with
    `d(a, n) < neg_margin` (pytorch-metric-learning's `PairMarginMiner`).

    The pairs outside these bands already satisfy a contrastive loss with the same
    margins, so mining them away changes only the average. The margins are in the units
    of the distance the loss gives the miner (smaller is closer, whatever the metric: on
    `distance="cosine"`, `d = 1 − cos`); pytorch-metric-learning's margins on its
    `CosineSimilarity` are similarities, `s > neg_margin` there is `d < 1 − neg_margin`
    here.

    Args:
        pos_margin: positive pairs farther than this are kept (>= 0).
        neg_margin: negative pairs closer than this are kept (>= 0).
        distance, p: the metric used when the miner is called with `embeddings=`.

    Example:

    >>> import numpy as np
    >>> miner = PairMarginMiner(pos_margin=0.5, neg_margin=1.5)
    >>> x = np.array([[0.0], [1.0], [2.0], [2.3]], "float32")
    >>> positive, negative = miner(np.array([0, 0, 1, 1]), embeddings=x)
    >>> np.argwhere(np.asarray(positive)).tolist()  # d = 1 (d = 0.3 is close enough)
    [[0, 1], [1, 0]]
    >>> np.argwhere(np.asarray(negative)).tolist()  # d = 1 and 1.3 (2 and 2.3 are far enough)
    [[1, 2], [1, 3], [2, 1], [3, 1]]
    """

    def __init__(self, pos_margin=0.2, neg_margin=0.8, distance="euclidean", p=None, **kwargs):
        super().__init__(distance=distance, p=p, **kwargs)
        self.pos_margin = check_margin(pos_margin, "pos_margin")
        self.neg_margin = check_margin(neg_margin, "neg_margin")

    def select(self, distances, positive, negative):
        return distances > self.pos_margin, distances < self.neg_margin

    def get_config(self):
        config = super().get_config()
        config.update({"pos_margin": self.pos_margin, "neg_margin": self.neg_margin})
        return config
