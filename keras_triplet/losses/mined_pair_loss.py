"""`MinedPairLoss`: the base of the pair losses that take an optional pair miner
(contrastive, multi-similarity, circle, lifted structure, N-pairs, NT-Xent, SupCon): the miner's check, and its
serialization in `get_config` (`MetricLoss.from_config` deserializes it)."""

import math

import keras

from keras_triplet.losses.base import MetricLoss
from keras_triplet.miners.pair_miner import check_pair_miner


def check_positive(value, name):
    """`value` as a float, finite and > 0 (temperatures, scales)."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0; got {value}.")
    return value


def check_finite(value, name):
    """`value` as a finite float (margins that may be negative)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number; got {value}.")
    return value


class MinedPairLoss(MetricLoss):
    """A `MetricLoss` on the positive and negative pairs of the batch, or on those an
    optional `miners.PairMiner` keeps (`self.miner`)."""

    def __init__(self, distance="euclidean", p=None, miner=None, **kwargs):
        super().__init__(distance=distance, p=p, **kwargs)
        self.miner = check_pair_miner(miner)

    def get_config(self):
        config = super().get_config()
        config["miner"] = None if self.miner is None else keras.saving.serialize_keras_object(self.miner)
        return config
