"""Training the embedder writer-independently with `keras_triplet`, and model metadata.

**Labels: skilled forgeries as hard negatives.** Writer `i` (0-based among the `C`
training writers) has label `i` on its genuine signatures; every skilled forgery gets a
label of its own (`C + its image index`), so forgeries are pure negatives: the triplet
loss pulls a writer's genuine signatures together and pushes every forgery away from
them, above all the forgeries of that writer, which the batches put next to them (see
below). (A shared "forger-of-`i`" label was tried first: it also pulls together the
forgeries of writer `i`, which different forgers make differently; on the built-in data
(160 writers) its validation EER against skilled forgeries after 4 epochs was 23 %,
against 15 % with a label per forgery.)

**Batches: both classes of a writer together.** A forgery is only a useful negative if
it is in the same batch as the genuine signatures it imitates. So the P×K sampler
(`keras_triplet.data.PKSampler`) runs over *units* labelled by writer: a unit is one
genuine signature of the writer paired with one of its forgeries (forgeries cycled in a
seeded random order; a writer without forgeries pairs two of its genuine signatures).
Each P×K batch of units (P writers, K units each) is unpacked into `2·P·K` images:
`K` genuine signatures and `K` forgeries of each of the `P` writers (with semi-hard
mining, the forgeries of an anchor's own writer are typically its chosen negatives). The loss is
`keras_triplet.losses.TripletLoss` (semi-hard mining by default), the model
`keras_triplet.TripletModel` (L2-normalised embeddings).

**How much training.** The embedder must learn a writer's identity (random forgeries)
*and* the forgers' cues (line quality, slant, proportions): the second takes far
more steps. On the built-in data the first shipped model (360 steps on 96 writers) had a
skilled-forgery EER of 19.5 % on unseen writers; after 3 epochs (1080 steps) on 960
writers the EER was 12.8 % on the model's *own* training writers and 15.1 % on
validation writers: short runs underfit rather than overfit (semi-hard mining takes a
negative just beyond the positive, so a forgery already closer than the positive is
not chosen, and batches teach little about forgeries once most triplets are
satisfied). The shipped model trains 2880 steps (8 epochs) on 960 writers, where
writers are cheap (`synthetic`), and the validation EER falls as the learning rate
decays (14.7 % after the first epoch, 9.0 % after the 7th). Batch-hard and batch-all
mining, or a network twice as wide, did no better at equal time on a CPU (see
`apps/signature_verification/README.md`).

**Two networks.** `network="signet"`, the CNN on images (everything above), or
`network="hog"` (`train`'s default), the learned HOG metric of `model.build_hog_model`,
trained the same way on the images' HOG descriptors (`features.hog_descriptors`); it starts
as HOG itself, and that starting point competes as epoch 0 in the model selection below.
Saved, it comes back from `load_model` as a `model.DescriptorModel`, whose `embed` takes
images.

**Model selection.** After every epoch, `ValidationEER` embeds the validation writers,
computes the protocol's EER against skilled forgeries (`protocol`) and keeps the
weights of the best epoch, restored at the end of training.

**Metadata.** `save_model` writes `MODEL.keras` and, next to it, `MODEL.keras.json`: the image
size, the decision rule, the number of references, the threshold chosen on the
validation writers, the writer split and a fingerprint of the training data (so
`evaluate` can leave the training writers out).
"""

import os
import sys
import time

import keras
import numpy as np

from apps._common import (
    epoch_progress,
    fail,
    load_keras_model,
    log,
    read_side_file,
    sha256,
    side_path,
    write_json,
    write_model,
)
from apps.signature_verification import protocol
from apps.signature_verification.features import (  # noqa: F401  (train's defaults, for commands.py)
    DEFAULT_NETWORK,
    HOG_DROPOUT,
    HOG_EPOCHS,
    HOG_HIDDEN,
    HOG_LEARNING_RATE,
    HOG_MARGIN,
    NETWORKS,
)
from apps.signature_verification.model import DescriptorModel, FusedModel, build_hog_model, build_model
from keras_triplet.data import PKSampler
from keras_triplet.losses import TripletLoss

METADATA_FORMAT = "keras-triplet/signature-verification/1"
SHIPPED_MODEL = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "saved_models",
    "signature_verification.keras",
)
# The shipped learned HOG metric: pretrained on generated writers (see README.md), what
# `train --init auto` fine-tunes when the network is the HOG metric and the data is small.
SHIPPED_HOG_MODEL = os.path.join(os.path.dirname(SHIPPED_MODEL), "signature_hog_metric.keras")
# `train`'s defaults. Fine-tuning adapts a trained model rather than learning one: a 10x
# lower learning rate, and batch normalisation frozen (see `train_model`).
DEFAULT_EMBEDDING_DIM = 64
DEFAULT_WIDTH = 0.5
SCRATCH_LEARNING_RATE = 3e-3
FINE_TUNE_LEARNING_RATE = 3e-4


def make_units(writers, genuine, seed=0):
    """Pairs every genuine image with a forgery of the same writer (see module docstring).

    Returns `(first [U], second [U], unit_writer [U], second_is_forgery [U])` as index
    arrays into the images, and the sorted writer names.
    """
    writers = np.asarray(writers).astype(str)
    genuine = np.asarray(genuine, dtype=bool)
    names = protocol.writer_split(writers, 0, 0)["train"]
    rng = np.random.default_rng(seed)
    first, second, unit_writer, forged = [], [], [], []
    for i, w in enumerate(names):
        g = np.nonzero((writers == w) & genuine)[0]
        f = np.nonzero((writers == w) & ~genuine)[0]
        if len(g) == 0:
            continue
        if len(f):
            partner = f[rng.permutation(len(f))]
            partner = partner[np.arange(len(g)) % len(f)]
        else:
            partner = g[(np.arange(len(g)) + 1) % len(g)]
        first.append(g)
        second.append(partner)
        unit_writer.append(np.full(len(g), i))
        forged.append(np.full(len(g), len(f) > 0))
    return (
        np.concatenate(first),
        np.concatenate(second),
        np.concatenate(unit_writer),
        np.concatenate(forged),
        names,
    )


def pair_dataset(images, writers, genuine, classes_per_batch=8, samples_per_class=4, seed=0):
    """An endless `tf.data.Dataset` of `(images [2PK, H, W, 1], labels [2PK])` batches and
    its `steps_per_epoch` (see the module docstring)."""
    import tensorflow as tf  # the P×K pipeline is a tf.data one on every backend

    first, second, unit_writer, forged, names = make_units(writers, genuine, seed)
    C = len(names)
    # Genuine: the writer's label; forgery: a label of its own (a pure negative).
    second_labels = np.where(forged, C + second, unit_writer).astype(np.int32)
    pairs = np.stack([images[first], images[second]], axis=1)  # [U, 2, H, W, 1]
    P = min(int(classes_per_batch), C)
    sampler = PKSampler(unit_writer, classes_per_batch=P, samples_per_class=samples_per_class, seed=seed)

    def unpack(x, y):
        pair, lab2 = x
        batch = tf.concat([pair[:, 0], pair[:, 1]], axis=0)
        labels = tf.concat([tf.cast(y, tf.int32), lab2], axis=0)
        return batch, labels

    ds = sampler.as_dataset((pairs, second_labels)).map(unpack)
    return ds, sampler.steps_per_epoch


class ValidationEER(keras.callbacks.Callback):
    """After each epoch, the protocol's EERs on the validation writers (logged as
    `val_eer_skilled`, `val_eer_random`); the best epoch's weights (lowest skilled EER,
    then random EER) are restored at the end of training. With `include_initial`, the
    model before training competes too (as epoch 0): fine-tuning that only makes a
    trained model worse on the validation writers gives the model back unchanged."""

    def __init__(
        self, images, writers, genuine, references=5, rule="mean", seed=0, verbose=1, include_initial=False
    ):
        super().__init__()
        self.data = (images, writers, genuine)
        self.protocol = dict(references=references, rule=rule, seed=seed)
        self.verbose = verbose
        self.include_initial = include_initial
        self.best = None
        self.best_weights = None
        self.best_epoch = -1
        self.best_summary = None
        self.history = []

    def on_train_begin(self, logs=None):
        if self.include_initial:
            self.on_epoch_end(-1)

    def on_epoch_end(self, epoch, logs=None):
        images, writers, genuine = self.data
        emb = self.model.embed(images, batch_size=256)
        scores = protocol.verification_scores(emb, writers, genuine, **self.protocol)
        summary = protocol.summarize(scores, protocol.choose_threshold(scores))
        key = (
            summary["eer_skilled"] if summary["eer_skilled"] is not None else 0.0,
            summary["eer_random"] if summary["eer_random"] is not None else 0.0,
        )
        self.history.append(summary)
        if logs is not None:
            logs["val_eer_skilled"], logs["val_eer_random"] = key
        if self.best is None or key < self.best:
            self.best, self.best_epoch, self.best_summary = key, epoch, summary
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
        if self.verbose:
            print(
                f"  {'before training' if epoch < 0 else f'epoch {epoch + 1}'}: validation EER skilled {100 * key[0]:.2f}%, "
                f"random {100 * key[1]:.2f}%",
                flush=True,
            )

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochTimer(keras.callbacks.Callback):
    """The wall time of every epoch, in `seconds`."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.t0)


def train_model(
    images,
    writers,
    genuine,
    val_images=None,
    val_writers=None,
    val_genuine=None,
    epochs=15,
    classes_per_batch=8,
    samples_per_class=4,
    margin=0.3,
    miner="semi-hard",
    learning_rate=3e-3,
    embedding_dim=64,
    width=1.0,
    references=5,
    rule="min",
    seed=0,
    verbose=1,
    init=None,
    network="signet",
    hidden=HOG_HIDDEN,
    dropout=HOG_DROPOUT,
):
    """Trains a SigNet-style `TripletModel` (or the learned HOG metric) on preprocessed images.

    Args:
        images: `float32 [N, H, W, 1]` preprocessed training images.
        writers, genuine: writer id and genuine flag of each image.
        val_images, val_writers, val_genuine: the validation writers' images (optional):
            best-epoch selection and the threshold.
        epochs, classes_per_batch (P writers), samples_per_class (K units each),
        margin, miner, learning_rate, embedding_dim, width: training settings.
        references, rule, seed: the verification protocol (see `protocol`).
        init: a trained `TripletModel` to fine-tune (it is trained in place; its input
            size must be the images'; `embedding_dim` and `width` are then ignored), or
            `None` to train a new network from scratch. Its batch-normalisation layers
            stay frozen (inference mode: their statistics and scales are those learned on
            the large data set, not re-estimated on a few writers' batches). A
            `DescriptorModel` (a HOG metric) is fine-tuned on descriptors.
        network: `"signet"` (the CNN on images) or `"hog"` (`model.build_hog_model`, a
            residual MLP on the images' HOG descriptors, `hidden` units, `dropout`);
            ignored when `init` is given. The HOG metric starts as the descriptor itself,
            and that starting point competes with every epoch on the validation writers
            (as a fine-tuned model does), so a run that only makes it worse gives HOG back.

    Returns:
        `(model, info)`: the trained `TripletModel` (a `DescriptorModel` around it for
        the HOG metric: its `embed` takes images) and a dict with `seconds_per_epoch`,
        `epochs`, `best_epoch` (0: `init` as it was), `threshold` and `val` (validation
        metrics, if any).
    """
    keras.utils.set_random_seed(seed)
    descriptors = isinstance(init, DescriptorModel) or (init is None and network == "hog")
    if descriptors:
        from apps.signature_verification.features import hog_descriptors

        settings = init.settings if init is not None else None
        images = hog_descriptors(images, settings)
        if val_images is not None:
            val_images = hog_descriptors(val_images, settings)
    elif network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}; got {network!r}.")
    ds, steps = pair_dataset(images, writers, genuine, classes_per_batch, samples_per_class, seed)
    if init is None and descriptors:
        model = build_hog_model(images.shape[1], hidden=hidden, dropout=dropout, seed=seed)
    elif init is None:
        model = build_model(images.shape[1:], embedding_dim=embedding_dim, width=width, seed=seed)
    else:
        model = init.network if descriptors else init
        expected = tuple(model.embedder.input_shape[1:])
        if expected != tuple(images.shape[1:]):
            raise ValueError(
                f"the model to fine-tune takes {'descriptors' if descriptors else 'images'} of shape {expected}; "
                f"got {tuple(images.shape[1:])} (preprocess to the model's size)."
            )
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, epochs * steps), alpha=0.05
    )
    # Fine-tuning on a few dozen writers with batch statistics re-estimated on batches of
    # 8 writers made held-out writers worse (skilled EER 9.6 % -> 10.6 % on 40 generated
    # writers, 200 steps at 1e-3); frozen: 9.4 %, and 8.8 % at 3e-4 (README.md).
    frozen = (
        []
        if init is None
        else [
            layer
            for layer in model.embedder.layers
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
    )
    for layer in frozen:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=TripletLoss(margin=margin, miner=miner))
    timer = EpochTimer()
    callbacks = [timer]
    validation = None
    if val_images is not None and len(val_images):
        validation = ValidationEER(
            val_images,
            val_writers,
            val_genuine,
            references,
            rule,
            seed,
            verbose,
            include_initial=init is not None or descriptors,
        )
        callbacks.append(validation)
    if verbose == 1:  # one line per epoch that fits the terminal; 2: Keras' own output
        callbacks.append(epoch_progress(epochs, stream=sys.stdout))
    history = model.fit(
        ds,
        steps_per_epoch=steps,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=2 if verbose >= 2 else 0,
    )
    for layer in frozen:  # saved as it came: a later fine-tuning freezes them again
        layer.trainable = True
    times = timer.seconds
    info = {
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": 2 * min(classes_per_batch, len(set(np.asarray(writers).tolist()))) * samples_per_class,
        # The first epoch includes tracing / compilation; report both.
        "seconds_first_epoch": round(times[0], 3) if times else None,
        "seconds_per_epoch": round(float(np.median(times[1:] if len(times) > 1 else times)), 3)
        if times
        else None,
        "train_seconds": round(float(np.sum(times)), 2),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "backend": keras.backend.backend(),
    }
    if validation is not None and validation.best_weights is not None:
        info["best_epoch"] = validation.best_epoch + 1
        info["val"] = validation.best_summary
        info["threshold"] = validation.best_summary["threshold"]
    if descriptors:
        model = DescriptorModel(model, init.settings if init is not None else None)
    return model, info


CHECK_SEED = 20240601


def check_inputs(size):
    """Two fixed preprocessed images (a synthetic genuine signature and a forgery):
    `train` records the model's embeddings of them in the metadata, so a test can check
    that a saved model gives the same embeddings on every backend."""
    from apps.signature_verification.preprocessing import preprocess_batch
    from apps.signature_verification.synthetic import generate_writer

    return preprocess_batch([s.image for s in generate_writer(0, 1, 1, seed=CHECK_SEED)], size)


def save_model(model, path, metadata):
    """Saves `model` to `path` (.keras) and `metadata` (a JSON-able dict) to the side
    file `MODEL.keras.json`, both atomically."""
    if isinstance(model, DescriptorModel):
        # The network alone, without the optimizer's state (twice the weights again): a
        # later `--init` fine-tuning compiles it afresh anyway.
        from keras_triplet import TripletModel

        model = TripletModel(model.embedder, normalize=True, name="signature_verifier")
        model(np.zeros((1, *model.embedder.input_shape[1:]), np.float32))  # built: saved with its weights
    write_model(model, path)
    write_json(side_path(path), {**metadata, "format": METADATA_FORMAT}, indent=1)


def load_model(path, fused=True):
    """Loads a `.keras` model and its metadata (an empty dict when there is no side file;
    `MODEL.json`, the older name, is read too). A HOG metric (`"features": "hog"` in the
    metadata) comes back as a `DescriptorModel`, whose `embed` takes images too.

    A model whose side file names a partner (`"fuse"`, written by `calibrate --fuse`)
    comes back as a `model.FusedModel` of both, the partner loaded from its path relative
    to the model's folder; `fused=False` gives the model alone (what `train --init`
    fine-tunes). The image size is read from the model's input shape when the metadata
    lacks it.
    """
    import keras_triplet  # noqa: F401  (registers TripletModel and the losses)

    path = os.fspath(path)
    model = load_keras_model(path, hint=f"Train one with `train DATA --out {path}`.")
    meta = read_side_file(path)
    if meta.get("features") == "hog":  # the learned HOG metric: it embeds descriptors of images
        model = DescriptorModel(model, meta.get("hog"))
    elif "image_size" not in meta:
        shape = model.embedder.input_shape if hasattr(model, "embedder") else model.input_shape
        meta["image_size"] = [int(shape[1]), int(shape[2])]
    if fused and meta.get("fuse"):
        fuse = meta["fuse"]
        partner_path = fuse_partner_path(path, meta)
        if not os.path.isfile(partner_path):
            fail(
                f'{path} is fused with {partner_path} (its side file\'s "fuse"), which is missing: put it '
                f"back, or `calibrate DATA --model {path} --fuse none`."
            )
        partner = load_partner(partner_path, path, meta)
        if fuse.get("sha256") and sha256(partner_path) != fuse["sha256"]:
            log(f"warning: {partner_path} is not the model {path} was calibrated with; calibrate it again.")
        model = FusedModel([model, partner], fuse["parts"])
    return model, meta


def load_partner(partner_path, model_path, meta):
    """The model at `partner_path` alone, to fuse with `model_path` (whose side file is
    `meta`); a one-line error when it takes images of another size."""
    partner, partner_meta = load_model(partner_path, fused=False)
    if list(partner_meta["image_size"]) != list(meta["image_size"]):
        fail(
            f"{partner_path} takes {partner_meta['image_size']} images, {model_path} "
            f"{meta['image_size']}: fuse models of the same input size."
        )
    return partner


def fuse_partner_path(model_path, meta):
    """The path of the partner that `meta["fuse"]` names (relative to the model's folder)."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(model_path)), meta["fuse"]["model"]))


def partner_of(model_path, meta):
    """The path of the partner `model_path` is fused with (its side file `meta`), or None."""
    return fuse_partner_path(model_path, meta) if meta.get("fuse") else None


def fuse_entry(model_path, partner_path, parts):
    """The side file's `"fuse"` entry of `model_path` fused with `partner_path`."""
    return {
        "model": os.path.relpath(os.path.abspath(partner_path), os.path.dirname(os.path.abspath(model_path))),
        "sha256": sha256(partner_path),
        "parts": [int(p) for p in parts],
    }
