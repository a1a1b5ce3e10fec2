"""`MinedPairLoss`: the base of the pair losses that take an optional pair miner
(circle, lifted structure, N-pairs, NT-Xent, SupCon): the miner's check, and its
serialization in `get_config` / `from_config`."""

import math

import keras

from keras_triplet.losses.base import MetricLoss
from keras_triplet.miners.pair_miner import PairMiner


def check_miner(miner):
    """`miner` when it is None or a `miners.PairMiner`; a clear error otherwise."""
    if miner is None or isinstance(miner, PairMiner):
        return miner
    raise ValueError(
        f"A pair loss's `miner` must be None (every pair) or a keras_triplet.miners.PairMiner; "
        f"got {miner!r}. Triplet miners ('semi-hard', 'batch-hard', 'batch-all') select "
        "triplets, for TripletLoss."
    )


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
        self.miner = check_miner(miner)

    def get_config(self):
        config = super().get_config()
        config["miner"] = None if self.miner is None else keras.saving.serialize_keras_object(self.miner)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("miner"), dict):
            config["miner"] = keras.saving.deserialize_keras_object(config["miner"])
        return cls(**config)
