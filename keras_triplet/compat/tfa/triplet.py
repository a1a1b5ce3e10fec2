"""tensorflow-addons' triplet losses (`TripletSemiHardLoss`, `TripletHardLoss`), on any backend.

The values match tensorflow-addons 0.23, corner cases included, with **one deliberate
difference**: on a batch without any positive pair, tensorflow-addons' semi-hard loss is
NaN (0/0); ours is 0, so one unlucky batch cannot poison a training run.
"""

import keras
from keras import ops

from keras_triplet._validation import as_float, check_embeddings, check_labels, check_margin
from keras_triplet.compat.tfa.dtypes import like_input
from keras_triplet.distances import pairwise_distances
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.masked_extremes import gather_rows, masked_argmax, masked_argmin
from keras_triplet.miners.semi_hard import SemiHardMiner

DISTANCE_METRICS = {"L2": "euclidean", "squared-L2": "squared_euclidean", "angular": "angular"}


def _check_metric(distance_metric):
    if not callable(distance_metric) and distance_metric not in DISTANCE_METRICS:
        raise ValueError(
            f"Unknown distance_metric {distance_metric!r}; expected 'L2', 'squared-L2', "
            "'angular' or a callable returning a [B, B] distance matrix."
        )
    return distance_metric


def _distances(embeddings, distance_metric):
    if callable(_check_metric(distance_metric)):
        return as_float(distance_metric(embeddings))
    if distance_metric == "angular":
        # tensorflow-addons does not zero the angular diagonal: a zero embedding is at
        # distance 1 from itself. Its corner cases read the diagonal, so keep it.
        return pairwise_distances(embeddings, embeddings, metric="angular")
    return pairwise_distances(embeddings, metric=DISTANCE_METRICS[distance_metric])


def _prepare(y_true, y_pred, distance_metric):
    embeddings = check_embeddings(y_pred)
    labels = check_labels(y_true, batch_size=embeddings.shape[0])
    return labels, _distances(embeddings, distance_metric), embeddings


def triplet_semihard_loss(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """tensorflow-addons' `triplet_semihard_loss`, on any backend.

    For every positive pair `(a, p)`: `max(d(a, p) − d(a, n) + margin, 0)` with `n` the
    semi-hard negative (`keras_triplet.miners.SemiHardMiner`, falling back to the farthest
    negative), summed and divided by the number of positive pairs. In a batch of one class
    (no negative at all), tensorflow-addons uses the smallest entry of the anchor's row
    (its self-distance, usually 0) for `d(a, n)`, and so do we. A batch without positive
    pairs gives 0 (tensorflow-addons: NaN). Computed in float32 for float16 / bfloat16
    embeddings; the loss has the embeddings' dtype, as in tensorflow-addons.

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> float(triplet_semihard_loss(labels, emb, margin=1.0))
    0.875
    """
    margin = check_margin(margin)
    labels, distances, embeddings = _prepare(y_true, y_pred, distance_metric)
    positive, negative = pair_masks(labels)
    selected = SemiHardMiner(fallback="farthest").mine(labels, distances)
    any_negative = ops.any(negative)
    row_min = ops.min(distances, axis=1, keepdims=True)
    negative_distance = ops.where(any_negative, selected["negative_distance_sum"], row_min)
    hinge = ops.where(positive, ops.relu(distances - negative_distance + margin), 0.0)
    value = ops.sum(hinge) / ops.maximum(ops.sum(ops.cast(positive, hinge.dtype)), 1.0)
    return like_input(propagate_nonfinite(value, embeddings), y_pred)


def triplet_hard_loss(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2"):
    """tensorflow-addons' `triplet_hard_loss` (batch-hard), on any backend.

    The mean over **all** anchors of `max(d(a, p*) − d(a, n*) + margin, 0)` (or
    `log(1 + exp(d(a, p*) − d(a, n*)))` with `soft=True`), `p*` the farthest positive and
    `n*` the closest negative. As in tensorflow-addons, an anchor without a positive uses
    the smallest entry of its row (its self-distance, 0) for `d(a, p*)`, and an anchor
    without a negative the largest entry of its row for `d(a, n*)`. The loss has the
    embeddings' dtype (computed in float32 for half precision).

    Example:

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1])
    >>> emb = np.array([[0.0], [1.0], [0.5], [3.0]], "float32")
    >>> float(triplet_hard_loss(labels, emb, margin=1.0))
    1.875
    """
    margin = check_margin(margin)
    labels, distances, embeddings = _prepare(y_true, y_pred, distance_metric)
    positive, negative = pair_masks(labels)
    hardest_positive, has_positive = masked_argmax(distances, positive)
    hardest_negative, has_negative = masked_argmin(distances, negative)
    d_ap = ops.where(has_positive, gather_rows(distances, hardest_positive), ops.min(distances, axis=1))
    d_an = ops.where(has_negative, gather_rows(distances, hardest_negative), ops.max(distances, axis=1))
    if soft:
        per_anchor = ops.softplus(d_ap - d_an)
    else:
        per_anchor = ops.relu(d_ap - d_an + margin)
    return like_input(propagate_nonfinite(ops.mean(per_anchor), embeddings), y_pred)


class _TFALoss(keras.losses.Loss):
    def __init__(self, margin=1.0, distance_metric="L2", name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_margin(margin)
        self.distance_metric = _check_metric(distance_metric)

    def get_config(self):
        config = super().get_config()
        metric = self.distance_metric
        if callable(metric):
            metric = keras.saving.serialize_keras_object(metric)
        config.update({"margin": self.margin, "distance_metric": metric})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("distance_metric"), dict):
            config["distance_metric"] = keras.saving.deserialize_keras_object(config["distance_metric"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_triplet")
class TripletSemiHardLoss(_TFALoss):
    """tensorflow-addons' `TripletSemiHardLoss`; see `triplet_semihard_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=TripletSemiHardLoss(margin=1.0))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(TripletSemiHardLoss(margin=1.0)(labels, emb)), 4)
    0.5145
    """

    def __init__(self, margin=1.0, distance_metric="L2", name="triplet_semihard_loss", **kwargs):
        super().__init__(margin=margin, distance_metric=distance_metric, name=name, **kwargs)

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(y_true, y_pred, self.margin, self.distance_metric)


@keras.saving.register_keras_serializable(package="keras_triplet")
class TripletHardLoss(_TFALoss):
    """tensorflow-addons' `TripletHardLoss`; see `triplet_hard_loss`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=TripletHardLoss(margin=1.0, soft=True))
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> emb = np.array([[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, -0.6], [-1.0, 0.0], [-0.6, 0.8]], "float32")
    >>> round(float(TripletHardLoss(margin=1.0, soft=True)(labels, emb)), 4)
    0.5851
    """

    def __init__(self, margin=1.0, soft=False, distance_metric="L2", name="triplet_hard_loss", **kwargs):
        super().__init__(margin=margin, distance_metric=distance_metric, name=name, **kwargs)
        self.soft = bool(soft)

    def call(self, y_true, y_pred):
        return triplet_hard_loss(y_true, y_pred, self.margin, self.soft, self.distance_metric)

    def get_config(self):
        config = super().get_config()
        config["soft"] = self.soft
        return config
