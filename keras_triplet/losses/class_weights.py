"""Losses with trainable weights (a proxy or a class centre per class): where the weights
live, and the base class of the proxy and margin-softmax losses.

A `keras.losses.Loss` has no variables, so each of these losses owns one small Keras layer,
`ClassWeights` (`loss.weights_layer`), holding its single float32 variable in
pytorch-metric-learning's own layout (`proxies` `[num_classes, embedding_size]` or `W`
`[embedding_size, num_classes]`). The layer is what the model tracks (ARCHITECTURE.md,
"Losses with trainable weights"):

* `TripletModel.compile(loss=...)` attaches it as a sub-layer, so the weights are among the
  model's `trainable_variables`: `fit` trains them with the model's optimizer on every
  backend (JAX's stateless step carries them like any other trainable variable);
* `model.save` writes them (Keras walks `model.loss`, path `loss/weights_layer`), and
  `keras.saving.load_model` restores them into the loss it rebuilds from the compile
  config, on any backend;
* `loss.get_weights()` / `loss.set_weights([array])` read and write them as NumPy, so the
  numbers of pytorch-metric-learning can be reproduced from the same weights.
"""

import keras
import numpy as np
from keras import ops

from keras_triplet._validation import _concrete_values, check_embeddings, check_int, check_labels
from keras_triplet.losses.base import MetricLoss, propagate_nonfinite
from keras_triplet.losses.reductions import lowest


class ClassWeights(keras.layers.Layer):
    """The trainable weights of one loss: a single float32 variable of a fixed shape.

    It is a layer only so that a model can track it (`TripletModel` does); calling it
    returns its input unchanged.

    Args:
        shape: the variable's shape, in pytorch-metric-learning's layout for the loss.
        initializer: a Keras initializer (name, instance or config).
        variable_name: the variable's name (`"proxies"` or `"W"`, as in
            pytorch-metric-learning).
    """

    def __init__(self, shape, initializer="random_normal", variable_name="W", **kwargs):
        kwargs["dtype"] = "float32"  # weights stay float32 under mixed precision
        super().__init__(**kwargs)
        self.weight_shape = tuple(int(n) for n in shape)
        self.initializer = keras.initializers.get(initializer)
        self.variable_name = variable_name
        self.variable = self.add_weight(
            shape=self.weight_shape, initializer=self.initializer, name=variable_name, dtype="float32"
        )
        self.built = True

    def call(self, inputs):
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "shape": self.weight_shape,
                "initializer": keras.initializers.serialize(self.initializer),
                "variable_name": self.variable_name,
            }
        )
        return config


def check_class_labels(labels, num_classes, name="labels (y_true)"):
    """Raises when known label values lie outside `[0, num_classes)` (eager mode only;
    a compiled graph cannot see values, see `nan_if_out_of_range`)."""
    values = _concrete_values(labels)
    if values is None or not values.size:
        return
    bad = (values < 0) | (values >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{name} must be class ids in [0, num_classes) = [0, {num_classes}) for a loss "
            f"with one weight per class; got {sorted(set(values[bad].tolist()))[:3]}. "
            "Re-number the classes (e.g. `np.unique(labels, return_inverse=True)[1]`) or "
            "raise `num_classes`."
        )


def nan_if_out_of_range(value, labels, num_classes):
    """`value`, or NaN when a label lies outside `[0, num_classes)`: inside a compiled graph
    the values cannot be checked, and a NaN loss (caught by
    `keras.callbacks.TerminateOnNaN`) is better than a silently wrong one."""
    bad = ops.any(ops.logical_or(labels < 0, labels >= num_classes))
    return ops.where(bad, ops.cast(float("nan"), value.dtype), value)


def class_mask(labels, num_classes):
    """`[B, C]` boolean: row i is True at column `labels[i]`."""
    return ops.expand_dims(labels, 1) == ops.expand_dims(ops.arange(num_classes, dtype=labels.dtype), 0)


def masked_log1p_sum_exp(z, mask, axis):
    """`log(1 + Σ_{mask} exp(z))` along `axis` (0 where the mask is empty), stable for
    large `z`, with finite gradients (0 outside the mask)."""
    # Masked-out entries at the lowest float: exp(lowest − shift) is exactly 0, value and
    # gradient (see `reductions.masked_logsumexp`).
    shifted = ops.where(mask, z, lowest(z.dtype))
    shift = ops.stop_gradient(ops.maximum(ops.max(shifted, axis=axis, keepdims=True), 0.0))
    total = ops.exp(-shift) + ops.sum(ops.exp(shifted - shift), axis=axis, keepdims=True)
    return ops.squeeze(shift + ops.log(total), axis=axis)


class ClassWeightLoss(MetricLoss):
    """The base of the losses with one trainable weight per class (proxy and margin-softmax
    losses): embeddings against class weights, `[B, C]` memory, no `[B, B]` matrix.

    Subclasses set `weight_name` and implement `weight_shape()`, `weight_initializer()`
    and `compute_from_weights(labels, embeddings, weights)` (float32 labels `[B]` int32,
    embeddings `[B, D]`, the weights in their PML layout).

    `TripletModel`'s step calls `compute_from_embeddings` (these losses need the
    embeddings, not the `[B, B]` matrix; the matrix still feeds the logged statistics).
    The attribute `margin` stays None (it is the *triplet* margin that `TripletModel`
    logs `active_fraction` for); a loss's own margin argument is `class_margin`.
    """

    weight_name = "W"

    def __init__(self, num_classes, embedding_size, name=None, **kwargs):
        kwargs.pop("distance", None)
        kwargs.pop("p", None)
        super().__init__(distance="cosine", name=name, **kwargs)
        self.num_classes = check_int("num_classes", num_classes, 1, "one weight per class")
        self.embedding_size = check_int("embedding_size", embedding_size, 1, "the embedding dimension")
        self.weights_layer = ClassWeights(
            self.weight_shape(),
            initializer=self.weight_initializer(),
            variable_name=self.weight_name,
            name=f"{self.name}_weights",
        )

    def weight_shape(self):
        raise NotImplementedError

    def weight_initializer(self):
        raise NotImplementedError

    def compute_from_weights(self, labels, embeddings, weights):
        raise NotImplementedError

    # ------------------------------------------------------------------ the weights

    @property
    def variable(self):
        """The trainable variable (`proxies` or `W`)."""
        return self.weights_layer.variable

    @property
    def trainable_weights(self):
        return self.weights_layer.trainable_weights

    def get_weights(self):
        """`[array]`: the weights as NumPy, in pytorch-metric-learning's layout."""
        return self.weights_layer.get_weights()

    def set_weights(self, weights):
        """Sets the weights from `[array]` (pytorch-metric-learning's layout, e.g.
        `[pml_loss.W.detach().numpy()]`)."""
        weights = list(weights)
        if len(weights) != 1 or tuple(np.shape(weights[0])) != self.weight_shape():
            shapes = [tuple(np.shape(w)) for w in weights]
            raise ValueError(
                f"{type(self).__name__}.set_weights expects one array of shape "
                f"{self.weight_shape()} ({self.weight_name}); got shapes {shapes}."
            )
        self.weights_layer.set_weights([np.asarray(weights[0], dtype="float32")])

    # ------------------------------------------------------------------ the loss

    def call(self, y_true, y_pred):
        embeddings = check_embeddings(y_pred)
        labels = check_labels(y_true, batch_size=embeddings.shape[0])
        return self.compute_from_embeddings(labels, embeddings)

    def compute_from_embeddings(self, labels, embeddings):
        """The loss (scalar) from integer labels `[B]` and embeddings `[B, D]`: what
        `TripletModel`'s step calls. NaN when an embedding is not finite, or (in a
        compiled graph, where the labels cannot be checked) a label is out of range."""
        if embeddings.shape[-1] is not None and embeddings.shape[-1] != self.embedding_size:
            raise ValueError(
                f"{type(self).__name__} was built for embedding_size={self.embedding_size}; "
                f"the embeddings have {embeddings.shape[-1]} dimensions."
            )
        check_class_labels(labels, self.num_classes)
        labels = ops.cast(labels, "int32")
        embeddings = ops.cast(embeddings, "float32")
        value = self.compute_from_weights(labels, embeddings, ops.convert_to_tensor(self.variable))
        value = nan_if_out_of_range(value, labels, self.num_classes)
        return propagate_nonfinite(value, embeddings)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        raise TypeError(
            f"{type(self).__name__} compares embeddings with its class weights: it needs the "
            "embeddings, not a distance matrix. Call it as loss(labels, embeddings) or "
            "loss.compute_from_embeddings(labels, embeddings)."
        )

    def get_config(self):
        config = super().get_config()
        for key in ("distance", "p"):
            config.pop(key, None)
        config.update({"num_classes": self.num_classes, "embedding_size": self.embedding_size})
        return config


def reject_memory(loss_fn):
    """Raises for a loss with class weights combined with cross-batch memory."""
    raise ValueError(
        f"{type(loss_fn).__name__} compares each embedding with its class weights, not with "
        "other embeddings, so cross-batch memory does not apply to it: use "
        "TripletModel(memory_size=0) with this loss."
    )
