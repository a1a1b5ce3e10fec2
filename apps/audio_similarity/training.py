"""Training the audio embedder, in four steps: prepare the data, resume or build the
model, fit, export.

`train(args)` runs them for the `train` command (the options are in `__main__.py`):

1. `prepare`: the log-mel features of `DATA/<class>/<file>` (cached), classes with a
   single usable file left out (a class needs two examples to form a positive pair),
   and the mean and standard deviation that the network's first layer standardises with;
2. `resume_or_build`: the checkpoint of an interrupted run with the same settings
   (`MODEL.partial.keras` + `MODEL.partial.json`), else a new model; compiled with
   the loss of `--loss` (`TripletLoss` by default) and Adam on a cosine schedule;
3. `fit`: P×K batches from `keras_triplet.data.PKSampler`, each clip randomly cropped
   and augmented (`augment.Augmenter`), a checkpoint after every epoch;
4. `export`: the weights without the optimizer state (a third of the size) to
   `MODEL.keras`, and the side file `MODEL.keras.json` (feature settings, classes,
   history, and the embeddings of a fixed input, so a load on another backend can be
   checked), `MODEL.history.json` and `MODEL.curves.png`.
"""

import dataclasses
import os
import time

import keras
import numpy as np

from apps._common import epoch_progress, fail, log, read_json, side_path, write_json, write_model
from apps.audio_similarity import features as F
from apps.audio_similarity.augment import Augmenter
from apps.audio_similarity.model import build_model, self_check_input
from apps.audio_similarity.plots import plot_history
from keras_triplet import TripletModel
from keras_triplet.data import PKSampler
from keras_triplet.losses import MultiSimilarityLoss, SupConLoss, TripletLoss


@dataclasses.dataclass
class TrainingData:
    """The clips `train` learns from (features `[frames, n_mels]`, integer labels)."""

    features: list
    labels: np.ndarray
    class_names: list
    settings: F.FeatureSettings
    mean: float
    std: float


def model_stem(out):
    """`runs/m` for `runs/m.keras`: the stem of the side files."""
    if not out.endswith(".keras"):
        fail("--out must end with .keras (a Keras model file).")
    return out[: -len(".keras")]


def train(args):
    """Trains an embedder on `args.data` and saves `args.out` with its side files."""
    stem = model_stem(args.out)
    data = prepare(args, report_path=args.report or stem + ".skipped.tsv")
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(int(args.seed))
    P = min(args.classes_per_batch, len(np.unique(data.labels)))
    sampler = PKSampler(
        data.labels, classes_per_batch=P, samples_per_class=args.samples_per_class, seed=args.seed
    )
    steps = args.steps_per_epoch or sampler.steps_per_epoch
    checkpoint = Checkpoint(stem, run_signature(args, P, steps))
    model, initial_epoch = resume_or_build(args, data, checkpoint, steps)
    validation = validation_batches(args, data, P, report_path=stem + ".val.skipped.tsv")
    fit(model, data, sampler, args, steps, initial_epoch, checkpoint, validation)
    export(model, args.out, data, args, steps, P, checkpoint)
    checkpoint.remove()
    return checkpoint.seconds


# -------------------------------------------------------------------------------- 1. prepare


def prepare(args, report_path):
    """The features of `args.data`, without classes of a single usable file."""
    settings = F.FeatureSettings(n_mels=args.n_mels)
    fs = F.load_folder(args.data, settings, args.cache_dir, not args.quiet, report_path=report_path)
    counts = np.bincount(fs.labels, minlength=len(fs.class_names))
    usable = counts >= 2
    if usable.sum() < 2:
        fail(
            f"training needs at least 2 classes with 2 or more usable files; "
            f"{args.data!r} has {int(usable.sum())}."
        )
    if (~usable).any():
        log(
            f"note: {int((~usable).sum())} class(es) with a single usable file are left out "
            "of training (a class needs two examples to form a positive pair)."
        )
    keep = usable[fs.labels]
    features = [x for x, k in zip(fs.features, keep) if k]
    # A sample of frames is enough for the standardisation constants.
    sample = np.concatenate([x[:: max(1, len(x) // 20)] for x in features[:: max(1, len(features) // 500)]])
    return TrainingData(
        features, fs.labels[keep], fs.class_names, settings, float(sample.mean()), float(sample.std() + 1e-6)
    )


def validation_batches(args, data, P, report_path):
    """`(x, y, batch_size)` of `--val-data` (None without it): its clips, centre-cropped,
    in one epoch of fixed P×K batches (a triplet loss needs positives in every batch).
    Keras then logs the validation loss and mining statistics after every epoch (the
    dashed curves of MODEL.curves.png); nothing is chosen from them."""
    folder = getattr(args, "val_data", None)
    if not folder:
        return None
    fs = F.load_folder(folder, data.settings, args.cache_dir, not args.quiet, report_path=report_path)
    counts = np.bincount(fs.labels, minlength=len(fs.class_names))
    keep = np.flatnonzero(counts[fs.labels] >= 2)
    if len(np.unique(fs.labels[keep])) < 2:
        log(f"warning: --val-data {folder!r} has fewer than 2 classes with 2 or more clips; no validation.")
        return None
    labels = fs.labels[keep]
    sampler = PKSampler(
        labels,
        classes_per_batch=min(P, len(np.unique(labels))),
        samples_per_class=args.samples_per_class,
        seed=args.seed,
    )
    order = keep[sampler.epoch_indices(0).reshape(-1)]
    x = np.stack([F.fit_window(fs.features[i], args.frames) for i in order])[..., None]
    return x.astype("float32"), fs.labels[order].astype("int32"), sampler.batch_size


# ------------------------------------------------------------------------ 2. resume or build


def run_signature(args, P, steps):
    """What a checkpoint must match to be resumed: the data and every training setting."""
    return {
        "data": os.path.abspath(args.data),
        "frames": args.frames,
        "n_mels": args.n_mels,
        "P": P,
        "K": args.samples_per_class,
        "seed": args.seed,
        "width": args.width,
        "dim": args.dim,
        "lr": args.lr,
        "margin": args.margin,
        "miner": args.miner,
        "loss": loss_name(args),
        "augment": augment_name(args),
        "epochs": args.epochs,
        "steps": steps,
        "backend": keras.backend.backend(),
        "val_data": os.path.abspath(args.val_data) if getattr(args, "val_data", None) else None,
    }


class Checkpoint(keras.callbacks.Callback):
    """Saves `STEM.partial.keras` and `STEM.partial.json` (epoch, history) after every
    epoch, and keeps the history and the seconds per epoch."""

    def __init__(self, stem, signature):
        super().__init__()
        self.model_path = stem + ".partial.keras"
        self.state_path = stem + ".partial.json"
        self.signature = signature
        self.history = {}
        self.seconds = []

    def restore(self):
        """`(model, epoch)` of a matching checkpoint, or `(None, 0)`."""
        if not (os.path.exists(self.model_path) and os.path.exists(self.state_path)):
            return None, 0
        state = read_json(self.state_path)
        if state.get("signature") != self.signature:
            return None, 0
        try:
            model = keras.saving.load_model(self.model_path)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint: start again
            log(f"note: could not resume from {self.model_path} ({e}); starting again")
            return None, 0
        self.history = state.get("history", {})
        return model, int(state["epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        self.seconds.append(time.perf_counter() - self.t0)
        write_model(self.model, self.model_path)
        write_json(
            self.state_path, {"signature": self.signature, "epoch": epoch + 1, "history": self.history}
        )

    def remove(self):
        for path in (self.model_path, self.state_path):
            if os.path.exists(path):
                os.remove(path)


def resume_or_build(args, data, checkpoint, steps):
    """`(model, initial_epoch)`: the interrupted run's model (unless `--restart`) or a
    new one, compiled, with the learning-rate schedule where the run left it."""
    model, initial_epoch = (None, 0) if args.restart else checkpoint.restore()
    if model is not None:
        log(f"resuming from {checkpoint.model_path} after epoch {initial_epoch}")
    else:
        model = build_model(
            frames=args.frames,
            n_mels=data.settings.n_mels,
            embedding_dim=args.dim,
            width=args.width,
            mean=data.mean,
            std=data.std,
            seed=args.seed,
        )
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        schedule = keras.optimizers.schedules.CosineDecay(
            args.lr, decay_steps=max(args.epochs * steps, 1), alpha=0.05
        )
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(args))
    if initial_epoch:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.optimizer.iterations.assign(initial_epoch * steps)
    return model, initial_epoch


def loss_name(args):
    """`--loss` (`triplet` for a namespace without it)."""
    return getattr(args, "loss", None) or "triplet"


def make_loss(args):
    """The loss of `--loss`: `TripletLoss(margin, miner)` (`--margin`, `--miner`),
    `MultiSimilarityLoss()` (cosine similarities, α = 2, β = 50, base 0.5) or
    `SupConLoss(temperature=0.1)`; the last two use every pair of the batch."""
    name = loss_name(args)
    if name == "triplet":
        return TripletLoss(margin=args.margin, miner=args.miner)
    if name == "multi-similarity":
        return MultiSimilarityLoss()
    if name == "supcon":
        return SupConLoss(temperature=0.1)
    fail(f"unknown --loss {name!r}")


# ------------------------------------------------------------------------------------ 3. fit


def augment_name(args):
    """`--augment` (`none` with `--no-augment`; `basic` for a namespace without either)."""
    return "none" if getattr(args, "no_augment", False) else (getattr(args, "augment", None) or "basic")


def make_augmenter(args, settings):
    """The `Augmenter` of `--augment`: `basic` (crop, gain, noise, SpecAugment), `full`
    (every step of `augment.py`) or `none` (random crop only)."""
    name = augment_name(args)
    if name == "full":
        return Augmenter.recordings(frames=args.frames, settings=settings)
    return Augmenter(frames=args.frames, settings=settings, enabled=name != "none")


def fit(model, data, sampler, args, steps, initial_epoch, checkpoint, validation=None):
    """Fits `model` from `initial_epoch` to `args.epochs` on augmented random crops
    (and reports the loss on `validation`, from `validation_batches`, after each epoch)."""
    augment = make_augmenter(args, data.settings)

    def load_fn(i, rng):
        # `rng` is seeded by the example's place in the stream (the sampler's seed,
        # step and position), so the crops and augmentations repeat exactly from run
        # to run, whatever order the parallel loaders run in, and on resuming.
        return augment(data.features[int(i)], rng, pool=data.features)[..., None]

    dataset = sampler.as_dataset(
        list(range(len(data.features))),
        load_fn=load_fn,
        output_shape=(args.frames, data.settings.n_mels, 1),
        output_dtype="float32",
        initial_epoch=initial_epoch,
    )
    log(
        f"training on {len(data.features)} clips of {len(np.unique(data.labels))} classes: "
        f"{sampler.classes_per_batch}x{sampler.samples_per_class} batches, {steps} steps/epoch, "
        f"epochs {initial_epoch + 1}..{args.epochs}, backend {keras.backend.backend()}"
    )
    if initial_epoch < args.epochs:
        model.fit(
            dataset,
            epochs=args.epochs,
            steps_per_epoch=steps,
            initial_epoch=initial_epoch,
            # --verbose 1: one line per epoch that fits the terminal; 2: Keras' own output.
            callbacks=[checkpoint]
            + ([epoch_progress(args.epochs)] if args.verbose == 1 and not args.quiet else []),
            verbose=0 if args.quiet or args.verbose < 2 else 2,
            shuffle=False,
            validation_data=None if validation is None else validation[:2],
            validation_batch_size=None if validation is None else validation[2],
        )


# --------------------------------------------------------------------------------- 4. export


def export(model, out, data, args, steps, P, checkpoint):
    """Saves the embedder alone (no optimizer state) to `out`, and its side files."""
    model = TripletModel(model.embedder, normalize=True, name="audio_similarity")
    model.build((None, args.frames, data.settings.n_mels, 1))
    write_model(model, out)
    seconds = checkpoint.seconds
    shape = (4, args.frames, data.settings.n_mels)
    write_json(
        side_path(out),
        {
            "features": data.settings.to_dict(),
            "frames": args.frames,
            "classes": data.class_names,
            "num_train_clips": len(data.features),
            "backend": keras.backend.backend(),
            "epochs": args.epochs,
            "steps_per_epoch": steps,
            "batch": [P, args.samples_per_class],
            "loss": {"name": type(make_loss(args)).__name__}
            | ({"margin": args.margin, "miner": args.miner} if loss_name(args) == "triplet" else {}),
            "augment": augment_name(args),
            "seconds_per_epoch": float(np.median(seconds)) if seconds else None,
            "history": checkpoint.history,
            "self_check": {
                "shape": list(shape),
                "embeddings": model.embed(self_check_input(*shape)).tolist(),
            },
        },
    )
    stem = model_stem(out)
    write_json(stem + ".history.json", checkpoint.history)
    if checkpoint.history:
        plot_history(checkpoint.history, stem + ".curves.png", loss_label=f"{loss_name(args)} loss")
