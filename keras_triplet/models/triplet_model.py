"""`TripletModel`: a `keras.Model` that trains an embedding network with a metric loss.

The shared logic lives here; the train/test steps that differ between backends (how
gradients are taken and how state is threaded) live in one small module per backend
(`_tensorflow.py`, `_jax.py`, `_torch.py`), chosen once, in `_backend_steps()`.

One training step, as data:

    x ─ embedder ─▶ raw [B, D] ─ L2-normalise ─▶ embeddings [B, D]
      ─▶ ONE distance matrix d = loss.pairwise(embeddings)            [B, B]
         (with cross-batch memory: ++ d(embeddings, memory)  →        [B, B + M])
      ─▶ loss.compute_from_distances(labels, d)                       scalar
      ─▶ miners.triplet_statistics(labels, stop_gradient(d[:, :B]))  logged metrics
"""

import keras
import numpy as np
from keras import ops
from keras.utils import unpack_x_y_sample_weight

from keras_triplet import distances as distances_module
from keras_triplet._validation import check_labels
from keras_triplet.models import memory as memory_module

STATISTICS = (
    "active_fraction",
    "positive_distance",
    "negative_distance",
    "hard_fraction",
    "embedding_norm",
)
RECALL_NAME = "recall@1"
_NORM_EPSILON = 1e-12


def _backend_steps():
    """The mixin holding `train_step` / `test_step` for the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_triplet.models._tensorflow import TensorFlowSteps

        return TensorFlowSteps
    if backend == "jax":
        from keras_triplet.models._jax import JAXSteps

        return JAXSteps
    if backend == "torch":
        from keras_triplet.models._torch import TorchSteps

        return TorchSteps

    class UnsupportedBackendSteps:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                f"TripletModel supports the tensorflow, jax and torch backends; the current "
                f"Keras backend is {backend!r}. Set KERAS_BACKEND before importing keras."
            )

    return UnsupportedBackendSteps


def _compute_output_spec(layer, inputs):
    """Runs `layer` symbolically (what `Model.fit` does to build a model)."""
    try:
        from keras.src.backend import compute_output_spec
    except ImportError:  # a Keras without this private helper: a symbolic call
        return layer(inputs)
    return compute_output_spec(layer, inputs)


def _metric_loss_class():
    from keras_triplet.losses import MetricLoss

    return MetricLoss


def loss_and_statistics(loss_fn, labels, distances):
    """A metric loss's value and the mining statistics of one `[B, B]` distance matrix,
    as a training step computes them: `(loss, miners.triplet_statistics(...))`.

    One search of the negatives (`miners.search.with_negatives`: direct for P×K
    batches, sorted otherwise) serves the loss's miner and the statistics; the
    statistics see the distances with gradients stopped.
    """
    from keras_triplet.miners import pair_masks, triplet_statistics
    from keras_triplet.miners.search import with_negatives

    blocked = ops.stop_gradient(distances)

    def compute(negatives):
        value = loss_fn.compute_from_distances(labels, distances, negatives=negatives)
        return value, triplet_statistics(labels, blocked, margin=loss_fn.margin, negatives=negatives)

    positive, negative = pair_masks(labels)
    return with_negatives(distances, negative, positive, compute)


def in_batch_recall_at_1(labels, distances):
    """Fraction of the batch whose nearest *other* item (leave-one-out) has its label.

    `distances` is the `[B, B]` in-batch matrix; ties go to the lowest index.
    """
    n = ops.shape(distances)[0]
    idx = ops.arange(n)
    self_pair = ops.expand_dims(idx, 1) == ops.expand_dims(idx, 0)
    big = ops.cast(np.finfo("float32").max, distances.dtype)
    nearest = ops.argmin(ops.where(self_pair, big, distances), axis=1)
    hit = ops.take(labels, nearest, axis=0) == labels
    return ops.mean(ops.cast(hit, "float32"))


@keras.saving.register_keras_serializable(package="keras_triplet")
class TripletModel(_backend_steps(), keras.Model):
    """Trains any Keras embedding network with a `keras_triplet` metric loss.

    `TripletModel(embedder)` wraps a network that maps a batch of inputs to `[B, D]`
    embeddings; `TripletModel(inputs, outputs)` builds that network functionally. Calling
    the model (and `predict`, `embed`) returns the embeddings, L2-normalised when
    `normalize=True`, always in float32 (also under mixed precision).

    Compiled with a `keras_triplet.losses.MetricLoss` (`TripletLoss`, `QuadrupletLoss`,
    `AngularLoss`, ...), each step computes **one** distance matrix with
    `loss.pairwise(embeddings)`, shares it between the loss
    (`loss.compute_from_distances`) and the mining statistics
    (`keras_triplet.miners.triplet_statistics`), and logs beside the loss:

    * `active_fraction`: fraction of all triplets with a non-zero hinge at the loss margin;
    * `positive_distance`, `negative_distance`: mean distance of positive / negative pairs;
    * `hard_fraction`: fraction of triplets whose negative is closer than the positive;
    * `embedding_norm`: mean norm of the embeddings *before* normalisation;
    * `recall@1` (in `evaluate` only): in-batch leave-one-out Recall@1.

    With any other loss the model falls back to Keras' usual loss computation (the
    targets `y` are then compared with the embeddings by that loss).

    Cross-batch memory (Wang et al., "Cross-Batch Memory for Embedding Learning",
    CVPR 2020): with `memory_size=M > 0` the model keeps the last `M` training
    embeddings and labels in a FIFO queue (non-trainable variables, saved with the
    model) and computes the training loss on the `[B, B + M]` distances between the
    batch and (batch ++ memory), so every anchor also finds positives and negatives
    among recent batches. The memory holds detached embeddings, is filled after the
    loss of each step, and is not used by `evaluate`. Labels must be `>= 0` (a negative
    label marks an empty slot).

    Args:
        embedder: a Keras layer or model mapping inputs to `[B, D]` embeddings; or, in the
            functional form `TripletModel(inputs, outputs)`, the inputs.
        outputs: the outputs of the functional form.
        normalize: L2-normalise the embeddings (default True).
        memory_size: size `M` of the cross-batch memory; 0 (default) disables it.
        name, dtype, trainable: as for any Keras model.

    Example:

    >>> import numpy as np, keras
    >>> from keras_triplet import TripletModel, losses
    >>> embedder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = TripletModel(embedder)
    >>> model.compile(optimizer="adam", loss=losses.TripletLoss(margin=0.2))
    >>> x = np.random.rand(32, 8).astype("float32"); y = np.repeat(np.arange(8), 4)
    >>> history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    >>> sorted(history.history)[:3]
    ['active_fraction', 'embedding_norm', 'hard_fraction']
    >>> model.embed(x).shape
    (32, 4)
    """

    def __init__(
        self,
        embedder=None,
        outputs=None,
        *,
        inputs=None,
        normalize=True,
        memory_size=0,
        **kwargs,
    ):
        if outputs is not None:
            # Functional form: TripletModel(inputs, outputs) / (inputs=..., outputs=...).
            if inputs is None:
                inputs = embedder
            elif embedder is not None:
                raise ValueError(
                    "Pass either TripletModel(embedder) or TripletModel(inputs, outputs), "
                    "not an embedder and inputs= together."
                )
            embedder = keras.Model(inputs, outputs, name="embedder")
        elif inputs is not None:
            raise ValueError(
                "TripletModel(inputs=...) needs outputs=... too (the functional form is "
                "TripletModel(inputs, outputs))."
            )
        if embedder is None:
            raise ValueError(
                "TripletModel needs an embedding network: TripletModel(embedder) with a Keras "
                "layer or model, or TripletModel(inputs, outputs)."
            )
        if not isinstance(embedder, keras.layers.Layer):
            raise TypeError(
                "TripletModel's embedder must be a Keras layer or model (e.g. a "
                f"keras.Sequential or a functional keras.Model); got {type(embedder).__name__}."
            )
        memory_size = int(memory_size)
        if memory_size < 0:
            raise ValueError(
                f"memory_size must be >= 0 (0 disables the cross-batch memory); got {memory_size}."
            )
        super().__init__(**kwargs)
        self.embedder = embedder
        self.normalize = bool(normalize)
        self.memory_size = memory_size
        self.memory = (
            memory_module.CrossBatchMemory(memory_size, name="cross_batch_memory")
            if memory_size
            else None
        )
        self._statistic_trackers = [keras.metrics.Mean(name=n) for n in STATISTICS]
        self._recall_tracker = keras.metrics.Mean(name=RECALL_NAME)

    # ------------------------------------------------------------------ forward pass

    def _embedder_output_spec(self, input_shape):
        """The embedder's symbolic output for `input_shape` (builds the embedder)."""
        inputs = keras.tree.map_shape_structure(lambda s: keras.KerasTensor(s), input_shape)
        return _compute_output_spec(self.embedder, inputs)

    def build(self, input_shape):
        if not self.embedder.built or self.memory is not None:
            spec = self._embedder_output_spec(input_shape)
            if self.memory is not None and not self.memory.built:
                if len(spec.shape) != 2:
                    raise ValueError(self._rank_message(spec.shape))
                self.memory.build(spec.shape[-1])
        self.built = True

    @staticmethod
    def _rank_message(shape):
        return (
            "TripletModel's embedder must return 2-D embeddings of shape [batch_size, "
            f"embedding_dim]; it returns shape {tuple(shape)}. End it with a pooling or "
            "Flatten layer (e.g. keras.layers.GlobalAveragePooling2D) and a Dense layer."
        )

    def call(self, inputs, training=None, return_raw=False):
        """Embeddings `[B, D]` (float32, L2-normalised if `normalize`).

        With `return_raw=True` returns `(raw, embeddings)`, `raw` being the embedder's
        output (float32) before normalisation: the training step logs its norm.
        """
        raw = self.embedder(inputs, training=training)
        if len(raw.shape) != 2:
            raise ValueError(self._rank_message(raw.shape))
        raw = ops.cast(raw, "float32")
        embeddings = distances_module.l2_normalize(raw) if self.normalize else raw
        if return_raw:
            return raw, embeddings
        return embeddings

    def compute_output_shape(self, input_shape):
        return self._embedder_output_spec(input_shape).shape

    def embed(self, x, batch_size=256, verbose=0):
        """Embeds `x` (arrays, a `tf.data.Dataset`, a `PyDataset`, ...) and returns NumPy.

        Example:

        >>> import numpy as np, keras
        >>> model = TripletModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        >>> model.embed(np.ones((5, 3), "float32"), batch_size=2).shape
        (5, 2)
        """
        embeddings = self.predict(x, batch_size=batch_size, verbose=verbose)
        return np.asarray(ops.convert_to_numpy(embeddings), dtype="float32")

    # ------------------------------------------------------------------ shared step logic

    def _metric_loss(self):
        """The compiled `MetricLoss`, or None (Keras' usual loss computation is used then)."""
        loss = getattr(self, "loss", None)
        if loss is None:
            return None
        return loss if isinstance(loss, _metric_loss_class()) else None

    @property
    def metrics(self):
        own = {id(m) for m in self._triplet_trackers()}
        metrics = [m for m in super().metrics if id(m) not in own]
        if self.compiled and self._metric_loss() is not None:
            metrics.extend(self._triplet_trackers())
        return metrics

    def _triplet_trackers(self):
        trackers = list(getattr(self, "_statistic_trackers", []))
        recall = getattr(self, "_recall_tracker", None)
        return trackers + ([recall] if recall is not None else [])

    def _memory_state(self):
        return self.memory.state() if self.memory is not None else None

    def _assign_memory(self, state):
        if self.memory is not None and state is not None:
            self.memory.assign(state)

    def _stateful_test_step(self, data):
        """`test_step` of the backends with mutable state (TensorFlow, PyTorch)."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._check_sample_weight(sample_weight)
        raw, embeddings = self(x, training=False, return_raw=True)
        loss, stats, _ = self._triplet_loss(y, raw, embeddings, None, training=False)
        extra = self._auxiliary_loss(self.losses)
        if extra is not None:
            loss = loss + extra
        return self._update_metrics(loss, stats, x, y, embeddings, training=False)

    @staticmethod
    def _check_sample_weight(sample_weight):
        if sample_weight is not None:
            raise ValueError(
                "TripletModel with a keras_triplet metric loss does not support sample_weight "
                "or class_weight: a triplet loss is a function of the whole batch, not a mean "
                "of per-example terms. Balance classes with a P×K sampler "
                "(keras_triplet.data.PKSampler) instead."
            )

    @staticmethod
    def _auxiliary_loss(losses):
        """Sum of `add_loss` / regularisation losses (float32 scalar), or None."""
        total = None
        for value in losses or ():
            value = ops.sum(ops.cast(value, "float32"))
            total = value if total is None else total + value
        return total

    def _triplet_loss(self, y, raw, embeddings, memory_state=None, training=False):
        """Loss, statistics and the next memory state for one batch.

        Pure (no variable is read or written), so the JAX step can call it inside
        `jax.value_and_grad`. Returns `(loss, logs_values, new_memory_state)` where
        `logs_values` maps each name of `STATISTICS` (and `recall@1` when not training) to
        a scalar, and `new_memory_state` is None unless training with memory.
        """
        from keras_triplet.miners import triplet_statistics

        loss_fn = self._metric_loss()
        labels = ops.cast(check_labels(y, batch_size=embeddings.shape[0]), "int32")
        distances = loss_fn.pairwise(embeddings)  # [B, B], computed once per step
        blocked = ops.stop_gradient(distances)
        new_memory = None
        if training and memory_state is not None:
            memory_embeddings, memory_labels = memory_state[0], memory_state[1]
            valid = memory_module.valid_mask(memory_state)
            memory_distances = distances_module.pairwise_distances(
                embeddings,
                ops.cast(memory_embeddings, embeddings.dtype),
                metric=loss_fn.distance,
                p=loss_fn.p,
            )
            all_distances = ops.concatenate([distances, memory_distances], axis=1)
            ref_labels = ops.concatenate(
                [labels, ops.where(valid, memory_labels, -1)], axis=0
            )
            value = loss_fn.compute_from_distances(labels, all_distances, ref_labels=ref_labels)
            new_memory = memory_module.push(memory_state, embeddings, labels)
            stats = triplet_statistics(labels, blocked, margin=loss_fn.margin)
        else:
            value, stats = loss_and_statistics(loss_fn, labels, distances)

        stats = dict(stats)
        raw = ops.stop_gradient(raw)
        stats["embedding_norm"] = ops.mean(
            ops.sqrt(ops.sum(ops.square(raw), axis=-1))
        )
        if not training:
            stats[RECALL_NAME] = in_batch_recall_at_1(labels, blocked)
        stats = {k: ops.cast(v, "float32") for k, v in stats.items()}
        return ops.cast(value, "float32"), stats, new_memory

    def _update_metrics(self, loss, stats, x, y, y_pred, training):
        """Updates the loss tracker, compiled metrics and statistics; returns the logs.

        Stateful: the JAX step runs it inside a `StatelessScope`.
        """
        batch_size = ops.shape(y_pred)[0]
        self._loss_tracker.update_state(loss, sample_weight=batch_size)
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, None)
        for tracker in self._statistic_trackers:
            tracker.update_state(stats[tracker.name])
        if not training:
            self._recall_tracker.update_state(stats[RECALL_NAME], sample_weight=batch_size)
        logs = {}
        for metric in self.metrics:
            if training and metric is self._recall_tracker:
                continue
            result = metric.result()
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
        return logs

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "embedder": keras.saving.serialize_keras_object(self.embedder),
            "normalize": self.normalize,
            "memory_size": self.memory_size,
        }
        if self.dtype_policy is not None:
            config["dtype"] = keras.saving.serialize_keras_object(self.dtype_policy)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        embedder = keras.saving.deserialize_keras_object(
            config.pop("embedder"), custom_objects=custom_objects
        )
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(embedder, **config)
