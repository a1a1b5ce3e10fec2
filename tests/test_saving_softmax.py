"""Circle, lifted structure (both), N-pairs, NT-Xent and SupCon: models compiled with each
survive a `.keras` save / load (safe_mode on), and the losses round-trip through
get_config / from_config, with and without a pair miner."""

import pytest
from conftest import assert_config_round_trip, assert_saved_and_loaded
from test_fixtures_pml_softmax_losses import ThresholdMiner

from keras_triplet import losses

LOSSES = {
    "circle": lambda: losses.CircleLoss(m=0.25, gamma=128.0),
    "circle-miner": lambda: losses.CircleLoss(miner=ThresholdMiner(0.1, 0.9, distance="cosine")),
    "lifted": lambda: losses.LiftedStructureLoss(
        neg_margin=0.7, pos_margin=0.1, distance="squared_euclidean"
    ),
    "generalized-lifted": lambda: losses.GeneralizedLiftedStructureLoss(
        neg_margin=0.5, distance="minkowski", p=3
    ),
    "npairs": lambda: losses.NPairsLoss(),
    "npairs-dot-miner": lambda: losses.NPairsLoss(distance="dot", miner=ThresholdMiner(-0.5, 0.0)),
    "ntxent": lambda: losses.NTXentLoss(temperature=0.2),
    "supcon-miner": lambda: losses.SupConLoss(
        temperature=0.3, miner=ThresholdMiner(0.2, 0.8, distance="cosine")
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_model_save_and_load(name, tmp_path):
    assert_saved_and_loaded(LOSSES[name](), tmp_path)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_get_config_from_config(name):
    assert_config_round_trip(LOSSES[name]())
