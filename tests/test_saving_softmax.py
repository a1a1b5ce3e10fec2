"""Circle, lifted structure (both), N-pairs, NT-Xent and SupCon: models compiled with each
survive a `.keras` save / load (safe_mode on), and the losses round-trip through
get_config / from_config, with and without a pair miner."""

import keras
import numpy as np
import pytest
from conftest import to_numpy
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

X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
Y = np.array([0, 0, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_model_save_and_load(name, tmp_path):
    loss = LOSSES[name]()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss)
    model.train_on_batch(X, Y)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    restored = loaded.loss
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    emb = model.predict(X, verbose=0)
    assert float(to_numpy(restored(Y, emb))) == pytest.approx(
        float(to_numpy(loss(Y, emb))), rel=1e-6, abs=1e-7
    )
    if loss.miner is not None:
        assert type(restored.miner) is type(loss.miner)
        assert restored.miner.get_config() == loss.miner.get_config()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_get_config_from_config(name):
    loss = LOSSES[name]()
    config = loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(loss)
    assert serialized["registered_name"].startswith("keras_triplet>")
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss) and restored.get_config() == config
