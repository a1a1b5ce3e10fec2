"""`TripletModel`: a `keras.Model` that trains an embedding network with a metric loss.

This module holds the model: construction, the forward pass, `embed` and serialization,
and `compute_loss`, the documented Keras hook through which Keras' own `train_step` /
`test_step` (on TensorFlow, JAX and PyTorch alike) reach the metric loss. What one step
computes lives in `step.py`; the cross-batch memory's queue in `memory.py`.
"""

import inspect
import weakref

import keras
import numpy as np
from keras import ops

from keras_triplet import _backend
from keras_triplet import distances as distances_module
from keras_triplet.losses import ClassWeightLoss, MetricLoss
from keras_triplet.losses.class_weights import reject_memory
from keras_triplet.models import distributed, step
from keras_triplet.models import memory as memory_module
from keras_triplet.models.similarity import SimilarityMixin
from keras_triplet.models.step import RECALL_NAME, STATISTICS

# `statistics_freq="auto"`: the statistics of every 10th training step.
AUTO_STATISTICS_FREQ = 10


class _TrackerMean(keras.metrics.Mean):
    """`keras.metrics.Mean` whose result is computed once per change of its state where
    the step runs eagerly (`_backend.memoized_result`): Keras reads every metric after
    every step, and the statistics' trackers change only every N-th step."""

    def result(self):
        return _backend.memoized_result(self, super().result)


_FIT_SIGNATURE = inspect.signature(keras.Model.fit)
_EVALUATE_SIGNATURE = inspect.signature(keras.Model.evaluate)


@keras.saving.register_keras_serializable(package="keras_triplet")
class TripletModel(SimilarityMixin, keras.Model):
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

    Like Keras' metrics, each is the mean over the epoch's steps so far. With
    `statistics_freq=N` the statistics over triplets and pairs (all but `embedding_norm`)
    are computed in training on every N-th step of each epoch only (its first step
    included): between those steps the logs and the progress bar keep the last mean, and
    an epoch's value is the mean over the steps that computed them. The default, `"auto"`,
    computes them every 10th step. `evaluate` computes them on every batch.

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

    The similarity workflow of TF Similarity's `SimilarityModel` (`index`, `lookup`,
    `reset_index`, `index_summary`, `calibrate`, `match`, `evaluate_matching`, saved
    with the model by `model.save`) comes from `keras_triplet.models.similarity`.

    Args:
        embedder: a Keras layer or model mapping inputs to `[B, D]` embeddings; or, in the
            functional form `TripletModel(inputs, outputs)`, the inputs.
        outputs: the outputs of the functional form.
        normalize: L2-normalise the embeddings (default True).
        memory_size: size `M` of the cross-batch memory; 0 (default) disables it.
        mining: under data parallelism (`keras.distribution` on JAX, `tf.distribute`,
            `torch.distributed` after `models.data_parallel(model)`): `"global"`
            (default) mines the global batch, every replica's labels and embeddings
            gathered, and trains as one device would on the same global batches;
            `"per_replica"` mines each replica's slice alone (what tensorflow-addons
            did; cheaper under `tf.distribute`) and averages the slices' losses. The
            same on one device. See `keras_triplet/models/distributed.py`.
        statistics_freq: compute the mining statistics on every `statistics_freq`-th
            training step; `"auto"` (default): every `AUTO_STATISTICS_FREQ` (10)
            steps. They cost a few `[B, B]` passes per step, which BENCHMARKS.md
            measured at B = 256 (16 × 16) at about 1–2.5 % of a small CNN's training
            step under XLA (JAX, TensorFlow's `jit_compile=True`), 1–4 % in TensorFlow
            graphs without it and on eager PyTorch for semi-hard and batch-all mining,
            whose search they share, and 3–6 % with batch-hard mining, whose loss
            searches nothing: too large a share of the 5 % that mining may add to a
            step to pay on every step. `1` computes them every step; a larger value
            skips them on the other steps, search included (for a network whose step
            is small beside the `[B, B]` matrix).
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
        mining="global",
        statistics_freq="auto",
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
        distributed.check_mining(mining)
        if statistics_freq != "auto" and (
            not isinstance(statistics_freq, (int, np.integer))
            or isinstance(statistics_freq, bool)
            or statistics_freq < 1
        ):
            raise ValueError(
                "statistics_freq must be 'auto' or an integer >= 1 (1 computes the mining "
                f"statistics on every training step); got {statistics_freq!r}."
            )
        super().__init__(**kwargs)
        self.embedder = embedder
        self.mining = mining
        self.normalize = bool(normalize)
        self.memory_size = memory_size
        self.statistics_freq = statistics_freq if statistics_freq == "auto" else int(statistics_freq)
        self.memory = (
            memory_module.CrossBatchMemory(memory_size, name="cross_batch_memory") if memory_size else None
        )
        self._statistic_trackers = [_TrackerMean(name=n) for n in STATISTICS]
        self._recall_tracker = _TrackerMean(name=RECALL_NAME)
        self._last_calls = []  # see `call`
        self._logs_recall = False  # see `compute_loss`

    # ------------------------------------------------------------------ forward pass

    def _embedder_output_spec(self, input_shape):
        """The embedder's symbolic output for `input_shape`: a call on `keras.KerasTensor`
        inputs, which builds the embedder and computes no value."""
        inputs = keras.tree.map_shape_structure(lambda s: keras.KerasTensor(s), input_shape)
        return self.embedder(inputs)

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
        output (float32) before normalisation.
        """
        raw = self.embedder(inputs, training=training)
        if len(raw.shape) != 2:
            raise ValueError(self._rank_message(raw.shape))
        raw = ops.cast(raw, "float32")
        embeddings = distances_module.l2_normalize(raw) if self.normalize else raw
        # Keras' train_step / test_step hand `compute_loss` only this call's output, the
        # normalised embeddings, while the logged `embedding_norm` is the norm *before*
        # normalisation. So the call leaves its raw output (detached: no graph is kept
        # alive) beside a weak reference to the embeddings it returns, and
        # `compute_loss` takes it only for that very tensor. On every backend Keras runs
        # the call and `compute_loss` one after the other in the same trace (on JAX:
        # `stateless_call`, then `stateless_compute_loss`, inside one `value_and_grad`),
        # the way `add_loss` values reach it. No variable is added: saved files keep
        # their layout. `tf.distribute.MirroredStrategy` runs its replicas' steps in
        # threads, hence a short list of records, each taken by its own tensor.
        self._last_calls = [r for r in self._last_calls if r[0]() is not None][-7:]
        self._last_calls.append((weakref.ref(embeddings), ops.stop_gradient(raw)))
        if return_raw:
            return raw, embeddings
        return embeddings

    def _embedder_output_of(self, y_pred):
        """The embedder's output (detached) that `call` turned into `y_pred`; `y_pred`
        itself when it is not normalised or did not come from the last call (a
        `compute_loss` called by hand on other embeddings)."""
        for i, (embeddings, raw) in enumerate(self._last_calls):
            if embeddings() is y_pred:
                del self._last_calls[i]  # by position: `==` on tensors is elementwise
                if self.normalize:
                    return raw
                break
        return ops.stop_gradient(y_pred)

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
        # Under keras.distribution every batch is sharded over the devices (the last too).
        x, batch_size, n = distributed.pad_for_replicas(x, batch_size)
        embeddings = self.predict(x, batch_size=batch_size, verbose=verbose)
        return np.asarray(ops.convert_to_numpy(embeddings), dtype="float32")[:n]

    # ------------------------------------------------------------------ fit / evaluate: the data's split

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' TensorFlow hook that builds the model on the first batch under a
        strategy (the only backend that calls it). Under `MultiWorkerMirroredStrategy`
        Keras 3.15 cannot take that batch (`_backend/_distribute_tensorflow.py`,
        `local_build_batch`, says which bug and when to remove this): the build takes
        this worker's first replica's values instead."""
        local = _backend.distribute.local_build_batch(self, iterator)
        if local is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=local)

    def fit(self, *args, samples_per_class=None, **kwargs):
        """Keras' `fit`, after checking the batches against the replicas (one-line
        ValueErrors before any framework error, `distributed.check_fit_data`): under
        data parallelism every batch, the last one included, must split evenly over the
        replicas, and with `mining="per_replica"` each replica's slice of a P×K batch
        must hold whole classes. `samples_per_class`: `K` of the P×K batches, for that
        check; read from a `PKPyDataset` when it feeds `fit`.
        """
        call = _FIT_SIGNATURE.bind(self, *args, **kwargs)
        bound = call.arguments
        samples_per_class = samples_per_class or distributed.samples_per_class_of(bound.get("x"))
        count = distributed.fed_replicas(self)
        if count > 1:
            k = samples_per_class if self.mining == "per_replica" else None
            bound["x"] = distributed.check_fit_data(
                bound.get("x"), bound.get("batch_size"), count, k, bound.get("steps_per_epoch")
            )
            validation = bound.get("validation_data")
            if isinstance(validation, (tuple, list)) and validation:
                validation_batch = bound.get("validation_batch_size") or bound.get("batch_size")
                distributed.check_fit_data(validation[0], validation_batch, count)
            elif validation is not None:
                bound["validation_data"] = distributed.check_fit_data(validation, None, count)
        self._samples_per_class = samples_per_class
        try:
            return super().fit(*call.args[1:], **call.kwargs)
        except Exception as error:  # the check of a tf.data pipeline's batches, in one line
            distributed.raise_split_error_of(error)
            raise
        finally:
            self._samples_per_class = None

    def evaluate(self, *args, **kwargs):
        """Keras' `evaluate`, after the same check of the batches as `fit`."""
        call = _EVALUATE_SIGNATURE.bind(self, *args, **kwargs)
        bound = call.arguments
        count = distributed.fed_replicas(self)
        if count > 1:
            bound["x"] = distributed.check_fit_data(
                bound.get("x"), bound.get("batch_size"), count, steps=bound.get("steps")
            )
        try:
            return super().evaluate(*call.args[1:], **call.kwargs)
        except Exception as error:
            distributed.raise_split_error_of(error)
            raise

    # ------------------------------------------------------------------ the step, through Keras' hooks

    def compile(self, *args, **kwargs):
        """Keras' `compile`; with a loss that has trainable weights (`ProxyAnchorLoss`,
        `ArcFaceLoss`, ...: a `losses.ClassWeightLoss`) the model also tracks the loss's
        `weights_layer`, so `fit` trains the weights with the model's optimizer and
        `save` / `load_model` keep them (ARCHITECTURE.md, "Losses with trainable weights")."""
        super().compile(*args, **kwargs)
        loss = getattr(self, "loss", None)
        layer = getattr(loss, "weights_layer", None) if isinstance(loss, ClassWeightLoss) else None
        if layer is not None and self.memory is not None:
            reject_memory(loss)
        if getattr(self, "loss_weights_layer", None) is layer:
            return
        # A built layer's tracker is locked against new state; compile comes after build
        # (always so when a saved model loads). Keras unlocks it the same way to untrack
        # a variable (`Layer._untrack_variable`).
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            if hasattr(self, "loss_weights_layer"):
                del self.loss_weights_layer  # untracks a previous loss's weights
            if layer is not None:
                # Tracked before the optimizer is built (on the first step, or right after
                # this in `compile_from_config` when a saved model loads).
                self.loss_weights_layer = layer
        finally:
            if locked:
                self._tracker.lock()

    def compile_from_config(self, config):
        """Keras' `compile_from_config` (which skips an overridden `compile`), through this
        model's `compile`, so that a loaded model tracks its loss's weights again before
        its optimizer is built."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # the optimizer's variables, to load

    def _metric_loss(self):
        """The compiled `MetricLoss`, or None (Keras' usual loss computation is used then)."""
        loss = getattr(self, "loss", None)
        return loss if isinstance(loss, MetricLoss) else None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The metric loss of one batch (plus `add_loss` / regularisation losses).

        Keras' own `train_step` and `test_step` call it on every backend. Beside the
        loss it updates the statistics' trackers (logged by `compute_metrics`) and, when
        training with a cross-batch memory, pushes the batch into the memory, after the
        loss has read it. On JAX, Keras' `stateless_compute_loss` carries both
        (metrics and non-trainable variables) out of the stateless step. With a loss
        that is not a `MetricLoss`, Keras' usual `compute_loss` runs.
        """
        loss_fn = self._metric_loss()
        if loss_fn is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if sample_weight is not None:
            raise ValueError(
                "TripletModel with a keras_triplet metric loss does not support sample_weight "
                "or class_weight: a triplet loss is a function of the whole batch, not a mean "
                "of per-example terms. Balance classes with a P×K sampler "
                "(keras_triplet.data.PKSampler) instead."
            )
        compile_loss = getattr(self, "_compile_loss", None)
        if compile_loss is not None and not compile_loss.built:
            # Keras wraps the compiled loss in a container that it builds on first use,
            # and rebuilds the whole step symbolically at every `fit` / `evaluate` call
            # while that container is unbuilt. The metric loss never goes through it:
            # build it here (Python bookkeeping only), once.
            compile_loss.build(y, y_pred)
        memory_state = None
        if training and self.memory is not None:  # evaluate neither reads nor fills it
            # The loss reads the memory, then this step overwrites it. PyTorch's autograd
            # keeps the tensors the loss read for the backward pass, which Keras runs
            # after compute_loss, and refuses a tensor overwritten in place since: the
            # loss reads a copy (M × D floats on PyTorch; compiled away on TensorFlow and
            # JAX, whose tensors are immutable).
            memory_state = tuple(ops.copy(value) for value in self.memory.state())
        statistics = self._statistics_this_step(training)
        loss, stats, new_memory = step.batch_loss_and_statistics(
            loss_fn,
            y,
            y_pred,
            memory_state=memory_state,
            training=training,
            mining=self.mining,
            samples_per_class=getattr(self, "_samples_per_class", None),
            statistics=statistics,
            # XLA (TensorFlow's jit_compile=True, JAX) fuses the search's column loops;
            # TensorFlow graphs without XLA compile the mining part alone with XLA
            # (`_backend.compiled_mining`, static batches of 128 or more); eager
            # PyTorch and the rest count small batches' columns at once.
            fused=self._fused_step(),
        )
        extra = [ops.sum(ops.cast(value, "float32")) for value in self.losses]
        if extra:  # add_loss and regularisation losses
            loss = loss + sum(extra[1:], extra[0])
        # Under tf.distribute Keras expects each replica's loss divided by the replicas.
        scale = distributed.loss_scale()
        if scale != 1:
            loss = loss * scale
        if new_memory is not None:
            self.memory.assign(new_memory)
        norm = step.mean_norm(self._embedder_output_of(y_pred))
        stats["embedding_norm"] = distributed.replica_mean(norm)  # of this replica's rows: averaged
        # On a step without statistics (zeros) the trackers take them at weight 0: their
        # means, hence the logs, stay as they were. Where that is known in Python (an
        # eager step, `_statistics_this_step`), they are not updated at all: the same
        # state, without a weighted update's dozens of eager operations per tracker.
        weight = None if statistics is True else ops.cast(statistics, "float32")
        for tracker in self._statistic_trackers:
            if tracker.name == "embedding_norm":
                tracker.update_state(stats[tracker.name])
            elif tracker.name in stats and statistics is not False:  # step.statistics_of
                tracker.update_state(stats[tracker.name], sample_weight=weight)
        if not training:
            self._recall_tracker.update_state(stats[RECALL_NAME], sample_weight=ops.shape(y_pred)[0])
        # Read by compute_metrics, which Keras calls next without `training`: recall@1 is
        # logged by evaluate only. A Python value, fixed when the step is traced.
        self._logs_recall = not training
        return loss

    def _statistics_this_step(self, training):
        """Whether this step computes the mining statistics: True, or with
        `statistics_freq=N` in training a boolean (a Python bool where the step runs
        eagerly on the host, `_backend.host_value`; else a boolean scalar tensor), true
        on every N-th step of the epoch from its first. The step's index in the epoch is the count of the
        `embedding_norm` tracker (updated once a step, reset with the metrics at each
        epoch): a metric variable, which Keras' JAX step carries in its state."""
        freq = AUTO_STATISTICS_FREQ if self.statistics_freq == "auto" else self.statistics_freq
        if not training or freq == 1:
            return True
        norm = self._statistic_trackers[STATISTICS.index("embedding_norm")]
        count = _backend.host_value(norm.count)
        if count is not None:
            # An eager step on the host: the test in Python (a bool), where the tensor
            # form costs five eager operations and makes every later test a tensor one.
            return round(count) % freq == 0
        steps = ops.cast(ops.round(norm.count), "int32")
        return ops.equal(ops.mod(steps, freq), 0)

    def _fused_step(self):
        """Whether the training step is compiled with XLA (TensorFlow's `jit_compile`,
        JAX), which fuses the search's passes; eager PyTorch and TensorFlow graphs
        without XLA run it op by op."""
        return bool(getattr(self, "jit_compile", False))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras' compiled metrics, the loss and the statistics (recall@1 in evaluate only)."""
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if self._metric_loss() is not None and not self._logs_recall:
            logs.pop(RECALL_NAME, None)
        # Keras 3.15 cannot reduce scalar logs under MultiWorkerMirroredStrategy
        # (`_backend/_distribute_tensorflow.py`, `step_logs`); elsewhere unchanged.
        return _backend.distribute.step_logs(logs)

    @property
    def metrics(self):
        # Every tracker of the model's own, also those the loss does not log: Keras
        # tracks them all as attributes of the model.
        own = {id(m) for m in getattr(self, "_statistic_trackers", [])}
        own |= {id(m) for m in self._triplet_trackers()}
        metrics = [m for m in super().metrics if id(m) not in own]
        if self.compiled and self._metric_loss() is not None:
            metrics.extend(self._triplet_trackers())
        return metrics

    def _triplet_trackers(self):
        loss_fn = self._metric_loss()
        logged = step.statistics_of(loss_fn) if loss_fn is not None else STATISTICS
        trackers = [t for t in getattr(self, "_statistic_trackers", []) if t.name in logged]
        recall = getattr(self, "_recall_tracker", None)
        return trackers + ([recall] if recall is not None else [])

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "embedder": keras.saving.serialize_keras_object(self.embedder),
            "normalize": self.normalize,
            "memory_size": self.memory_size,
            "mining": self.mining,
            "statistics_freq": self.statistics_freq,
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
