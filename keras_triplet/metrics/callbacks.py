"""`RetrievalEvaluation`: retrieval and verification metrics of a validation set, per epoch."""

import keras
import numpy as np

from keras_triplet._validation import check_label_array
from keras_triplet.metrics.projector import export_projector
from keras_triplet.metrics.retrieval import retrieval_metrics
from keras_triplet.metrics.verification import DEFAULT_MAX_PAIRS, verification_metrics


class RetrievalEvaluation(keras.callbacks.Callback):
    """Embeds a validation set every `every_n_epochs` epochs and logs retrieval metrics.

    At the end of every `every_n_epochs`-th epoch the callback embeds `x` with
    `model.embed(x, batch_size=batch_size)` when the model has an `embed` method (as
    `keras_triplet.TripletModel` does), else with `model.predict(x, batch_size=...)`,
    then computes `keras_triplet.metrics.retrieval_metrics` (leave-one-out Recall@K,
    Precision@1, R-Precision, MAP@R) and, with `verification=True`,
    `keras_triplet.metrics.verification_metrics` (EER, its threshold, ROC AUC), and writes
    them into the epoch's `logs` as `val_recall@1`, `val_map@r`, `val_eer`, ... (with
    `prefix="val_"`).

    Because Keras hands the same `logs` dict to every callback, the values reach
    `History` (`model.fit(...).history`), the progress bar, and any callback placed
    **after** this one in the `callbacks` list: `keras.callbacks.TensorBoard`,
    `EarlyStopping(monitor="val_recall@1", mode="max")`, `ModelCheckpoint`, ...

    On epochs where the callback does not run it writes nothing, so with
    `every_n_epochs > 1` its `History` lists are shorter than the loss's; the callback's
    own `results` attribute lists `(epoch, metrics)` for every evaluation.

    Args:
        x: validation inputs (an array, or anything `model.embed` / `model.predict`
            accepts, not an endless dataset).
        y: `[N]` validation labels (NumPy-convertible).
        every_n_epochs: evaluate after epochs `n, 2n, ...` (1-based).
        ks: the `K` values of `recall@K`.
        batch_size: batch size of the embedding pass.
        verification: also log `eer`, `eer_threshold` and `auc`.
        metric: distance used for retrieval and verification; match your loss.
        prefix: prepended to every key written into `logs`.
        max_pairs: passed to `verification_metrics` (pairs sampled above this).
        verbose: 1 prints the metrics after each evaluation.
        projector_dir: when given, each evaluation also writes the embeddings (with
            `y` and `class_names` as metadata, and `projector_images` as a sprite) for
            TensorBoard's embedding projector into this folder, overwriting the previous
            evaluation's (`keras_triplet.metrics.export_projector`; point
            `tensorboard --logdir` at it or at a folder above it).
        class_names: names of the labels in the projector (a sequence indexed by label,
            or a dict).
        projector_images: `[N, H, W(, C)]` thumbnails of `x` for the projector's sprite.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(40, 8).astype("float32"); y = np.arange(40) % 4
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> cb = RetrievalEvaluation(x, y, ks=(1,))
    >>> h = model.fit(x, np.zeros((40, 4)), epochs=1, verbose=0, callbacks=[cb])
    >>> sorted(k for k in h.history if k.startswith("val_"))
    ['val_auc', 'val_eer', 'val_eer_threshold', 'val_map@r', 'val_precision@1', 'val_r_precision', 'val_recall@1']
    """

    def __init__(
        self,
        x,
        y,
        every_n_epochs=1,
        ks=(1, 5),
        batch_size=256,
        verification=True,
        metric="euclidean",
        prefix="val_",
        max_pairs=DEFAULT_MAX_PAIRS,
        verbose=0,
        projector_dir=None,
        class_names=None,
        projector_images=None,
    ):
        super().__init__()
        every_n_epochs = int(every_n_epochs)
        if every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be >= 1; got {every_n_epochs}.")
        self.x = x
        self.y = check_label_array(y)  # bad labels fail here, not at the first epoch end
        self.every_n_epochs = every_n_epochs
        self.ks = tuple(ks)
        self.batch_size = int(batch_size)
        self.verification = bool(verification)
        self.metric = metric
        self.prefix = prefix
        self.max_pairs = max_pairs
        self.verbose = verbose
        self.projector_dir = projector_dir
        self.class_names = class_names
        self.projector_images = projector_images
        self.results = []

    def _embed(self):
        embed = getattr(self.model, "embed", None)
        if callable(embed):
            out = embed(self.x, batch_size=self.batch_size)
        else:
            out = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        out = keras.ops.convert_to_numpy(out) if not isinstance(out, np.ndarray) else out
        if out.ndim != 2:
            out = out.reshape(out.shape[0], -1)
        return out

    def evaluate(self):
        """Embeds the validation set and returns the metrics dict (without prefix)."""
        embeddings = self._embed()
        if self.projector_dir is not None:
            export_projector(
                self.projector_dir,
                embeddings,
                self.y,
                class_names=self.class_names,
                images=self.projector_images,
            )
        metrics = retrieval_metrics(embeddings, self.y, ks=self.ks, metric=self.metric)
        if self.verification:
            metrics.update(
                verification_metrics(embeddings, self.y, metric=self.metric, max_pairs=self.max_pairs)
            )
        return {k: v for k, v in metrics.items() if not k.startswith("num_")}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        metrics = self.evaluate()
        self.results.append((epoch, metrics))
        if logs is not None:
            for key, value in metrics.items():
                logs[self.prefix + key] = value
        if self.verbose:
            text = " - ".join(f"{self.prefix}{k}: {v:.4f}" for k, v in metrics.items())
            print(f"Epoch {epoch + 1}: {text}")
