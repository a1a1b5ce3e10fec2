"""Batch-all mining: every negative in a margin band (Hermans et al., 2017, "batch all")."""

import keras
from keras import ops

from keras_triplet._validation import check_choice, check_margin
from keras_triplet.miners.base import NegativeSearchMiner, selection

SELECTIONS = ("violating", "hard", "semi-hard")


@keras.saving.register_keras_serializable(package="keras_triplet")
class BatchAllMiner(NegativeSearchMiner):
    """For each positive pair, every negative in a band around `d(a, p)`.

    * `select="violating"` (default): `d(a, n) < d(a, p) + margin`, i.e. every triplet
      whose hinge loss `d(a, p) − d(a, n) + margin` is positive;
    * `select="hard"`: `d(a, n) ≤ d(a, p)` (`<` when `margin=0`, where ties have no loss);
    * `select="semi-hard"`: `d(a, p) < d(a, n) < d(a, p) + margin`.

    A pair is used when its band holds at least one negative. The output holds the
    count and the sum of the band's distances per pair, so the summed hinge loss over
    the band is `count · (d(a, p) + margin) − sum`: O(B²) memory where listing the
    triplets would take O(B³).

    With pytorch-metric-learning's `TripletMarginMiner(margin, type_of_triplets=t)`,
    `t="all"`, `"hard"` and `"semihard"` correspond to `"violating"`, `"hard"` and
    `"semi-hard"` here (up to equality at the band edges).

    Example:

    >>> import numpy as np
    >>> miner = BatchAllMiner(margin=1.0)
    >>> x = np.array([[0.0], [1.0], [1.5], [5.0]], "float32")
    >>> out = miner(np.array([0, 0, 1, 1]), embeddings=x)
    >>> float(np.asarray(out["negative_count"])[0, 1])  # d(0,1)=1: negatives below 2 -> {1.5}
    1.0
    """

    def __init__(self, margin=1.0, select="violating", **kwargs):
        super().__init__(**kwargs)
        self.margin = check_margin(margin)
        self.select = check_choice(select, SELECTIONS, "batch-all selection")

    def choose(self, negatives):
        if self.select == "violating":
            count, total = negatives.band(self.margin)
        elif self.select == "hard":
            # With margin 0, a negative exactly as far as the positive has zero loss: leave it out.
            count, total = negatives.band(0.0, stop_inclusive=self.margin > 0)
        else:
            count, total = negatives.band(self.margin, start_offset=0.0)
        pair = ops.logical_and(negatives.query_mask, count > 0)
        return selection(pair, count, total)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "select": self.select})
        return config
