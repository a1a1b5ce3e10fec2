"""The commands behind the CLI: train, evaluate, index, query and demo.

Each takes an `argparse.Namespace` (see `__main__.py` for the options) and returns an
exit status. Results go to stdout (one JSON object with `--json`); progress and
information go to stderr. Keras (and so the backend) is imported only inside the
commands, after `__main__` has set `KERAS_BACKEND`.
"""

import json
import os
import shutil
import sys
import time

import numpy as np

from apps.audio_similarity import features as F
from apps.audio_similarity.data import scan_folder

DEFAULT_CACHE = os.path.join(".cache", "audio_similarity", "features")
DEFAULT_RUNS = os.path.join("runs", "audio_similarity")
SIDE_SUFFIX = ".json"  # MODEL.keras -> MODEL.keras.json holds the feature settings


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ helpers


def load_features(data_dir, settings, cache_dir, progress=True, report_path=None, what="files"):
    """Scans `data_dir`, extracts (or reads cached) features, writes the skip report."""
    paths, names = scan_folder(data_dir)
    if not paths:
        raise SystemExit(
            f"error: no audio files found under {data_dir!r}. Expected DATA/<class>/<file> "
            "with .wav/.flac/.ogg/.mp3 files (one sub-folder per class)."
        )
    fs = F.extract_features(paths, names, settings, cache_dir=cache_dir, progress=progress,
                            description=f"log-mel {os.path.basename(os.path.normpath(data_dir))}")
    if report_path:
        fs.report.write(report_path)
    cached = len(fs) - fs.computed
    log(f"{data_dir}: {fs.report.summary(len(fs), report_path)}; "
        f"{len(fs.class_names)} classes; {fs.computed} extracted, {cached} from the cache")
    return fs


def side_path(model_path):
    return os.fspath(model_path) + SIDE_SUFFIX


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_model(model_path):
    """`(model, settings, frames)`: the model and the feature settings it was trained on.

    The settings come from the side file `MODEL.keras.json` written by `train`; without
    it, the defaults with the model's own input shape.
    """
    import keras

    import keras_triplet.models  # noqa: F401 - registers TripletModel (and the losses)

    if not os.path.exists(model_path):
        raise SystemExit(f"error: model file {model_path!r} not found (train one with `train`).")
    model = keras.saving.load_model(model_path, compile=False)
    _, frames, n_mels, _ = model.embedder.input_shape
    meta = {}
    if os.path.exists(side_path(model_path)):
        with open(side_path(model_path), encoding="utf-8") as f:
            meta = json.load(f)
    settings = F.FeatureSettings.from_dict(meta.get("features", {"n_mels": n_mels}))
    if settings.n_mels != n_mels:
        raise SystemExit(f"error: {side_path(model_path)} says {settings.n_mels} mel bands but "
                         f"the model takes {n_mels}.")
    return model, settings, int(frames)


def _save_model_atomic(model, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _set_seed(seed):
    import keras

    keras.utils.set_random_seed(int(seed))


# -------------------------------------------------------------------------------- train


def train(args):
    """Trains an embedder on DATA and saves MODEL.keras (+ side files); returns 0."""
    import keras

    from apps.audio_similarity.augment import Augmenter
    from apps.audio_similarity.model import build_model
    from keras_triplet.data import PKSampler
    from keras_triplet.losses import TripletLoss

    out = args.out
    stem = out[:-6] if out.endswith(".keras") else out
    if not out.endswith(".keras"):
        raise SystemExit("error: --out must end with .keras (a Keras model file).")
    settings = F.FeatureSettings(n_mels=args.n_mels)
    fs = load_features(args.data, settings, args.cache_dir, not args.quiet,
                       report_path=args.report or stem + ".skipped.tsv")
    counts = np.bincount(fs.labels, minlength=len(fs.class_names))
    usable = counts >= 2
    if usable.sum() < 2:
        raise SystemExit(f"error: training needs at least 2 classes with 2 or more usable files; "
                         f"{args.data!r} has {int(usable.sum())}.")
    keep = usable[fs.labels]
    feats = [x for x, k in zip(fs.features, keep) if k]
    labels = fs.labels[keep]
    if (~usable).any():
        log(f"note: {int((~usable).sum())} class(es) with a single usable file are left out "
            "of training (a class needs two examples to form a positive pair).")

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    _set_seed(args.seed)
    sample = np.concatenate([x[:: max(1, len(x) // 20)] for x in feats[:: max(1, len(feats) // 500)]])
    mean, std = float(sample.mean()), float(sample.std() + 1e-6)
    frames, n_mels = args.frames, settings.n_mels
    n_classes = int(len(np.unique(labels)))
    P = min(args.classes_per_batch, n_classes)
    K = args.samples_per_class
    sampler = PKSampler(labels, classes_per_batch=P, samples_per_class=K, seed=args.seed)
    steps = args.steps_per_epoch or sampler.steps_per_epoch
    augment = Augmenter(frames=frames, enabled=not args.no_augment)
    counter = iter(range(1 << 62))
    base_seed = int(args.seed)

    def load_fn(i):
        rng = np.random.default_rng([base_seed, next(counter)])
        return augment(feats[int(i)], rng)[..., None]

    partial = stem + ".partial.keras"
    partial_meta = stem + ".partial.json"
    signature = {"data": os.path.abspath(args.data), "frames": frames, "n_mels": n_mels,
                 "P": P, "K": K, "seed": args.seed, "width": args.width, "dim": args.dim,
                 "lr": args.lr, "margin": args.margin, "miner": args.miner,
                 "epochs": args.epochs, "steps": steps, "backend": keras.backend.backend()}
    initial_epoch, history = 0, {}
    model = None
    if not args.restart and os.path.exists(partial) and os.path.exists(partial_meta):
        with open(partial_meta, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("signature") == signature:
            try:
                import keras_triplet.models  # noqa: F401

                model = keras.saving.load_model(partial)
                initial_epoch, history = int(state["epoch"]), state.get("history", {})
                log(f"resuming from {partial} after epoch {initial_epoch}")
            except Exception as e:  # noqa: BLE001 - a damaged checkpoint: start again
                log(f"note: could not resume from {partial} ({e}); starting again")
                model = None
    if model is None:
        model = build_model(frames=frames, n_mels=n_mels, embedding_dim=args.dim,
                            width=args.width, mean=mean, std=std, seed=args.seed)
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        total = max(args.epochs * steps, 1)
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=total, alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule),
                      loss=TripletLoss(margin=args.margin, miner=args.miner))
    if initial_epoch:  # keep the learning-rate schedule where the interrupted run left it
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.optimizer.iterations.assign(initial_epoch * steps)
    dataset = sampler.as_dataset(list(range(len(feats))), load_fn=load_fn,
                                 output_shape=(frames, n_mels, 1), output_dtype="float32",
                                 initial_epoch=initial_epoch)

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            self.seconds.append(time.perf_counter() - self.t0)
            _save_model_atomic(self.model, partial)
            write_json(partial_meta, {"signature": signature, "epoch": epoch + 1,
                                      "history": history})

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

    ckpt = Checkpoint()
    ckpt.seconds = []
    log(f"training on {len(feats)} clips of {n_classes} classes: {P}x{K} batches, "
        f"{steps} steps/epoch, epochs {initial_epoch + 1}..{args.epochs}, "
        f"backend {keras.backend.backend()}")
    if initial_epoch < args.epochs:
        model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
                  callbacks=[ckpt], verbose=0 if args.quiet else args.verbose, shuffle=False)
    # The shipped file holds the weights only (no optimizer state): a third of the size.
    from keras_triplet import TripletModel

    model = TripletModel(model.embedder, normalize=True, name="audio_similarity")
    model.build((None, frames, n_mels, 1))
    _save_model_atomic(model, out)
    seconds = ckpt.seconds
    meta = {
        "features": settings.to_dict(), "frames": frames, "classes": fs.class_names,
        "num_train_clips": len(feats), "backend": keras.backend.backend(),
        "epochs": args.epochs, "steps_per_epoch": steps, "batch": [P, K],
        "loss": {"name": "TripletLoss", "margin": args.margin, "miner": args.miner},
        "seconds_per_epoch": (float(np.median(seconds)) if seconds else None),
        "history": history,
    }
    shape = (4, frames, n_mels)
    meta["self_check"] = {"shape": list(shape),
                          "embeddings": model.embed(self_check_input(*shape)).tolist()}
    write_json(side_path(out), meta)
    write_json(stem + ".history.json", history)
    if history:
        plot_history(history, stem + ".curves.png")
    for p in (partial, partial_meta):
        if os.path.exists(p):
            os.remove(p)
    if seconds:
        log(f"{float(np.median(seconds)):.1f} s per epoch (median of {len(seconds)})")
    print(f"saved {out} (+ {os.path.basename(side_path(out))}, "
          f"{os.path.basename(stem)}.history.json, {os.path.basename(stem)}.curves.png)")
    return 0


def self_check_input(n, frames, n_mels):
    """A fixed, platform-independent input `[n, frames, n_mels, 1]` (dB-like values).

    `train` records the model's embeddings of it in the side file; loading the model on
    any backend must reproduce them (tests/test_audio_app.py checks the shipped model).
    """
    t = np.arange(frames, dtype=np.float64)[:, None]
    m = np.arange(n_mels, dtype=np.float64)[None, :]
    out = [-60.0 + 25.0 * np.sin(0.07 * (i + 1) * t + 0.11 * (i + 2) * m) * np.cos(0.05 * m * (i + 1))
           for i in range(n)]
    return np.stack(out)[..., None].astype(np.float32)


def plot_history(history, path):
    """Loss and mining statistics per epoch, one panel each (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n in ("loss", "active_fraction", "hard_fraction", "positive_distance",
                         "negative_distance", "embedding_norm") if n in history]
    fig = Figure(figsize=(3.2 * len(names), 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        values = history[name]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    return path


# ----------------------------------------------------------------------------- evaluate


def evaluate_features(model, frames, fs, baseline=None, batch_size=256):
    """Leave-one-out retrieval and verification metrics of a `FeatureSet` (a dict)."""
    from keras_triplet.metrics import retrieval_metrics, verification_metrics

    emb = F.embed_clips(model, fs.features, frames, batch_size=batch_size)
    result = _metrics(emb, fs.labels, "euclidean", retrieval_metrics, verification_metrics)
    result.update(num_files=len(fs), num_classes=len(fs.class_names), skipped=len(fs.report))
    if baseline == "mfcc":
        stats = F.mfcc_stats(fs.features)
        base = _metrics(stats, fs.labels, "cosine", retrieval_metrics, verification_metrics)
        result.update({f"baseline_{k}": v for k, v in base.items()})
    return result, emb


def _metrics(emb, labels, metric, retrieval_metrics, verification_metrics):
    r = retrieval_metrics(emb, labels, ks=(1, 5), metric=metric)
    v = verification_metrics(emb, labels, metric=metric)
    return {
        "recall@1": float(r["recall@1"]), "recall@5": float(r["recall@5"]),
        "precision@1": float(r["precision@1"]), "r_precision": float(r["r_precision"]),
        "map@r": float(r["map@r"]), "eer": float(v["eer"]), "auc": float(v["auc"]),
    }


def format_metrics(result):
    rows = [("recall@1", "Recall@1"), ("recall@5", "Recall@5"), ("map@r", "MAP@R"),
            ("eer", "EER"), ("auc", "ROC AUC")]
    has_base = "baseline_recall@1" in result
    lines = [f"{'':10s} {'model':>8s}" + (f" {'MFCC baseline':>14s}" if has_base else "")]
    for key, title in rows:
        line = f"{title:10s} {result[key]:8.3f}"
        if has_base:
            line += f" {result['baseline_' + key]:14.3f}"
        lines.append(line)
    return "\n".join(lines)


def evaluate(args):
    model, settings, frames = load_model(args.model)
    report = args.report or os.path.join(DEFAULT_RUNS, "evaluate.skipped.tsv")
    fs = load_features(args.data, settings, args.cache_dir, not args.quiet, report_path=report)
    if len(fs) < 2 or len(fs.class_names) < 2:
        raise SystemExit("error: evaluation needs at least 2 usable files in 2 classes.")
    result, _ = evaluate_features(model, frames, fs, baseline=args.baseline)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"{args.data}: {result['num_files']} files, {result['num_classes']} classes, "
              f"{result['skipped']} skipped (leave-one-out)")
        print(format_metrics(result))
    return 0


# ---------------------------------------------------------------------------- index / query


def index(args):
    from keras_triplet.index import EmbeddingIndex

    model, settings, frames = load_model(args.model)
    report = args.report or args.out + ".skipped.tsv"
    fs = load_features(args.data, settings, args.cache_dir, not args.quiet, report_path=report)
    if len(fs) == 0:
        raise SystemExit(f"error: no usable audio under {args.data!r} (see {report}).")
    emb = F.embed_clips(model, fs.features, frames)
    idx = EmbeddingIndex(metric="euclidean")
    idx.add(emb, labels=np.array(fs.label_names(), dtype=str),
            ids=np.array([os.path.abspath(p) for p in fs.paths], dtype=str))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    idx.save(args.out)
    write_json(args.out + SIDE_SUFFIX, {"model": os.path.abspath(args.model),
                                        "data": os.path.abspath(args.data),
                                        "size": len(idx)})
    print(f"indexed {len(idx)} files of {len(fs.class_names)} classes into {args.out} "
          f"(skipped {len(fs.report)})")
    return 0


def query_files(model, settings, frames, idx, files, top, cache_dir=None):
    """`(results, report)`: for each usable query file, its ranked neighbours."""
    fs = F.extract_features(list(files), ["query"] * len(files), settings, cache_dir=cache_dir,
                            progress=False)
    results = []
    if len(fs):
        emb = F.embed_clips(model, fs.features, frames)
        d, ids, labels = idx.search(emb, top)
        for q, path in enumerate(fs.paths):
            results.append({"query": path, "neighbors": [
                {"rank": r + 1, "distance": float(d[q, r]), "file": str(ids[q, r]),
                 "label": None if labels is None else str(labels[q, r])}
                for r in range(d.shape[1])]})
    return results, fs.report


def query(args):
    from keras_triplet.index import EmbeddingIndex

    if not os.path.exists(args.index):
        raise SystemExit(f"error: index {args.index!r} not found (build one with `index`).")
    idx = EmbeddingIndex.load(args.index)
    model_path = args.model
    if model_path is None:
        side = args.index + SIDE_SUFFIX
        if not os.path.exists(side):
            raise SystemExit(f"error: {side} (which names the index's model) is missing; "
                             "pass --model MODEL.keras.")
        with open(side, encoding="utf-8") as f:
            model_path = json.load(f)["model"]
    model, settings, frames = load_model(model_path)
    results, report = query_files(model, settings, frames, idx, args.files, args.top,
                                  cache_dir=args.cache_dir)
    if args.json:
        out = {"results": results, "skipped": [{"file": f, "reason": r} for f, r in report.rows]}
        print(json.dumps(out if len(args.files) > 1 else
                         (results[0] if results else out)))
    else:
        for res in results:
            print(f"query: {res['query']}")
            for nb in res["neighbors"]:
                label = "" if nb["label"] is None else f"{nb['label']:24s} "
                print(f"  {nb['rank']:3d}. {nb['distance']:.4f}  {label}{nb['file']}")
        for f, r in report.rows:
            print(f"skipped {f}: {r}")
    return 0 if results else 2


# --------------------------------------------------------------------------------- demo


def demo(args):
    """Built-in data → train → open-set evaluation vs. MFCC → index → queries → plots."""
    from apps.audio_similarity import synth

    t_start = time.perf_counter()
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    data = args.data
    log(f"[1/6] built-in data set in {data}")
    manifest = synth.make_dataset(data, num_sources=args.sources,
                                  clips_per_class=args.clips_per_class, seed=args.seed,
                                  progress=not args.quiet)
    train_dir, heldout_dir = os.path.join(data, "train"), os.path.join(data, "heldout")
    log(f"      {manifest['num_clips']} clips, {len(manifest['train_classes'])} training "
        f"classes, {len(manifest['heldout_classes'])} held-out classes")

    model_path = os.path.join(work, "model.keras")
    log(f"[2/6] training -> {model_path}")
    t0 = time.perf_counter()
    targs = _train_args(args, data=train_dir, out=model_path)
    train(targs)
    train_seconds = time.perf_counter() - t0

    log("[3/6] open-set evaluation on the held-out classes (never seen in training)")
    model, settings, frames = load_model(model_path)
    fs = load_features(heldout_dir, settings, args.cache_dir, not args.quiet,
                       report_path=os.path.join(work, "heldout.skipped.tsv"))
    result, emb = evaluate_features(model, frames, fs, baseline="mfcc")
    result["train_seconds"] = train_seconds
    write_json(os.path.join(work, "evaluation.json"), result)
    print(format_metrics(result))

    log("[4/6] index of the held-out clips")
    from keras_triplet.index import EmbeddingIndex

    idx = EmbeddingIndex(metric="euclidean")
    idx.add(emb, labels=np.array(fs.label_names(), dtype=str),
            ids=np.array([os.path.abspath(p) for p in fs.paths], dtype=str))
    index_path = os.path.join(work, "heldout.index.npz")
    idx.save(index_path)
    write_json(index_path + SIDE_SUFFIX, {"model": os.path.abspath(model_path),
                                          "data": os.path.abspath(heldout_dir), "size": len(idx)})

    log("[5/6] a few queries")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(fs), size=min(4, len(fs)), replace=False)
    lines = []
    for q in picks:
        d, ids, labels = idx.search(emb[q : q + 1], 6)
        lines.append(f"query {fs.paths[q]}  [{fs.label_names()[q]}]")
        for r in range(1, d.shape[1]):  # rank 0 is the query itself
            lines.append(f"  {r}. {d[0, r]:.4f}  {labels[0, r]:24s} {os.path.basename(ids[0, r])}")
    with open(os.path.join(work, "queries.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    log("[6/6] plots")
    plots = make_plots(emb, fs, idx, picks, frames, os.path.join(work, "plots"),
                       baseline=F.mfcc_stats(fs.features))
    if args.save_to:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_to)), exist_ok=True)
        shutil.copyfile(model_path, args.save_to)
        shutil.copyfile(side_path(model_path), side_path(args.save_to))
    total = time.perf_counter() - t_start
    print()
    print(f"demo finished in {total:.0f} s (training {train_seconds:.0f} s)")
    print(f"  data:        {data}")
    print(f"  model:       {model_path}")
    print(f"  curves:      {os.path.join(work, 'model.curves.png')}")
    print(f"  evaluation:  {os.path.join(work, 'evaluation.json')}")
    print(f"  index:       {index_path}")
    print(f"  queries:     {os.path.join(work, 'queries.txt')}")
    for p in plots:
        print(f"  plot:        {p}")
    if args.save_to:
        print(f"  copied model to {args.save_to}")
    print(f"held-out Recall@1 {result['recall@1']:.3f} vs MFCC baseline "
          f"{result['baseline_recall@1']:.3f}")
    return 0


def _train_args(args, data, out):
    import argparse

    return argparse.Namespace(
        data=data, out=out, epochs=args.epochs, frames=args.frames, n_mels=args.n_mels,
        classes_per_batch=args.classes_per_batch, samples_per_class=args.samples_per_class,
        steps_per_epoch=args.steps_per_epoch, lr=args.lr, margin=args.margin, miner=args.miner,
        width=args.width, dim=args.dim, seed=args.seed, no_augment=args.no_augment,
        mixed_precision=args.mixed_precision, cache_dir=args.cache_dir, report=None,
        restart=args.restart, quiet=args.quiet, verbose=args.verbose)


def make_plots(emb, fs, idx, picks, frames, folder, baseline=None):
    """Distance histograms, ROC (model and baseline), 2-D projection, a neighbours grid."""
    from keras_triplet import plots
    from keras_triplet.metrics import pair_distances

    os.makedirs(folder, exist_ok=True)
    out = []
    p = os.path.join(folder, "distance_histograms.png")
    plots.distance_histograms(emb, fs.labels, title="held-out classes: pair distances", path=p)
    out.append(p)
    p = os.path.join(folder, "roc.png")
    d, same = pair_distances(emb, fs.labels)
    fig = plots.roc_curve_plot(d, same, title="held-out classes: verification ROC",
                               label="triplet CNN")
    if baseline is not None:
        _add_roc(fig, baseline, fs.labels)
    fig.savefig(p, dpi=100)
    out.append(p)
    p = os.path.join(folder, "projection.png")
    plots.embedding_projection(emb, fs.labels, title="held-out classes (PCA of embeddings)",
                               path=p)
    out.append(p)
    p = os.path.join(folder, "neighbors.png")
    _, ids, labels = idx.search(emb[picks], 5)
    pos = {os.path.abspath(path): i for i, path in enumerate(fs.paths)}
    d, _, _ = idx.search(emb[picks], 5)
    show = lambda i: F.fit_window(fs.features[i], frames).T[::-1]  # noqa: E731 - low bands at the bottom
    plots.neighbors_grid(
        [show(q) for q in picks],
        [[show(pos[str(i)]) for i in row[1:]] for row in ids],
        query_labels=[fs.label_names()[q] for q in picks],
        neighbor_labels=[list(row[1:]) for row in labels],
        distances=d[:, 1:], cmap="magma", cell_size=2.4,
        title="query -> nearest held-out clips (log-mel)", path=p)
    out.append(p)
    return out


def _add_roc(fig, stats, labels):
    from keras_triplet.metrics import pair_distances, roc_curve

    d, same = pair_distances(stats, labels, metric="cosine")
    far, tar, _ = roc_curve(d, same)
    ax = fig.axes[0]
    ax.plot(far, tar, linestyle="--", label="MFCC mean+std (cosine)")
    ax.legend(loc="lower right", fontsize="small")
