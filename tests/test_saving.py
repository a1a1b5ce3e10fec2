"""Models compiled with each loss survive a `.keras` save / load (safe_mode on), and
losses and miners round-trip through get_config / from_config."""

import pytest
from conftest import assert_config_round_trip, assert_saved_and_loaded

from keras_triplet import losses, miners
from keras_triplet.compat import tfa

LOSSES = {
    "triplet-string-miner": lambda: losses.TripletLoss(
        margin=0.4, miner="batch-hard", distance="squared_euclidean"
    ),
    "triplet-miner-instance": lambda: losses.TripletLoss(
        margin=0.5, miner=miners.BatchAllMiner(margin=0.3, select="semi-hard"), average="triplets"
    ),
    "triplet-semi-hard-instance-soft": lambda: losses.TripletLoss(
        miner=miners.SemiHardMiner(fallback="none", distance="cosine"), distance="cosine", soft_margin=True
    ),
    "quadruplet": lambda: losses.QuadrupletLoss(margin=0.6, margin2=0.3, distance="minkowski", p=3),
    "angular": lambda: losses.AngularLoss(alpha=42.0),
    "tfa-semi-hard": lambda: tfa.TripletSemiHardLoss(margin=0.7, distance_metric="angular"),
    "tfa-hard": lambda: tfa.TripletHardLoss(margin=0.2, soft=True, distance_metric="squared-L2"),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_model_save_and_load(name, tmp_path):
    assert_saved_and_loaded(LOSSES[name](), tmp_path)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_get_config_from_config(name):
    assert_config_round_trip(LOSSES[name]())


@pytest.mark.parametrize(
    "make",
    [
        lambda: miners.BatchAllMiner(margin=0.25, select="hard", distance="cosine"),
        lambda: miners.BatchHardMiner(distance="minkowski", p=3),
        lambda: miners.SemiHardMiner(fallback="none"),
    ],
)
def test_miner_get_config_from_config(make):
    assert_config_round_trip(make())
