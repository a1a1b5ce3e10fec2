"""Bad input raises a ValueError whose message names the problem."""

import numpy as np
import pytest

from keras_triplet import distances, losses, miners
from keras_triplet.compat import tfa

LABELS = np.array([0, 0, 1, 1])
EMB = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")

# Every loss, as a callable (y_true, y_pred) -> scalar.
LOSS_CALLS = {
    "TripletLoss": lambda: losses.TripletLoss(),
    "TripletLoss-batch-all": lambda: losses.TripletLoss(miner="batch-all"),
    "QuadrupletLoss": lambda: losses.QuadrupletLoss(),
    "AngularLoss": lambda: losses.AngularLoss(),
    "tfa.TripletSemiHardLoss": lambda: tfa.TripletSemiHardLoss(),
    "tfa.TripletHardLoss": lambda: tfa.TripletHardLoss(),
    "triplet_loss": lambda: losses.triplet_loss,
    "quadruplet_loss": lambda: losses.quadruplet_loss,
    "angular_loss": lambda: losses.angular_loss,
    "tfa.triplet_semihard_loss": lambda: tfa.triplet_semihard_loss,
    "tfa.triplet_hard_loss": lambda: tfa.triplet_hard_loss,
}


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_fractional_labels(name):
    loss = LOSS_CALLS[name]()
    with pytest.raises(ValueError, match=r"(?i)integer|whole|label") as info:
        loss(np.array([0.0, 0.5, 1.0, 1.0], "float32"), EMB)
    assert "0.5" in str(info.value), "the message should show the offending value"


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_labels_length_differs_from_batch(name):
    loss = LOSS_CALLS[name]()
    with pytest.raises(ValueError, match=r"(?i)label") as info:
        loss(np.array([0, 0, 1]), EMB)
    message = str(info.value)
    assert "3" in message and "4" in message, f"the message should give both sizes: {message}"


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
@pytest.mark.parametrize("shape", [(4,), (4, 3, 1), (4, 2, 2)])
def test_embeddings_not_2d(name, shape):
    loss = LOSS_CALLS[name]()
    with pytest.raises(ValueError, match=r"(?i)2-D|rank|dimension|shape") as info:
        loss(LABELS, np.zeros(shape, "float32"))
    assert str(tuple(shape)) in str(info.value) or str(list(shape)) in str(info.value), str(info.value)


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_one_hot_labels(name):
    loss = LOSS_CALLS[name]()
    with pytest.raises(ValueError, match=r"(?i)label"):
        loss(np.eye(4, dtype="float32"), EMB)


def test_unknown_metric():
    with pytest.raises(ValueError, match="manhattan") as info:
        distances.pairwise_distances(EMB, metric="manhattan")
    assert "euclidean" in str(info.value), "the message should list the valid metrics"
    for make in (
        lambda: losses.TripletLoss(distance="manhattan"),
        lambda: losses.QuadrupletLoss(distance="manhattan"),
        lambda: miners.BatchHardMiner(distance="manhattan"),
        lambda: miners.SemiHardMiner(distance="manhattan"),
        lambda: miners.BatchAllMiner(distance="manhattan"),
        lambda: losses.triplet_loss(LABELS, EMB, distance="manhattan"),
    ):
        with pytest.raises(ValueError, match="manhattan"):
            make()


def test_minkowski_p():
    with pytest.raises(ValueError, match="p"):
        losses.TripletLoss(distance="minkowski", p=0.5)
    with pytest.raises(ValueError, match="p"):
        miners.BatchHardMiner(distance="minkowski")


def test_unknown_miner():
    with pytest.raises(ValueError, match="hardest") as info:
        losses.TripletLoss(miner="hardest")
    assert "semi-hard" in str(info.value), "the message should list the valid miners"
    with pytest.raises(ValueError, match="hardest"):
        losses.triplet_loss(LABELS, EMB, miner="hardest")
    with pytest.raises(ValueError, match=r"(?i)miner"):
        losses.TripletLoss(miner=42)


def test_unknown_miner_options():
    with pytest.raises(ValueError, match="hardest"):
        miners.BatchAllMiner(select="hardest")
    with pytest.raises(ValueError, match="nearest"):
        miners.SemiHardMiner(fallback="nearest")
    with pytest.raises(ValueError, match="median"):
        losses.TripletLoss(average="median")


@pytest.mark.parametrize(
    "make",
    [
        lambda: losses.TripletLoss(margin=-0.1),
        lambda: losses.QuadrupletLoss(margin=-0.1),
        lambda: losses.QuadrupletLoss(margin2=-0.1),
        lambda: miners.BatchAllMiner(margin=-0.1),
        lambda: tfa.TripletSemiHardLoss(margin=-0.1),
        lambda: tfa.TripletHardLoss(margin=-0.1),
        lambda: losses.triplet_loss(LABELS, EMB, margin=-0.1),
        lambda: losses.quadruplet_loss(LABELS, EMB, margin=-0.1),
        lambda: tfa.triplet_semihard_loss(LABELS, EMB, margin=-0.1),
        lambda: tfa.triplet_hard_loss(LABELS, EMB, margin=-0.1),
    ],
)
def test_negative_margin(make):
    with pytest.raises(ValueError, match=r"margin") as info:
        make()
    assert "-0.1" in str(info.value)


@pytest.mark.parametrize("alpha", [0, -10, 90, 120, float("nan")])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        losses.AngularLoss(alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        losses.angular_loss(LABELS, EMB, alpha=alpha)


def test_soft_margin_with_batch_all():
    with pytest.raises(ValueError, match="soft_margin"):
        losses.TripletLoss(miner="batch-all", soft_margin=True)
    with pytest.raises(ValueError, match="soft_margin"):
        losses.triplet_loss(LABELS, EMB, miner="batch-all", soft_margin=True)


def test_miner_bad_inputs():
    miner = miners.BatchHardMiner()
    with pytest.raises(ValueError, match=r"(?i)label"):
        miner(np.array([0, 0, 1]), embeddings=EMB)
    with pytest.raises(ValueError, match=r"(?i)2-D|rank|shape"):
        miner(LABELS, embeddings=np.zeros((4,), "float32"))
    with pytest.raises(ValueError, match=r"(?i)integer|label"):
        miner(np.array([0.0, 0.5, 1.0, 1.0], "float32"), embeddings=EMB)


def test_valid_inputs_do_not_raise():
    # Whole-number float labels (what Keras hands a loss) and [B, 1] labels are fine.
    for loss in (
        losses.TripletLoss(),
        losses.QuadrupletLoss(),
        losses.AngularLoss(),
        tfa.TripletSemiHardLoss(),
    ):
        loss(LABELS.astype("float32"), EMB)
        loss(LABELS.reshape(-1, 1), EMB)
    losses.TripletLoss(margin=0.0)
    losses.AngularLoss(alpha=1e-3)
    losses.AngularLoss(alpha=65.0)


# ------------------------------------------------ the NumPy side of the label checker

from keras_triplet._validation import (
    check_embedding_array,
    check_int,
    check_label_array,
)


def test_label_array_accepts_what_the_tensor_checker_accepts():
    for labels in (LABELS, LABELS.reshape(-1, 1), LABELS.astype("float32"), LABELS.astype(bool)):
        out = check_label_array(labels, 4)
        assert out.dtype == np.int64 and out.tolist() == labels.reshape(-1).astype(int).tolist()
    assert check_label_array(np.array(["a", "b"], dtype=object)).tolist() == ["a", "b"]
    assert check_label_array(np.array([b"a", b"b"])).tolist() == ["a", "b"]


@pytest.mark.parametrize(
    "labels,kwargs,error,match",
    [
        (np.zeros((4, 2)), {}, ValueError, r"1-D.*\(4, 2\).*argmax"),
        ([0, 1, 1], {"size": 4}, ValueError, r"3 entries.*4 rows"),
        ([0.0, 0.5], {}, ValueError, r"non-integer.*0\.5"),
        ([0.0, np.nan], {}, ValueError, r"non-integer.*nan"),
        (["a", "b"], {"strings": False}, TypeError, "return_inverse"),
        (np.array([object()]), {}, ValueError, "integers or strings"),
        (np.array([object()]), {"strings": False}, TypeError, "integer class ids"),
        ([0, 2**40], {"int32": True}, ValueError, "int32"),
    ],
)
def test_label_array_errors(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_label_array(labels, **kwargs)


def test_tensor_and_array_checkers_say_the_same():
    """One set of rules: the same bad labels give the same message on both sides."""
    for bad, size in (
        (np.zeros((4, 2), "float32"), None),
        (np.array([0.0, 0.5, 1.0, 1.0]), None),
        (np.array([0, 0, 1]), 4),
    ):
        with pytest.raises(ValueError) as tensor_error:
            from keras_triplet._validation import check_labels

            check_labels(bad, batch_size=size, name="labels")
        with pytest.raises(ValueError) as array_error:
            check_label_array(bad, size, name="labels", items="the batch of embeddings")
        assert str(tensor_error.value) == str(array_error.value)


def test_embedding_array_and_int_checks():
    assert check_embedding_array([[1, 2]], dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"2-D.*\(3,\)"):
        check_embedding_array(np.zeros(3))
    with pytest.raises(ValueError, match="real numbers"):
        check_embedding_array(np.array([["a"]]))
    with pytest.raises(ValueError, match="NaN"):
        check_embedding_array([[np.inf]])
    assert check_int("k", np.int64(3), 1, "why") == 3
    with pytest.raises(TypeError, match="integer"):
        check_int("k", True, 1, "why")
    with pytest.raises(ValueError, match=r"at least 1 \(why\)"):
        check_int("k", 0, 1, "why")
