"""Models compiled with each loss survive a `.keras` save / load (safe_mode on), and
losses and miners round-trip through get_config / from_config."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

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

X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
Y = np.array([0, 0, 1, 1, 2, 2, 3, 3])


def _model(loss):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss)
    return model


def _config(loss):
    return keras.saving.serialize_keras_object(loss)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_model_save_and_load(name, tmp_path):
    loss = LOSSES[name]()
    model = _model(loss)
    model.train_on_batch(X, Y)  # a real step, so the compiled loss is used once
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    np.testing.assert_allclose(
        to_numpy(loaded.predict(X, verbose=0)), to_numpy(model.predict(X, verbose=0)), rtol=1e-6
    )
    restored = loaded.loss
    assert type(restored) is type(loss), f"loaded loss is {type(restored)}"
    assert restored.get_config() == loss.get_config()
    # The restored loss computes the same value.
    emb = model.predict(X, verbose=0)
    assert float(to_numpy(restored(Y, emb))) == pytest.approx(
        float(to_numpy(loss(Y, emb))), rel=1e-6, abs=1e-7
    )
    if isinstance(loss, losses.TripletLoss):
        assert type(restored.miner) is type(loss.miner)
        assert restored.miner.get_config() == loss.miner.get_config()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_get_config_from_config(name):
    loss = LOSSES[name]()
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    # Through Keras's generic serialization, by registered name.
    restored = keras.saving.deserialize_keras_object(_config(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    assert _config(loss)["registered_name"].startswith("keras_triplet>")


@pytest.mark.parametrize(
    "make",
    [
        lambda: miners.BatchAllMiner(margin=0.25, select="hard", distance="cosine"),
        lambda: miners.BatchHardMiner(distance="minkowski", p=3),
        lambda: miners.SemiHardMiner(fallback="none"),
    ],
)
def test_miner_get_config_from_config(make):
    miner = make()
    config = miner.get_config()
    clone = type(miner).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(miner))
    assert type(restored) is type(miner) and restored.get_config() == config
