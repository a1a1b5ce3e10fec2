"""Command line: `python -m apps.audio_similarity {train,evaluate,index,query,serve,demo} ...`.

The parser only; the sub-commands are in `commands.py` (`serve`: in `serve.py`).

Run any subcommand with `--help` for its options. `--backend` (on every subcommand)
sets `KERAS_BACKEND` before Keras is imported; without it the usual `KERAS_BACKEND`
environment variable (or Keras' default) applies.
"""

import argparse
import os
import sys

from apps._common import add_backend_argument, quiet_tensorflow, require_file, require_folder, select_backend
from apps._web import add_server_arguments

DEFAULT_CACHE = os.path.join(".cache", "audio_similarity", "features")
DEFAULT_RUNS = os.path.join("runs", "audio_similarity")
DEMO_DATA = os.path.join(".cache", "audio_similarity", "builtin")


def _common(p):
    add_backend_argument(p)
    p.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE,
        help=f"feature cache folder, keyed by file content + settings "
        f"(default: {DEFAULT_CACHE}); '' disables the cache",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _training(p, epochs):
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="steps per epoch (default: the P×K sampler's, about one pass)",
    )
    g.add_argument(
        "--classes-per-batch", "-P", type=int, default=16, help="P, classes per batch (default 16)"
    )
    g.add_argument(
        "--samples-per-class", "-K", type=int, default=4, help="K, clips per class in a batch (default 4)"
    )
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, cosine decay (default 2e-3)")
    g.add_argument(
        "--loss",
        default="triplet",
        choices=("triplet", "multi-similarity", "supcon"),
        help="metric-learning loss (default triplet; --margin and --miner apply to it): "
        "multi-similarity and supcon use every pair of the batch",
    )
    g.add_argument("--margin", type=float, default=0.2, help="triplet margin (default 0.2)")
    g.add_argument(
        "--miner",
        default="semi-hard",
        choices=("semi-hard", "batch-hard", "batch-all"),
        help="triplet mining (default semi-hard)",
    )
    g.add_argument(
        "--frames", type=int, default=96, help="window length in 10 ms frames (default 96, about 1 s)"
    )
    g.add_argument("--n-mels", type=int, default=64, help="mel bands (default 64)")
    g.add_argument("--width", type=int, default=16, help="channels of the first conv block (default 16)")
    g.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    g.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    g.add_argument(
        "--augment",
        default="basic",
        choices=("basic", "full", "none"),
        help="training augmentation (default basic: gain, noise, SpecAugment; full: also time "
        "stretch, pitch shift, EQ, reverb and mixing another clip; none: random crop only)",
    )
    g.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    g.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (on a GPU)")
    g.add_argument(
        "--restart",
        action="store_true",
        help="ignore a checkpoint of an interrupted run (default: resume it)",
    )
    g.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="Keras fit verbosity (default 1: a progress bar)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m apps.audio_similarity",
        description="Audio similarity search: train a triplet-loss CNN on log-mel "
        "spectrograms of DATA/<class>/<file>, evaluate it on unseen classes, "
        "index a collection and find what sounds like a query.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train an embedding model on DATA/<class>/<file>",
        description="Train the CNN embedder with a triplet loss on P×K batches. "
        "Writes MODEL.keras, MODEL.keras.json (feature settings), "
        "MODEL.history.json (loss and mining statistics per epoch), "
        "MODEL.curves.png and MODEL.skipped.tsv. An interrupted run "
        "resumes from its last finished epoch.",
    )
    p.add_argument("data", metavar="DATA", help="folder of class sub-folders of sound files")
    p.add_argument("--out", required=True, metavar="MODEL.keras", help="where to save the model")
    p.add_argument("--report", default=None, help="skipped-file report (default: MODEL.skipped.tsv)")
    p.add_argument(
        "--val-data",
        default=None,
        metavar="DIR",
        help="DIR/<class>/<file> clips for a validation curve (loss after each epoch; "
        "nothing is chosen from it)",
    )
    _training(p, epochs=20)
    _common(p)

    p = sub.add_parser(
        "evaluate",
        help="leave-one-out retrieval + verification on DATA",
        description="Every file of DATA queries all the others (its classes need "
        "not have been seen in training): Recall@1, Recall@5, MAP@R, "
        "EER and ROC AUC, optionally beside the MFCC baseline.",
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("--model", required=True, metavar="MODEL.keras")
    p.add_argument(
        "--baseline",
        choices=("mfcc",),
        default=None,
        help="also score the MFCC mean+std (cosine) baseline on the same files",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--report",
        default=os.path.join(DEFAULT_RUNS, "evaluate.skipped.tsv"),
        help=f"skipped-file report (default: {DEFAULT_RUNS}/evaluate.skipped.tsv)",
    )
    _common(p)

    p = sub.add_parser(
        "index",
        help="embed DATA and save a searchable index",
        description="Embed every usable file of DATA and save an EmbeddingIndex "
        "(INDEX, plus INDEX.json naming the model). Works by chunks of files (bounded "
        "memory); run it again after an interruption (even kill -9) and it resumes from "
        "the finished chunks.",
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("--model", required=True, metavar="MODEL.keras")
    p.add_argument("--out", required=True, metavar="INDEX", help="index file (e.g. sounds.npz)")
    p.add_argument("--report", default=None, help="skipped-file report (default INDEX.skipped.tsv)")
    p.add_argument(
        "--chunk",
        type=int,
        default=1000,
        help="files embedded at a time (default 1000): bounds memory; each finished chunk is kept "
        "in INDEX.parts/ until the end, so an interrupted run resumes from there",
    )
    _common(p)

    p = sub.add_parser(
        "query",
        help="the nearest indexed sounds of FILE",
        description="Rank the indexed files by distance to each query file.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--index", required=True, metavar="INDEX")
    p.add_argument("--top", type=int, default=5, help="neighbours per query (default 5)")
    p.add_argument("--model", default=None, help="model (default: the one named in INDEX.json)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    p = sub.add_parser(
        "serve",
        help="a web page (and JSON API) to search INDEX by uploading or picking a clip",
        description="Serve a page where a clip is uploaded (or picked from the index) and its "
        "nearest indexed clips are listed with distances and labels, and can be played. "
        "JSON API: POST /search, GET /clips, GET /clips/<n>, GET /info (see serve.py). "
        "Listens on localhost unless --host says otherwise.",
    )
    p.add_argument("--index", required=True, metavar="INDEX")
    p.add_argument("--model", default=None, help="model (default: the one named in INDEX.json)")
    add_server_arguments(p)
    _common(p)

    p = sub.add_parser(
        "demo",
        help="built-in data -> train -> evaluate -> index -> query -> plots",
        description="Make the built-in data set if missing, train on its training "
        "classes, evaluate on the held-out classes against the MFCC "
        "baseline, index them, answer a few queries, write plots and "
        "print where everything is.",
    )
    p.add_argument("--data", default=DEMO_DATA, help=f"built-in data folder (default {DEMO_DATA})")
    p.add_argument(
        "--workdir",
        default=os.path.join("runs", "audio_similarity_demo"),
        help="outputs (default runs/audio_similarity_demo)",
    )
    p.add_argument(
        "--sources", type=int, default=24, help="sound sources, two classes each (default 24: 48 classes)"
    )
    p.add_argument("--clips-per-class", type=int, default=50, help="default 50")
    p.add_argument(
        "--save-to",
        default=None,
        metavar="PATH.keras",
        help="also copy the trained model there (e.g. saved_models/audio_similarity.keras)",
    )
    _training(p, epochs=12)
    _common(p)
    return parser


def check_inputs(args):
    """One-line errors for missing inputs, before Keras and the backend are imported."""
    train_hint = "Train one with `train DATA --out MODEL.keras`."
    if args.command in ("train", "evaluate", "index"):
        require_folder(
            args.data, hint="Expected DATA/<class>/<file> (one sub-folder of sound files per class)."
        )
    if args.command == "train" and args.val_data:
        require_folder(args.val_data, "--val-data folder", hint="Expected DIR/<class>/<file>.")
    if args.command in ("evaluate", "index") or (args.command == "query" and args.model):
        require_file(args.model, "model file", train_hint)
    if args.command in ("query", "serve"):
        require_file(args.index, "index", "Build one with `index DATA --model MODEL.keras --out INDEX`.")
    if args.command == "serve" and args.model:
        require_file(args.model, "model file", train_hint)


def main(argv=None):
    args = build_parser().parse_args(argv)
    select_backend(args.backend)  # (only sets a variable; fails if another backend is loaded)
    check_inputs(args)
    # --verbose 2 keeps TensorFlow's logging; training feeds batches through tf.data.
    quiet_tensorflow(
        verbose=getattr(args, "verbose", 1) >= 2, preload=True if args.command in ("train", "demo") else None
    )
    if args.cache_dir == "":
        args.cache_dir = None
    if args.command == "serve":
        from apps.audio_similarity.serve import serve  # imports Keras: after select_backend

        return serve(args)
    from apps.audio_similarity import commands  # imports Keras: after select_backend

    return getattr(commands, args.command)(args)


if __name__ == "__main__":
    sys.exit(main())
