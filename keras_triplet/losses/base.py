"""`MetricLoss`: the base of every loss here, a `keras.losses.Loss` that knows its distance."""

import re

import keras
from keras import ops

from keras_triplet._validation import check_embeddings, check_labels
from keras_triplet.distances import check_metric, pairwise_distances
from keras_triplet.miners.labels import pair_masks


def propagate_nonfinite(value, embeddings):
    """`value`, or NaN when any embedding is NaN or infinite.

    The losses mask pairs and clip distances so that degenerate batches stay finite;
    without this, a diverged network's NaN embeddings could come out as a finite loss
    and hide the divergence from `keras.callbacks.TerminateOnNaN`. Every loss applies
    it to the embeddings it was given (one reduction over `[B, D]`; no gradient flows
    through the test).
    """
    # Σ 0·x is +0 when every entry is finite and NaN otherwise (0·inf and 0·NaN are NaN;
    # zeros cannot overflow, even in float16): adding it leaves a finite loss exactly as
    # it is. Two fused steps where `where(all(isfinite(x)), value, nan)` takes four, a
    # cost eager PyTorch pays on every call.
    zero = ops.sum(ops.stop_gradient(ops.convert_to_tensor(embeddings)) * 0.0)
    return value + ops.cast(zero, value.dtype)


def mined_pair_masks(labels, distances, miner=None, ref_labels=None):
    """`(positive, negative)` boolean `[B, R]` masks of the pairs a pair loss uses.

    Without a miner: every positive pair (same label, not itself) and every negative
    pair (`miners.pair_masks`). With a `miners.PairMiner`: the subset it selects, chosen
    on the distances with gradients stopped.
    """
    if miner is None:
        return pair_masks(labels, ref_labels)
    return miner.mine(labels, distances, ref_labels=ref_labels)


class MetricLoss(keras.losses.Loss):
    """A loss on a batch of embeddings and their integer labels.

    `y_true`: integer class labels `[B]` or `[B, 1]`; `y_pred`: embeddings `[B, D]`.
    The loss is one scalar for the batch (pairs and triplets span examples, so there is
    no per-example loss and `sample_weight` does not apply).

    Subclasses implement `compute_from_distances`, so that a training step
    (`keras_triplet.TripletModel`) can compute the `[B, B]` matrix once with
    `pairwise(embeddings)` and share it between the loss and the mining statistics.
    """

    # The triplet margin, for the logged `active_fraction` (fraction of triplets with a
    # non-zero hinge at this margin); None for losses that have no triplet margin, which
    # do not log it.
    margin = None

    def __init__(self, distance="euclidean", p=None, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.distance = check_metric(distance, p)
        self.p = p

    def pairwise(self, embeddings, references=None):
        """The `[B, B]` distance matrix this loss is computed on (or `[B, R]` against
        `references`, e.g. a cross-batch memory)."""
        return pairwise_distances(embeddings, references, metric=self.distance, p=self.p)

    def call(self, y_true, y_pred):
        embeddings = check_embeddings(y_pred)
        labels = check_labels(y_true, batch_size=embeddings.shape[0])
        return propagate_nonfinite(self.compute_from_distances(labels, self.pairwise(embeddings)), embeddings)

    def compute_from_distances(self, labels, distances, *, ref_labels=None, negatives=None):
        """The loss from a precomputed `[B, R]` distance matrix (scalar).

        `ref_labels` (`[R]`) are the labels of the matrix's columns when they are not the
        batch itself (cross-batch memory); the first `B` columns must be the batch.
        `negatives`: a `miners.search` object of this matrix to reuse, or None
        (losses that do not search negatives ignore it).
        """
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"distance": self.distance, "p": self.p})
        return config

    @classmethod
    def from_config(cls, config):
        """The loss from `get_config()`'s dict; a miner given as a layer (`miner`, in
        `TripletLoss` and the pair losses) comes back from its serialized form."""
        config = dict(config)
        if isinstance(config.get("miner"), dict):
            config["miner"] = keras.saving.deserialize_keras_object(config["miner"])
        return cls(**config)

    def __repr__(self):
        """The class and its configuration (`get_config`), as a call that rebuilds it;
        the name, reduction and dtype only when they are not the defaults.

        >>> from keras_triplet.losses import TripletLoss
        >>> TripletLoss(margin=0.2, miner="batch-hard")
        TripletLoss(distance='euclidean', p=None, margin=0.2, miner=BatchHardMiner(distance='euclidean', p=None), soft_margin=False, average='auto')
        """
        config = self.get_config()
        defaults = {
            "name": re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower(),
            "reduction": "sum_over_batch_size",
            "dtype": None,
        }
        config = {k: v for k, v in config.items() if k not in defaults or v != defaults[k]}
        return _call_repr(type(self).__name__, config)


def _call_repr(class_name, config):
    """`Name(key=value, ...)`, with serialized Keras objects (a miner) written the same way
    without their layer bookkeeping (name, trainable, dtype)."""
    items = []
    for key, value in config.items():
        if isinstance(value, dict) and {"class_name", "config"} <= value.keys():
            inner = {k: v for k, v in value["config"].items() if k not in ("name", "trainable", "dtype")}
            value = _Raw(_call_repr(value["class_name"], inner))
        items.append(f"{key}={value!r}")
    return f"{class_name}({', '.join(items)})"


class _Raw(str):
    def __repr__(self):
        return str(self)


def prepare(y_true, y_pred, distance, p):
    """Validated labels, the distance matrix and the embeddings, for the functional forms
    (which pass the loss and the embeddings to `propagate_nonfinite`)."""
    embeddings = check_embeddings(y_pred)
    labels = check_labels(y_true, batch_size=embeddings.shape[0])
    return labels, pairwise_distances(embeddings, metric=distance, p=p), embeddings
