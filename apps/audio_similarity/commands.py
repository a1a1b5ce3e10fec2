"""The sub-commands: train, evaluate, index, query and demo, one function each.

Each takes the `argparse.Namespace` of `__main__.py` and returns an exit status.
Results go to stdout (one JSON object with `--json`); progress and information go to
stderr. `__main__` imports this module only after `--backend` has set `KERAS_BACKEND`.
"""

import argparse
import json
import os
import shutil
import time

import numpy as np

from apps._common import fail, log, side_path, write_bytes, write_json
from apps.audio_similarity import features as F
from apps.audio_similarity import search, training
from apps.audio_similarity.evaluation import baseline_embeddings, evaluate_features, format_metrics
from apps.audio_similarity.model import load_model
from apps.audio_similarity.plots import make_plots


def train(args):
    """Trains an embedder on DATA and saves MODEL.keras (+ side files)."""
    stem = training.model_stem(args.out)
    seconds = training.train(args)
    if seconds:
        log(f"{float(np.median(seconds)):.1f} s per epoch (median of {len(seconds)})")
    print(
        f"saved {args.out} (+ {os.path.basename(side_path(args.out))}, "
        f"{os.path.basename(stem)}.history.json, {os.path.basename(stem)}.curves.png)"
    )
    return 0


def evaluate(args):
    """Leave-one-out metrics of DATA with MODEL (and the MFCC baseline)."""
    model, settings, frames = load_model(args.model)
    fs = F.load_folder(args.data, settings, args.cache_dir, not args.quiet, report_path=args.report)
    if len(fs) < 2 or len(fs.class_names) < 2:
        fail("evaluation needs at least 2 usable files in 2 classes.")
    result, _ = evaluate_features(model, frames, fs, baseline=args.baseline)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(
            f"{args.data}: {result['num_files']} files, {result['num_classes']} classes, "
            f"{result['skipped']} skipped (leave-one-out)"
        )
        print(format_metrics(result))
    return 0


def index(args):
    """Embeds DATA by chunks (resumable) and saves INDEX (+ INDEX.json naming the model)."""
    model, settings, frames = load_model(args.model)
    report_path = args.report or args.out + ".skipped.tsv"
    idx, report, stats = search.index_folder(
        model,
        settings,
        frames,
        args.model,
        args.data,
        args.out,
        chunk=args.chunk,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    report.write(report_path)
    report.print()
    if len(idx) == 0:
        fail(f"no usable audio under {args.data!r} (see {report_path}).")
    log(
        f"{args.data}: {report.summary(len(idx), report_path)}; {stats['resumed']} file(s) from the "
        f"finished chunks of an interrupted run, {stats['extracted']} extracted, "
        f"{stats['cached']} from the feature cache"
    )
    classes = len(set(idx.labels.tolist()))
    print(
        f"indexed {len(idx)} files of {classes} classes into {args.out} "
        f"(skipped {len(report)}) in {stats['seconds']:.1f} s"
    )
    return 0


def query(args):
    """The nearest indexed clips of each FILE; 2 when no query file was usable."""
    idx, model_path = search.load_index(args.index, args.model)
    model, settings, frames = load_model(model_path)
    results, report = search.query_files(
        model, settings, frames, idx, args.files, args.top, cache_dir=args.cache_dir
    )
    if args.json:
        out = {"results": results, "skipped": [{"file": f, "reason": r} for f, r in report.rows]}
        print(json.dumps(out if len(args.files) > 1 else (results[0] if results else out)))
    else:
        for res in results:
            print(f"query: {res['query']}")
            for nb in res["neighbors"]:
                label = "" if nb["label"] is None else f"{nb['label']:24s} "
                print(f"  {nb['rank']:3d}. {nb['distance']:.4f}  {label}{nb['file']}")
        for f, r in report.rows:
            print(f"skipped {f}: {r}")
    return 0 if results else 2


def demo(args):
    """Built-in data -> train -> open-set evaluation vs. MFCC -> index -> queries -> plots."""
    from apps.audio_similarity import synth

    t_start = time.perf_counter()
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    log(f"[1/6] built-in data set in {args.data}")
    manifest = synth.make_dataset(
        args.data,
        num_sources=args.sources,
        clips_per_class=args.clips_per_class,
        seed=args.seed,
        progress=not args.quiet,
    )
    train_dir, heldout_dir = os.path.join(args.data, "train"), os.path.join(args.data, "heldout")
    log(
        f"      {manifest['num_clips']} clips, {len(manifest['train_classes'])} training "
        f"classes, {len(manifest['heldout_classes'])} held-out classes"
    )

    model_path = os.path.join(work, "model.keras")
    log(f"[2/6] training -> {model_path} (validation curve: the held-out classes, for monitoring only)")
    t0 = time.perf_counter()
    train(_train_args(args, data=train_dir, out=model_path, val_data=heldout_dir))
    train_seconds = time.perf_counter() - t0

    log("[3/6] open-set evaluation on the held-out classes (never seen in training)")
    model, settings, frames = load_model(model_path)
    fs = F.load_folder(
        heldout_dir,
        settings,
        args.cache_dir,
        not args.quiet,
        report_path=os.path.join(work, "heldout.skipped.tsv"),
    )
    result, emb = evaluate_features(model, frames, fs, baseline="mfcc")
    result["train_seconds"] = train_seconds
    write_json(os.path.join(work, "evaluation.json"), result)
    print(format_metrics(result))

    log("[4/6] index of the held-out clips")
    idx = search.build_index(emb, fs)
    index_path = os.path.join(work, "heldout.index.npz")
    search.save_index(idx, index_path, model_path, heldout_dir)

    log("[5/6] a few queries")
    picks = np.random.default_rng(args.seed).choice(len(fs), size=min(4, len(fs)), replace=False)
    lines = _demo_queries(idx, emb, fs, picks)
    write_bytes(os.path.join(work, "queries.txt"), ("\n".join(lines) + "\n").encode("utf-8"))
    print("\n".join(lines))

    log("[6/6] plots")
    plots = make_plots(
        emb, fs, idx, picks, frames, os.path.join(work, "plots"), baseline=baseline_embeddings(fs.features)
    )
    if args.save_to:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_to)), exist_ok=True)
        shutil.copyfile(model_path, args.save_to)
        shutil.copyfile(side_path(model_path), side_path(args.save_to))
    print()
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s (training {train_seconds:.0f} s)")
    for name, path in (
        ("data", args.data),
        ("model", model_path),
        ("curves", os.path.join(work, "model.curves.png")),
        ("evaluation", os.path.join(work, "evaluation.json")),
        ("index", index_path),
        ("queries", os.path.join(work, "queries.txt")),
        *(("plot", p) for p in plots),
    ):
        print(f"  {name + ':':12s} {path}")
    if args.save_to:
        print(f"  copied model to {args.save_to}")
    print(f"held-out Recall@1 {result['recall@1']:.3f} vs MFCC baseline {result['baseline_recall@1']:.3f}")
    return 0


def _demo_queries(idx, emb, fs, picks):
    lines = []
    for q in picks:
        d, ids, labels = idx.search(emb[q : q + 1], 6)
        lines.append(f"query {fs.paths[q]}  [{fs.label_names()[q]}]")
        for r in range(1, d.shape[1]):  # rank 0 is the query itself
            lines.append(f"  {r}. {d[0, r]:.4f}  {labels[0, r]:24s} {os.path.basename(ids[0, r])}")
    return lines


def _train_args(args, data, out, val_data=None):
    """The `train` options of the demo's arguments."""
    return argparse.Namespace(
        data=data,
        out=out,
        val_data=val_data,
        epochs=args.epochs,
        frames=args.frames,
        n_mels=args.n_mels,
        classes_per_batch=args.classes_per_batch,
        samples_per_class=args.samples_per_class,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        margin=args.margin,
        miner=args.miner,
        width=args.width,
        dim=args.dim,
        seed=args.seed,
        no_augment=args.no_augment,
        augment=args.augment,
        loss=args.loss,
        mixed_precision=args.mixed_precision,
        cache_dir=args.cache_dir,
        report=None,
        restart=args.restart,
        quiet=args.quiet,
        verbose=args.verbose,
    )
