"""Command line: `python -m apps.signature_verification {generate,train,calibrate,evaluate,enroll,verify,serve,demo}`.

The parser only; the sub-commands are in `commands.py` (`serve`: in `serve.py`). Run
`python -m apps.signature_verification --help` (or `COMMAND --help`) for the options.
`--backend` (on every sub-command) sets `KERAS_BACKEND` before Keras is imported;
without it the usual `KERAS_BACKEND` environment variable (or Keras' default) applies.
"""

import argparse
import os
import sys

from apps._common import (
    add_backend_argument,
    fail,
    quiet_tensorflow,
    require_file,
    require_folder,
    select_backend,
)
from apps._web import add_server_arguments
from apps.signature_verification.features import (
    HOG_EPOCHS,
    HOG_HIDDEN,
    HOG_LEARNING_RATE,
    HOG_MARGIN,
    NETWORKS,
)
from apps.signature_verification.protocol import RULES  # NumPy and Pillow only: --help stays fast
from apps.signature_verification.synthetic import GENERATORS

DEFAULT_DEMO_OUT = os.path.join("runs", "signature_verification")
DEFAULT_DEMO_DATA = os.path.join(".cache", "signature_verification")
DEFAULT_RULE = "min"
# `train --init auto` fine-tunes the shipped model below this many writers (see README.md).
SMALL_DATA_WRITERS = 100


def _reference_counts(text):
    """`--references 1,3,5,10` -> [1, 3, 5, 10]."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return counts


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m apps.signature_verification",
        description="Writer-independent offline signature verification with a SigNet-style CNN trained by "
        "triplet loss (keras_triplet). Backend: --backend, else KERAS_BACKEND (tensorflow, jax, torch).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="write synthetic signatures (genuine + skilled forgeries)",
        description="Generates seeded synthetic signatures (see apps/signature_verification/synthetic.py).",
    )
    g.add_argument("out", metavar="OUT", help="output folder")
    g.add_argument("--writers", type=int, required=True, help="number of writers")
    g.add_argument("--genuine", type=int, default=12, help="genuine signatures per writer (default 12)")
    g.add_argument("--forgeries", type=int, default=12, help="skilled forgeries per writer (default 12)")
    g.add_argument("--forgers", type=int, default=3, help="forgers per writer (default 3)")
    g.add_argument("--skill", type=float, default=1.0, help="forgers' skill: >1 harder forgeries (default 1)")
    g.add_argument(
        "--layout",
        choices=("cedar", "generic", "bhsig260"),
        default="cedar",
        help="file layout (default cedar)",
    )
    g.add_argument(
        "--generator",
        choices=tuple(GENERATORS),
        default="default",
        help="generator configuration: default; transfer (other pens, hands, forgers, resolution "
        "and paper, never used for training: a held-out population); or varied (for training: each "
        "writer draws its own pen, resolution, hand, forgers and paper, short of transfer's; see synthetic.py)",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    add_backend_argument(g)

    t = sub.add_parser(
        "train",
        help="train a model writer-independently",
        description="Splits the writers into train / validation / test (seeded), trains on the "
        "training writers, picks the epoch and the threshold on the validation writers, "
        "and writes MODEL.keras plus MODEL.keras.json (metadata).",
    )
    t.add_argument("data", metavar="DATA", help="data folder (CEDAR, BHSig260 or generic layout)")
    t.add_argument("--out", required=True, metavar="MODEL.keras")
    t.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    t.add_argument(
        "--network",
        choices=NETWORKS,
        default=None,
        help="hog (default): a metric learned on scikit-image HOG descriptors (a residual MLP that "
        "starts as HOG); signet: the SigNet-style CNN on images (the default when --width or "
        "--embedding-dim is given; fine-tunes the shipped CNN under --init auto on small data). "
        "With --init MODEL: MODEL's",
    )
    t.add_argument(
        "--hidden", type=int, default=None, help=f"hidden units of the HOG metric (default {HOG_HIDDEN})"
    )
    t.add_argument("--epochs", type=int, default=None, help=f"default {HOG_EPOCHS} (hog), 8 (signet)")
    t.add_argument(
        "--init",
        default="auto",
        metavar="MODEL",
        help="fine-tune MODEL (.keras, with its side file) instead of training a new network; "
        "'none': from scratch (the HOG metric starts as HOG itself); 'auto' (default): when DATA has "
        f"fewer than {SMALL_DATA_WRITERS} writers, the shipped model of the network "
        "(saved_models/signature_hog_metric.keras or signature_verification.keras), else from scratch "
        "(a line says which)",
    )
    t.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="input size after preprocessing (default 64 128; with --init, MODEL's)",
    )
    t.add_argument("--classes-per-batch", type=int, default=8, help="P writers per batch (default 8)")
    t.add_argument(
        "--samples-per-class",
        type=int,
        default=4,
        help="K genuine signatures (and K forgeries) per writer in a batch (default 4)",
    )
    t.add_argument(
        "--margin", type=float, default=None, help=f"triplet margin (default {HOG_MARGIN} hog, 0.3 signet)"
    )
    t.add_argument("--miner", default="semi-hard", choices=("semi-hard", "batch-hard", "batch-all"))
    t.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help=f"Adam, cosine decay (default {HOG_LEARNING_RATE:g} hog; signet: 3e-3 from scratch, "
        "3e-4 when fine-tuning)",
    )
    t.add_argument("--embedding-dim", type=int, default=None, help="from scratch only (default 64)")
    t.add_argument(
        "--width", type=float, default=None, help="network width multiplier, from scratch only (default 0.5)"
    )
    t.add_argument("--val-fraction", type=float, default=0.15, help="validation writers (default 0.15)")
    t.add_argument("--test-fraction", type=float, default=0.25, help="held-out test writers (default 0.25)")
    t.add_argument("--references", type=int, default=5, help="reference signatures per writer (default 5)")
    t.add_argument(
        "--rule",
        choices=[r for r in RULES if r != "calibrated"],
        default=None,
        help=f"score against the references (default {DEFAULT_RULE}, or calibrated when the --init "
        "model is calibrated and comes back unchanged; see protocol.py; `calibrate` a trained model "
        "for the calibrated rule)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--verbose", type=int, default=1)
    add_backend_argument(t)

    c = sub.add_parser(
        "calibrate",
        help="fit the calibrated rule (cohort score normalisation) of a model on writers with forgeries",
        description="Embeds the signatures of DATA's writers with MODEL, keeps the references of "
        "--cohort-writers of them as the cohort and fits, on the others (genuine signatures, skilled "
        "and random forgeries), the logistic regression of the calibrated rule (see cohort.py). Writes "
        "MODEL.keras.cohort.npz and makes `calibrated` the model's rule, with a threshold chosen on the "
        "same writers. With --fuse PARTNER, one calibration of both models' embeddings (MODEL's side "
        "file then names PARTNER, which every command loads with MODEL). Use writers the model may see (its training data or other generated writers), "
        "never the writers you test on.",
    )
    c.add_argument("data", metavar="DATA", help="writers with genuine signatures and skilled forgeries")
    c.add_argument("--model", required=True, metavar="MODEL.keras")
    c.add_argument("--cohort-writers", type=int, default=100, help="writers in the cohort (default 100)")
    c.add_argument(
        "--writers", type=int, default=None, help="use this many of DATA's writers (seeded; default all)"
    )
    c.add_argument(
        "--references", type=int, default=None, help="references per writer (default: the model's, 5)"
    )
    c.add_argument(
        "--fuse",
        default=None,
        metavar="PARTNER.keras",
        help="fuse MODEL with another model of the same images (the shipped default: the HOG metric "
        "with the CNN): one calibration of both embeddings, PARTNER named in MODEL's side file and "
        "loaded with it by every command; `none` drops a partner (default: keep MODEL's)",
    )
    c.add_argument(
        "--regularization",
        type=float,
        default=1.0,
        metavar="C",
        help="the regression's inverse L2 strength (scikit-learn's C; default 1)",
    )
    c.add_argument(
        "--no-guard",
        dest="guard",
        action="store_false",
        help="with a partner: no veto of MODEL's own calibrated score (by default a signature is "
        "accepted only when the fused score and MODEL's alone both accept it; see cohort.py)",
    )
    c.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    c.add_argument("--seed", type=int, default=0)
    add_backend_argument(c)

    e = sub.add_parser(
        "evaluate",
        help="FAR / FRR / EER / AUC on writers not used for training",
        description="Writer-independent evaluation. On the training data, uses the training run's "
        "split (threshold on the validation writers, metrics on the test writers); on "
        "other data, all writers are unseen: the threshold is chosen on half of them "
        "and the metrics measured on the other half.",
    )
    e.add_argument("data", metavar="DATA")
    e.add_argument("--model", default=None, metavar="MODEL.keras", help="required unless --baseline")
    e.add_argument(
        "--baseline",
        choices=("pixels", "hog"),
        default=None,
        help="score raw pixels or HOG descriptors instead of the model's embeddings (on MODEL's "
        "writers, input size, references and rule when --model is given too)",
    )
    e.add_argument(
        "--references",
        type=_reference_counts,
        default=None,
        metavar="N[,N...]",
        help="references per writer (default: the model's, 5); several, e.g. 1,3,5,10: one row each",
    )
    e.add_argument(
        "--rule",
        choices=RULES,
        default=None,
        help="score against the references (default: the model's; the threshold is re-chosen on the "
        "validation writers)",
    )
    e.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plots", metavar="DIR", default=None, help="write ROC / DET / histogram PNGs here")
    add_backend_argument(e)

    n = sub.add_parser(
        "enroll",
        help="enrol a writer from a folder of genuine signatures",
        description="Embeds the images in WRITER_DIR (or WRITER_DIR/genuine; files named as CEDAR or "
        "BHSig260 forgeries are skipped), or those of --writer in the data folder WRITER_DIR, and "
        "writes a JSON profile (reference embeddings, threshold, model path; no pickle).",
    )
    n.add_argument("writer_dir", metavar="WRITER_DIR")
    n.add_argument(
        "--writer",
        default=None,
        help="WRITER_DIR is a data folder (CEDAR, BHSig260 or generic layout): enrol this writer, "
        "named as evaluate names them (12 in CEDAR, B-12 in BHSig260, the folder name in generic)",
    )
    n.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    n.add_argument(
        "--references",
        type=int,
        default=None,
        metavar="N",
        help="enrol with the first N genuine signatures (natural order; default: all)",
    )
    n.add_argument("--model", required=True, metavar="MODEL.keras")
    n.add_argument("--out", required=True, metavar="PROFILE")
    n.add_argument("--threshold", type=float, default=None, help="default: the model's validation threshold")
    add_backend_argument(n)

    v = sub.add_parser("verify", help="accept or reject a signature against an enrolled profile")
    v.add_argument("image", metavar="IMAGE")
    v.add_argument("--profile", required=True, metavar="PROFILE")
    v.add_argument("--model", default=None, help="default: the model recorded in the profile")
    v.add_argument("--threshold", type=float, default=None, help="default: the profile's threshold")
    v.add_argument("--json", action="store_true")
    add_backend_argument(v)

    s = sub.add_parser(
        "serve",
        help="a web page (and JSON API) to enrol writers and verify signatures",
        description="Serve a page where a writer is enrolled from uploaded genuine signatures and a "
        "questioned signature is verified against a profile (distance, threshold, decision). JSON API: "
        "POST /enroll, POST /verify, GET /profiles, GET /profiles/<writer>, GET /info (see serve.py). "
        "Listens on localhost unless --host says otherwise.",
    )
    s.add_argument("--model", required=True, metavar="MODEL.keras")
    s.add_argument(
        "--profiles",
        default=None,
        metavar="DIR",
        help="keep profiles in DIR/<writer>.json (default: in memory)",
    )
    s.add_argument("--threshold", type=float, default=None, help="default: the model's validation threshold")
    add_server_arguments(s)
    add_backend_argument(s)

    d = sub.add_parser(
        "demo",
        help="generate, train, evaluate on held-out writers, plot (about 25 minutes on one "
        "CPU core with the defaults; --writers 160 --epochs 4 for a quick look)",
    )
    d.add_argument("--out", default=DEFAULT_DEMO_OUT, help=f"outputs (default {DEFAULT_DEMO_OUT})")
    d.add_argument(
        "--data-dir", default=DEFAULT_DEMO_DATA, help=f"generated data (default {DEFAULT_DEMO_DATA})"
    )
    d.add_argument("--writers", type=int, default=1600)
    d.add_argument("--genuine", type=int, default=10, help="genuine signatures and forgeries per writer")
    d.add_argument("--epochs", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2)
    add_backend_argument(d)
    return p


def check_inputs(args):
    """One-line errors for missing inputs and impossible sizes, before Keras and the
    backend are imported."""
    train_hint = "Train one with `train DATA --out MODEL.keras`."
    if args.command in ("generate", "demo") and args.writers < 1:
        fail(f"--writers must be at least 1; got {args.writers}.")
    if args.command == "generate" and args.genuine < 1:
        fail(f"--genuine must be at least 1; got {args.genuine}.")
    if args.command == "train" and args.rule is None:
        args.rule, args.rule_given = DEFAULT_RULE, False
    elif args.command == "train":
        args.rule_given = True
    if args.command == "calibrate" and args.cohort_writers < 1:
        fail(f"--cohort-writers must be at least 1; got {args.cohort_writers}.")
    if args.command == "calibrate" and not args.regularization > 0:
        fail(f"--regularization must be positive; got {args.regularization}.")
    if args.command == "calibrate" and args.fuse not in (None, "none"):
        require_file(args.fuse, "--fuse model", "Give a .keras model of the same images, or `none`.")
    if args.command in ("train", "evaluate", "calibrate"):
        require_folder(args.data, hint="Give a CEDAR, BHSig260 or generic (DATA/<writer>/...) folder.")
    if args.command == "evaluate" and args.model is None and args.baseline is None:
        fail("evaluate needs --model MODEL.keras (or --baseline pixels|hog).")
    if args.command in ("enroll", "serve", "calibrate") or (
        args.command in ("verify", "evaluate") and args.model
    ):
        require_file(args.model, "model file", train_hint)
    if args.command == "train" and args.init not in ("auto", "none"):
        require_file(args.init, "--init model", "Give a .keras model, `auto` or `none`.")
    if args.command == "enroll":
        require_folder(args.writer_dir, "writer folder", "Give a folder of the writer's genuine signatures.")
    if args.command == "verify":
        require_file(
            args.profile,
            "profile",
            "Enrol the writer first with `enroll WRITER_DIR --model MODEL.keras --out PROFILE`.",
        )
        require_file(args.image, "image")


def main(argv=None):
    args = build_parser().parse_args(argv)
    select_backend(args.backend)  # (only sets a variable; fails if another backend is loaded)
    check_inputs(args)
    # --verbose 2 keeps TensorFlow's logging; training feeds batches through tf.data.
    quiet_tensorflow(
        verbose=getattr(args, "verbose", 1) >= 2, preload=True if args.command in ("train", "demo") else None
    )
    if args.command == "serve":
        from apps.signature_verification.serve import serve  # imports Keras: after select_backend

        return serve(args)
    from apps.signature_verification import commands  # imports Keras: after select_backend

    try:
        return getattr(commands, args.command)(args)
    except (FileNotFoundError, ValueError) as e:  # the data's problems (no layout, too few writers, ...)
        if getattr(args, "verbose", 1) >= 2:
            raise
        fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
