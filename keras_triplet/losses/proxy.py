"""Proxy losses: each class has a trainable proxy, and embeddings are pulled towards their
class's proxy and pushed from the others (`ProxyAnchorLoss`, `ProxyNCALoss`).

The proxies are `[num_classes, embedding_size]`, pytorch-metric-learning's `proxies`
layout; where they live and how a model trains and saves them: `class_weights.py`.
"""

import keras
from keras import ops

from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.distances import l2_normalize, pairwise_distances
from keras_triplet.losses.base import propagate_nonfinite
from keras_triplet.losses.class_weights import (
    ClassWeightLoss,
    check_class_labels,
    class_mask,
    masked_log1p_sum_exp,
    nan_if_out_of_range,
)


def _check_proxies(proxies, embeddings):
    proxies = check_embeddings(proxies, name="proxies")
    if (
        proxies.shape[1] is not None
        and embeddings.shape[1] is not None
        and proxies.shape[1] != embeddings.shape[1]
    ):
        raise ValueError(
            f"proxies must be [num_classes, embedding_size] with the embeddings' size "
            f"{embeddings.shape[1]}; got shape {tuple(proxies.shape)}."
        )
    return ops.cast(proxies, "float32")


def _functional(y_true, y_pred, weights, check_weights, compute):
    embeddings = ops.cast(check_embeddings(y_pred), "float32")
    labels = ops.cast(check_labels(y_true, batch_size=embeddings.shape[0]), "int32")
    weights = check_weights(weights, embeddings)
    num_classes = weights.shape[0]
    check_class_labels(labels, num_classes)
    value = nan_if_out_of_range(compute(labels, embeddings, weights), labels, num_classes)
    return propagate_nonfinite(value, embeddings)


# --------------------------------------------------------------------------- proxy-anchor


def proxy_anchor_from_weights(labels, embeddings, proxies, margin=0.1, alpha=32.0):
    """The proxy-anchor loss of int32 `labels` `[B]`, float32 `embeddings` `[B, D]` and
    `proxies` `[C, D]`; see `proxy_anchor_loss`."""
    num_classes = proxies.shape[0]
    similarity = ops.matmul(l2_normalize(embeddings), ops.transpose(l2_normalize(proxies)))  # [B, C]
    positive = class_mask(labels, num_classes)
    negative = ops.logical_not(positive)
    positive_term = masked_log1p_sum_exp(alpha * (margin - similarity), positive, axis=0)  # [C]
    negative_term = masked_log1p_sum_exp(alpha * (similarity + margin), negative, axis=0)  # [C]
    with_positives = ops.sum(ops.cast(ops.any(positive, axis=0), "float32"))
    return ops.sum(positive_term) / ops.maximum(with_positives, 1.0) + ops.sum(negative_term) / num_classes


def proxy_anchor_loss(y_true, y_pred, proxies, margin=0.1, alpha=32.0):
    """Proxy-anchor loss (Kim, Kim, Cho and Kwak, "Proxy Anchor Loss for Deep Metric
    Learning", CVPR 2020; pytorch-metric-learning's `ProxyAnchorLoss`), given the proxies.

    With `s_ic` the cosine similarity of embedding i and proxy c, `P` the classes present
    in the batch and `C` the number of proxies:

        ℓ = 1/|P| Σ_{c∈P} log(1 + Σ_{i: y_i=c} exp(−α (s_ic − δ)))
          + 1/C   Σ_c     log(1 + Σ_{i: y_i≠c} exp( α (s_ic + δ)))

    (`δ` = `margin`). Memory `[B, C]`.

    Args:
        y_true: integer labels `[B]` or `[B, 1]` in `[0, C)`.
        y_pred: embeddings `[B, D]`.
        proxies: `[C, D]` (a tensor, a variable or NumPy).

    Example:

    >>> import numpy as np
    >>> proxies = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], "float32")
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(proxy_anchor_loss(np.array([0, 0, 1]), emb, proxies)), 4)
    4.67
    """
    return _functional(
        y_true,
        y_pred,
        proxies,
        _check_proxies,
        lambda y, x, w: proxy_anchor_from_weights(y, x, w, margin=margin, alpha=alpha),
    )


@keras.saving.register_keras_serializable(package="keras_triplet")
class ProxyAnchorLoss(ClassWeightLoss):
    """Proxy-anchor loss with trainable proxies; see `proxy_anchor_loss`.

    `loss.get_weights()` is `[proxies]`, `[num_classes, embedding_size]` (PML's `proxies`),
    initialised as PML does (Kaiming normal, fan-out: N(0, 2 / num_classes)). Train it in a
    `TripletModel` (which tracks the proxies), see ARCHITECTURE.md.

    Example:

    >>> import keras, numpy as np
    >>> loss = ProxyAnchorLoss(num_classes=3, embedding_size=2)
    >>> loss.set_weights([np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], "float32")])
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(keras.ops.convert_to_numpy(loss(np.array([0, 0, 1]), emb))), 4)
    4.67
    """

    weight_name = "proxies"

    def __init__(self, num_classes, embedding_size, margin=0.1, alpha=32, name="proxy_anchor_loss", **kwargs):
        self.class_margin = float(margin)
        self.alpha = float(alpha)
        super().__init__(num_classes, embedding_size, name=name, **kwargs)

    def weight_shape(self):
        return (self.num_classes, self.embedding_size)

    def weight_initializer(self):
        # torch.nn.init.kaiming_normal_(mode="fan_out") on [C, D]: std sqrt(2 / C). Keras
        # counts a 2-D shape's fan-in as its first dimension (C).
        return keras.initializers.VarianceScaling(2.0, mode="fan_in", distribution="untruncated_normal")

    def compute_from_weights(self, labels, embeddings, weights):
        return proxy_anchor_from_weights(labels, embeddings, weights, self.class_margin, self.alpha)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.class_margin, "alpha": self.alpha})
        return config


# --------------------------------------------------------------------------- proxy-NCA


def proxy_nca_from_weights(labels, embeddings, proxies, softmax_scale=1.0):
    """The proxy-NCA loss of int32 `labels` `[B]`, float32 `embeddings` `[B, D]` and
    `proxies` `[C, D]`; see `proxy_nca_loss`."""
    num_classes = proxies.shape[0]
    # ‖x̂ − p̂‖² of the normalised rows (a zero embedding stays 0 and is at 1 from every proxy)
    squared = pairwise_distances(l2_normalize(embeddings), l2_normalize(proxies), metric="squared_euclidean")
    # −log softmax at the own class, through Keras's sparse cross-entropy (one fused
    # log-softmax and gather on PyTorch; a class mask and a `where` over `[B, C]` cost two
    # more passes, and as many in the gradient). Labels are clipped into range: a batch
    # with an out-of-range label is NaN (`nan_if_out_of_range`) whatever this reads.
    own = ops.clip(labels, 0, num_classes - 1)
    return ops.mean(ops.sparse_categorical_crossentropy(own, -softmax_scale * squared, from_logits=True))


def proxy_nca_loss(y_true, y_pred, proxies, softmax_scale=1.0):
    """Proxy-NCA loss (Movshovitz-Attias, Toshev, Leung, Ioffe and Singh, "No Fuss Distance
    Metric Learning using Proxies", ICCV 2017; pytorch-metric-learning's `ProxyNCALoss`),
    given the proxies.

    With `d_ic = ‖x̂_i − p̂_c‖²` (both L2-normalised) and `s` = `softmax_scale`:

        ℓ = −1/B Σ_i log( exp(−s d_{i,y_i}) / Σ_c exp(−s d_ic) )

    Memory `[B, C]`.

    Example:

    >>> import numpy as np
    >>> proxies = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], "float32")
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(proxy_nca_loss(np.array([0, 0, 1]), emb, proxies)), 4)
    0.1749
    """
    return _functional(
        y_true,
        y_pred,
        proxies,
        _check_proxies,
        lambda y, x, w: proxy_nca_from_weights(y, x, w, softmax_scale=softmax_scale),
    )


@keras.saving.register_keras_serializable(package="keras_triplet")
class ProxyNCALoss(ClassWeightLoss):
    """Proxy-NCA loss with trainable proxies; see `proxy_nca_loss`.

    `loss.get_weights()` is `[proxies]`, `[num_classes, embedding_size]` (PML's `proxies`),
    initialised as PML does (standard normal). Train it in a `TripletModel`, see
    ARCHITECTURE.md.

    Example:

    >>> import keras, numpy as np
    >>> loss = ProxyNCALoss(num_classes=3, embedding_size=2, softmax_scale=1)
    >>> loss.set_weights([np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], "float32")])
    >>> emb = np.array([[0.9, 0.1], [0.8, -0.2], [0.1, 0.9]], "float32")
    >>> round(float(keras.ops.convert_to_numpy(loss(np.array([0, 0, 1]), emb))), 4)
    0.1749
    """

    weight_name = "proxies"

    def __init__(self, num_classes, embedding_size, softmax_scale=1, name="proxy_nca_loss", **kwargs):
        self.softmax_scale = float(softmax_scale)
        super().__init__(num_classes, embedding_size, name=name, **kwargs)

    def weight_shape(self):
        return (self.num_classes, self.embedding_size)

    def weight_initializer(self):
        return keras.initializers.RandomNormal(stddev=1.0)  # torch.nn.init.normal_

    def compute_from_weights(self, labels, embeddings, weights):
        return proxy_nca_from_weights(labels, embeddings, weights, self.softmax_scale)

    def get_config(self):
        config = super().get_config()
        config["softmax_scale"] = self.softmax_scale
        return config
