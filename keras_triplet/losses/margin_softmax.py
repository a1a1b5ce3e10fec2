"""Margin-softmax losses: a softmax classifier over cosine similarities to trainable class
centres, with a margin on the true class (`ArcFaceLoss`, `CosFaceLoss`,
`SubCenterArcFaceLoss`).

The centres are `W` `[embedding_size, num_classes]` (`[embedding_size, num_classes ×
sub_centers]` for sub-centre ArcFace, column `c · sub_centers + k`), pytorch-metric-
learning's layout; where they live and how a model trains and saves them:
`class_weights.py`.
"""

import math

import keras
from keras import ops

from keras_triplet._backend import margin_cross_entropy
from keras_triplet._validation import check_embeddings, check_int, check_labels
from keras_triplet.distances import l2_normalize, safe_sqrt
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.losses.class_weights import (
    ClassWeightLoss,
    check_class_labels,
    nan_if_out_of_range,
)


def _scaled_cosine(embeddings, weights, scale, labels, sub_centers=1):
    """`scale ×` the cosine similarities of the embeddings and W's columns (the largest
    over each class's sub-centres): the `[B, C]` logits, and `[B]` those of each row's own
    class `labels[i]`."""
    normalized = l2_normalize(embeddings)
    if scale > 0:
        # The scale multiplies the [B, D] embeddings, not the [B, C] product (the same
        # values: exactly so for a power of two such as the default 64; a positive scale
        # commutes with the max over sub-centres). One [B, C] array less.
        normalized = scale * normalized
    centres = l2_normalize(weights, axis=0)
    cosine = ops.matmul(normalized, centres)
    if sub_centers > 1:
        num_classes = weights.shape[1] // sub_centers
        cosine = ops.max(ops.reshape(cosine, (-1, num_classes, sub_centers)), axis=2)
        # The max over sub-centres has no [B, D] form: read the own class from [B, C].
        own = ops.squeeze(ops.take_along_axis(cosine, ops.expand_dims(labels, 1), axis=1), 1)
    else:
        # Each row's own class from its [B, D] row and its class's column of W: a gather
        # from the [B, C] product would cost, in its gradient, a zeroed [B, C] array and
        # its sum into the product's gradient.
        own = ops.sum(normalized * ops.transpose(ops.take(centres, labels, axis=1)), axis=1)
    if scale > 0:
        return cosine, own
    return scale * cosine, scale * own


def _margin_softmax(labels, logits, target_logit):
    """Mean over the batch of `−log softmax(ℓ)[y]`, where `ℓ` is `logits` with each row's
    own class `logits[i, y_i]` replaced by `target_logit[i]`.

    `_backend.margin_cross_entropy`: one scatter into the `[B, C]` logits, whose gradient
    is the upstream one with those `B` entries zeroed (a `where` on a `[B, C]` class mask
    costs a mask, and on PyTorch its gradient another `[B, C]` array per branch), then a
    log-softmax (`logsumexp` makes four `[B, C]` passes forward and three backward); on
    PyTorch with its gradient written out."""
    return ops.mean(margin_cross_entropy(logits, labels, target_logit))


def arcface_from_weights(labels, embeddings, weights, margin=28.6, scale=64.0, sub_centers=1):
    """The (sub-centre) ArcFace loss of int32 `labels` `[B]`, float32 `embeddings` `[B, D]`
    and `weights` `[D, C · sub_centers]`; `margin` in degrees. See `arcface_loss`."""
    m = math.radians(margin)
    labels, logits, cos_t = _logits_and_own_cosine(labels, embeddings, weights, scale, sub_centers)
    # cos(θ + m) = cos θ cos m − sin θ sin m: no arccos, whose gradient is infinite at
    # cos θ = ±1 (safe_sqrt's gradient is 0 at sin θ = 0). Beyond θ = π − m
    # (cos θ < −cos m) the curve continues as cos θ − m sin m, monotonic, as in PML.
    sin_t = safe_sqrt(1.0 - ops.square(cos_t))
    with_margin = ops.where(
        cos_t >= -math.cos(m), cos_t * math.cos(m) - sin_t * math.sin(m), cos_t - m * math.sin(m)
    )
    return _margin_softmax(labels, logits, scale * with_margin)


def cosface_from_weights(labels, embeddings, weights, margin=0.35, scale=64.0):
    """The CosFace loss of int32 `labels` `[B]`, float32 `embeddings` `[B, D]` and
    `weights` `[D, C]`. See `cosface_loss`."""
    labels, logits, cos_t = _logits_and_own_cosine(labels, embeddings, weights, scale)
    return _margin_softmax(labels, logits, scale * (cos_t - margin))


def _logits_and_own_cosine(labels, embeddings, weights, scale, sub_centers=1):
    """The `[B, C]` logits `s cos θ`, `[B]` `cos θ` of each row's own class, and the
    labels clipped into `[0, C)` (the loss of a batch with an out-of-range label is NaN,
    `nan_if_out_of_range`, whatever is read for it)."""
    labels = ops.clip(labels, 0, weights.shape[1] // sub_centers - 1)
    logits, own = _scaled_cosine(embeddings, weights, scale, labels, sub_centers)
    # (s cos θ) / s is cos θ, exactly for a power-of-two scale. With s = 0 every logit is
    # 0 and the margin has no effect on the loss; cos θ is then read as 0.
    return labels, logits, own / scale if scale != 0 else own


def _weights_checker(sub_centers):
    def check(weights, embeddings):
        weights = ops.cast(check_embeddings(weights, name="W"), "float32")
        d, columns = weights.shape
        if (embeddings.shape[1] is not None and d != embeddings.shape[1]) or columns % sub_centers:
            raise ValueError(
                f"W must be [embedding_size, num_classes × sub_centers] = [{embeddings.shape[1]}, "
                f"C × {sub_centers}] (pytorch-metric-learning's layout); got shape {tuple(weights.shape)}."
            )
        return weights

    return check


def _functional(y_true, y_pred, weights, sub_centers, compute):
    embeddings = ops.cast(check_embeddings(y_pred), "float32")
    labels = ops.cast(check_labels(y_true, batch_size=embeddings.shape[0]), "int32")
    weights = _weights_checker(sub_centers)(weights, embeddings)
    num_classes = weights.shape[1] // sub_centers
    check_class_labels(labels, num_classes)
    value = nan_if_out_of_range(compute(labels, embeddings, weights), labels, num_classes)
    return propagate_nonfinite(value, embeddings)


def arcface_loss(y_true, y_pred, W, margin=28.6, scale=64.0):
    """ArcFace, additive angular margin loss (Deng, Guo, Xue and Zafeiriou, "ArcFace:
    Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019;
    pytorch-metric-learning's `ArcFaceLoss`), given the class centres `W` `[D, C]`.

    With `θ_ic` the angle between embedding i and column c of W, `m` = `margin` (degrees)
    and `s` = `scale`: the softmax cross-entropy, averaged over the batch, of the logits

        s · cos(θ_{i,y_i} + m)  for the true class,   s · cos θ_ic  for the others

    (past `θ = π − m` the true-class logit is `s (cos θ − m sin m)`, as in PML, so that it
    keeps decreasing). Memory `[B, C]`.

    Example:

    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")  # [D=2, C=3]
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(arcface_loss(np.array([0, 1, 1]), emb, W, scale=8.0)), 4)
    4.3958
    """
    return _functional(
        y_true, y_pred, W, 1, lambda y, x, w: arcface_from_weights(y, x, w, margin=margin, scale=scale)
    )


def cosface_loss(y_true, y_pred, W, margin=0.35, scale=64.0):
    """CosFace, large margin cosine loss (Wang, Wang, Zhou, Ji, Gong, Zhou, Li and Liu,
    "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018;
    pytorch-metric-learning's `CosFaceLoss`), given the class centres `W` `[D, C]`.

    With `cos θ_ic` the cosine similarity of embedding i and column c of W: the softmax
    cross-entropy, averaged over the batch, of the logits `s (cos θ_ic − m [c = y_i])`.
    Memory `[B, C]`.

    Example:

    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(cosface_loss(np.array([0, 1, 1]), emb, W, scale=8.0)), 4)
    4.1772
    """
    return _functional(
        y_true, y_pred, W, 1, lambda y, x, w: cosface_from_weights(y, x, w, margin=margin, scale=scale)
    )


def sub_center_arcface_loss(y_true, y_pred, W, margin=28.6, scale=64.0, sub_centers=3):
    """Sub-centre ArcFace (Deng, Guo, Liu, Zafeiriou, "Sub-center ArcFace: Boosting Face
    Recognition by Large-scale Noisy Web Faces", ECCV 2020; pytorch-metric-learning's
    `SubCenterArcFaceLoss`), given `W` `[D, C × sub_centers]`.

    ArcFace (`arcface_loss`) on `cos θ_ic = max_k cos(x_i, W[:, c · sub_centers + k])`:
    each class has `sub_centers` centres and an embedding is compared with the closest.
    Memory `[B, C × sub_centers]`.

    Example:

    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, -1.0, 0.0]], "float32")  # C=2, K=2
    >>> emb = np.array([[0.9, 0.1], [0.1, 0.9], [-0.9, 0.1]], "float32")
    >>> round(float(sub_center_arcface_loss(np.array([0, 1, 1]), emb, W, scale=8.0, sub_centers=2)), 4)
    4.179
    """
    sub_centers = check_int("sub_centers", sub_centers, 1, "centres per class")
    return _functional(
        y_true,
        y_pred,
        W,
        sub_centers,
        lambda y, x, w: arcface_from_weights(y, x, w, margin=margin, scale=scale, sub_centers=sub_centers),
    )


def _check_margin_degrees(margin):
    margin = float(margin)
    if not 0.0 <= margin < 180.0:
        raise ValueError(f"ArcFace's `margin` is an angle in degrees in [0, 180); got {margin}.")
    return margin


class _MarginSoftmaxLoss(ClassWeightLoss):
    """Shared by ArcFace, CosFace and sub-centre ArcFace: `W` `[D, C × sub_centers]`,
    initialised as PML does (standard normal)."""

    weight_name = "W"
    sub_centers = 1

    def __init__(self, num_classes, embedding_size, margin, scale, name=None, **kwargs):
        self.class_margin = float(margin)
        self.scale = float(scale)
        super().__init__(num_classes, embedding_size, name=name, **kwargs)

    def weight_shape(self):
        return (self.embedding_size, self.num_classes * self.sub_centers)

    def weight_initializer(self):
        return keras.initializers.RandomNormal(stddev=1.0)  # torch.nn.init.normal_

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.class_margin, "scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="keras_triplet")
class ArcFaceLoss(_MarginSoftmaxLoss):
    """ArcFace with trainable class centres; see `arcface_loss`. `margin` in degrees.

    `loss.get_weights()` is `[W]`, `[embedding_size, num_classes]` (PML's `W`). Train it in
    a `TripletModel` (which tracks `W`), see ARCHITECTURE.md.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> loss = ArcFaceLoss(num_classes=3, embedding_size=2, scale=8.0)
    >>> loss.set_weights([np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")])
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> value = loss(np.array([0, 1, 1]), emb)  # differentiable in W: detach to read it
    >>> round(float(keras.ops.convert_to_numpy(value)), 4)
    4.3958
    """

    def __init__(self, num_classes, embedding_size, margin=28.6, scale=64, name="arcface_loss", **kwargs):
        super().__init__(
            num_classes, embedding_size, _check_margin_degrees(margin), scale, name=name, **kwargs
        )

    def compute_from_weights(self, labels, embeddings, weights):
        return arcface_from_weights(
            labels, embeddings, weights, self.class_margin, self.scale, self.sub_centers
        )


@keras.saving.register_keras_serializable(package="keras_triplet")
class SubCenterArcFaceLoss(ArcFaceLoss):
    """Sub-centre ArcFace with trainable centres; see `sub_center_arcface_loss`.

    `loss.get_weights()` is `[W]`, `[embedding_size, num_classes × sub_centers]` (PML's
    `W`; column `c · sub_centers + k` is centre k of class c).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> loss = SubCenterArcFaceLoss(num_classes=2, embedding_size=2, scale=8.0, sub_centers=2)
    >>> loss.set_weights([np.array([[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, -1.0, 0.0]], "float32")])
    >>> emb = np.array([[0.9, 0.1], [0.1, 0.9], [-0.9, 0.1]], "float32")
    >>> value = loss(np.array([0, 1, 1]), emb)  # differentiable in W: detach to read it
    >>> round(float(keras.ops.convert_to_numpy(value)), 4)
    4.179
    """

    def __init__(
        self,
        num_classes,
        embedding_size,
        margin=28.6,
        scale=64,
        sub_centers=3,
        name="sub_center_arcface_loss",
        **kwargs,
    ):
        self.sub_centers = check_int("sub_centers", sub_centers, 1, "centres per class")
        super().__init__(num_classes, embedding_size, margin=margin, scale=scale, name=name, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["sub_centers"] = self.sub_centers
        return config


@keras.saving.register_keras_serializable(package="keras_triplet")
class CosFaceLoss(_MarginSoftmaxLoss):
    """CosFace with trainable class centres; see `cosface_loss`.

    `loss.get_weights()` is `[W]`, `[embedding_size, num_classes]` (PML's `W`). Train it in
    a `TripletModel`, see ARCHITECTURE.md.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> loss = CosFaceLoss(num_classes=3, embedding_size=2, scale=8.0)
    >>> loss.set_weights([np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], "float32")])
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> value = loss(np.array([0, 1, 1]), emb)  # differentiable in W: detach to read it
    >>> round(float(keras.ops.convert_to_numpy(value)), 4)
    4.1772
    """

    def __init__(self, num_classes, embedding_size, margin=0.35, scale=64, name="cosface_loss", **kwargs):
        super().__init__(num_classes, embedding_size, margin, scale, name=name, **kwargs)

    def compute_from_weights(self, labels, embeddings, weights):
        return cosface_from_weights(labels, embeddings, weights, self.class_margin, self.scale)
