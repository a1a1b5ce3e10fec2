"""Command line: `python -m apps.signature_verification {generate,train,evaluate,enroll,verify,demo}`.

Run `python -m apps.signature_verification --help` (or `COMMAND --help`) for the options.
The Keras backend is the one in `KERAS_BACKEND` (tensorflow, jax or torch).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

from apps.signature_verification.protocol import RULES  # NumPy and Pillow only: --help stays fast

PROFILE_FORMAT = "keras-triplet/signature-profile/1"
DEFAULT_DEMO_OUT = os.path.join("runs", "signature_verification")
DEFAULT_DEMO_DATA = os.path.join(".cache", "signature_verification")
DEFAULT_RULE = "min"


def _eprint(*args):
    print(*args, file=sys.stderr, flush=True)


def _report_skipped(skipped, limit=10):
    if not skipped:
        return
    _eprint(f"skipped {len(skipped)} file(s):")
    for path, reason in skipped[:limit]:
        _eprint(f"  {path}: {reason}")
    if len(skipped) > limit:
        _eprint(f"  ... and {len(skipped) - limit} more")


def _load_split_images(dataset, writers, size):
    """Images, writer ids and genuine flags of `writers` (unreadable files skipped)."""
    from apps.signature_verification.preprocessing import load_images

    samples = [s for s in dataset.subset(writers).samples]
    images, kept, skipped = load_images([s.path for s in samples], size)
    dataset.skipped.extend(skipped)
    _report_skipped(skipped)
    samples = [samples[i] for i in kept]
    return images, np.array([s.writer for s in samples], dtype=str), np.array([s.genuine for s in samples], bool)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fmt(x, pct=True):
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if pct else f"{x:.4f}"


# --------------------------------------------------------------------------- generate

def cmd_generate(args):
    from apps.signature_verification.synthetic import generate_dataset

    t = time.perf_counter()
    n = generate_dataset(args.out, args.writers, args.genuine, args.forgeries, seed=args.seed,
                         layout=args.layout, forgers_per_writer=args.forgers, forgery_skill=args.skill,
                         workers=args.workers)
    print(f"wrote {n} images of {args.writers} writers ({args.layout} layout) to {args.out} "
          f"in {time.perf_counter() - t:.1f} s")
    return 0


# --------------------------------------------------------------------------- train

def cmd_train(args):
    from apps.signature_verification import protocol
    from apps.signature_verification.loaders import load_dataset
    from apps.signature_verification.training import check_inputs, save_model, train_model

    dataset = load_dataset(args.data, args.layout)
    print(dataset.summary())
    _report_skipped(dataset.skipped)
    split = protocol.writer_split(dataset.writers, args.val_fraction, args.test_fraction, seed=args.seed)
    print(f"writers: {len(split['train'])} train, {len(split['val'])} validation, "
          f"{len(split['test'])} test (held out, not loaded)")
    size = tuple(args.size)
    t = time.perf_counter()
    x, w, g = _load_split_images(dataset, split["train"], size)
    vx, vw, vg = _load_split_images(dataset, split["val"], size) if split["val"] else (None, None, None)
    print(f"preprocessed {len(x) + (len(vx) if vx is not None else 0)} images in {time.perf_counter() - t:.1f} s")
    if len(set(w.tolist())) < 2:
        raise SystemExit("error: training needs at least 2 training writers with readable images.")
    model, info = train_model(
        x, w, g, vx, vw, vg, epochs=args.epochs, classes_per_batch=args.classes_per_batch,
        samples_per_class=args.samples_per_class, margin=args.margin, miner=args.miner,
        learning_rate=args.learning_rate, embedding_dim=args.embedding_dim, width=args.width,
        references=args.references, rule=args.rule, seed=args.seed, verbose=args.verbose)
    threshold = info.get("threshold")
    if threshold is None:
        # No validation writers: fall back to the training writers (optimistic) and say so.
        scores = protocol.verification_scores(model.embed(x), w, g, args.references, args.rule, args.seed)
        threshold = protocol.choose_threshold(scores)
        _eprint("warning: no validation writers; the threshold was chosen on the training writers.")
    metadata = {
        "image_size": list(size),
        "references": args.references,
        "rule": args.rule,
        "threshold": threshold,
        "threshold_source": "validation writers, EER of genuine vs skilled forgeries"
        if info.get("threshold") is not None else "training writers",
        "split": split,
        "seed": args.seed,
        "data_fingerprint": dataset.fingerprint(),
        "data_root": os.path.abspath(args.data),
        "layout": dataset.layout,
        "training": {k: v for k, v in info.items() if k not in ("history", "val", "threshold")},
        "settings": {k: getattr(args, k) for k in ("epochs", "classes_per_batch", "samples_per_class", "margin",
                                                   "miner", "learning_rate", "embedding_dim", "width")},
        "validation": info.get("val"),
        "check_embeddings": model.embed(check_inputs(size)).round(6).tolist(),
    }
    save_model(model, args.out, metadata)
    print(f"trained {info['epochs']} epochs on {info['backend']}: {info['seconds_per_epoch']} s/epoch "
          f"(first epoch {info['seconds_first_epoch']} s), {info['train_seconds']} s in all"
          + (f"; best epoch {info['best_epoch']}" if "best_epoch" in info else ""))
    if info.get("val"):
        v = info["val"]
        print(f"validation writers: EER skilled {_fmt(v['eer_skilled'])}, random {_fmt(v['eer_random'])}; "
              f"threshold {threshold:.4f}")
    print(f"saved {args.out} (+ {os.path.splitext(args.out)[0]}.json)")
    return 0


# --------------------------------------------------------------------------- evaluate

def evaluate(data, model_path, references=None, rule=None, layout="auto", seed=None, plots=None, verbose=True):
    """The writer-independent evaluation (see `cmd_evaluate`); returns the result dict."""
    from apps.signature_verification import protocol
    from apps.signature_verification.loaders import load_dataset
    from apps.signature_verification.training import load_model

    model, meta = load_model(model_path)
    references = references or meta.get("references", 5)
    rule = rule or meta.get("rule", "mean")
    seed = meta.get("seed", 0) if seed is None else seed
    dataset = load_dataset(data, layout)
    if verbose:
        print(dataset.summary(), file=sys.stderr)
    _report_skipped(dataset.skipped)
    split = meta.get("split")
    if split and meta.get("data_fingerprint") == dataset.fingerprint() and split.get("test"):
        source = "the training run's split (training writers left out)"
        val_writers, test_writers = split["val"], split["test"]
    else:
        # Data the model never saw: half the writers choose the threshold, half are tested.
        s = protocol.writer_split(dataset.writers, 0.5, 0.5, seed=seed)
        val_writers, test_writers = s["val"], s["test"]
        source = "all writers unseen; threshold on half of them, metrics on the other half"
    size = tuple(meta["image_size"])
    vx, vw, vg = _load_split_images(dataset, val_writers, size)
    tx, tw, tg = _load_split_images(dataset, test_writers, size)
    val_scores = protocol.verification_scores(model.embed(vx, batch_size=128), vw, vg, references, rule, seed)
    threshold = protocol.choose_threshold(val_scores)
    test_scores = protocol.verification_scores(model.embed(tx, batch_size=128), tw, tg, references, rule, seed)
    result = protocol.summarize(test_scores, threshold)
    result.update({
        "references": references,
        "rule": rule,
        "split": source,
        "val_writers": len(val_scores["writers"]),
        "test_writers": len(test_scores["writers"]),
        "model": os.fspath(model_path),
        "data": os.fspath(data),
    })
    if plots:
        result["plots"] = write_plots(test_scores, plots)
    return result


def write_plots(scores, folder):
    """ROC and DET curves (skilled and random forgeries) and score histograms as PNG files."""
    from keras_triplet import plots

    os.makedirs(folder, exist_ok=True)
    paths = []
    for kind in ("skilled", "random"):
        if len(scores[kind]) == 0:
            continue
        d = np.r_[scores["genuine"], scores[kind]]
        same = np.r_[np.ones(len(scores["genuine"]), bool), np.zeros(len(scores[kind]), bool)]
        for name, fn in (("roc", plots.roc_curve_plot), ("det", plots.det_curve_plot)):
            path = os.path.join(folder, f"{name}_{kind}.png")
            fn(d, same, title=f"{name.upper()}: genuine vs {kind} forgeries (test writers)",
               label=f"{kind} forgeries", path=path)
            paths.append(path)
    path = os.path.join(folder, "score_histograms.png")
    _score_histograms(scores, path)
    paths.append(path)
    return paths


def _score_histograms(scores, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    allv = np.r_[scores["genuine"], scores["skilled"], scores["random"]]
    edges = np.histogram_bin_edges(allv, bins=40)
    for kind, color in (("genuine", "tab:green"), ("skilled", "tab:red"), ("random", "tab:gray")):
        if len(scores[kind]):
            ax.hist(scores[kind], bins=edges, density=True, alpha=0.5, color=color,
                    label=f"{kind} (n={len(scores[kind])})")
    ax.set_xlabel("score (distance to the writer's references)")
    ax.set_ylabel("density")
    ax.set_title("Verification scores (test writers)")
    ax.legend()
    fig.savefig(path, dpi=100)


def cmd_evaluate(args):
    result = evaluate(args.data, args.model, args.references, args.rule, args.layout, plots=args.plots)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"split: {result['split']}; {result['val_writers']} validation, {result['test_writers']} test writers; "
          f"{result['references']} references, rule: {result['rule']}")
    print(f"EER  skilled forgeries: {_fmt(result['eer_skilled'])}   AUC {_fmt(result['auc_skilled'], False)}")
    print(f"EER  random forgeries:  {_fmt(result['eer_random'])}   AUC {_fmt(result['auc_random'], False)}")
    print(f"at the validation threshold {result['threshold']:.4f}: FRR {_fmt(result['frr'])}, "
          f"FAR skilled {_fmt(result['far_skilled'])}, FAR random {_fmt(result['far_random'])}")
    for p in result.get("plots", []):
        print(f"plot: {p}")
    return 0


# --------------------------------------------------------------------------- enroll / verify

def cmd_enroll(args):
    from apps.signature_verification.loaders import writer_images
    from apps.signature_verification.preprocessing import load_images
    from apps.signature_verification.training import load_model

    model, meta = load_model(args.model)
    threshold = args.threshold if args.threshold is not None else meta.get("threshold")
    if threshold is None:
        raise SystemExit(f"error: {args.model} has no threshold in its metadata; pass --threshold.")
    paths, skipped = writer_images(args.writer_dir)
    images, kept, bad = load_images(paths, tuple(meta["image_size"]))
    _report_skipped(skipped + bad)
    if len(images) == 0:
        raise SystemExit(f"error: no readable signature image in {args.writer_dir}.")
    if len(images) < 2:
        _eprint("warning: a single reference signature; verification works better with 3 to 10.")
    embeddings = model.embed(images, batch_size=64)
    profile = {
        "format": PROFILE_FORMAT,
        "writer": os.path.basename(os.path.normpath(args.writer_dir)),
        "model": os.path.abspath(args.model),
        "model_sha256": _sha256(args.model),
        "image_size": list(meta["image_size"]),
        "rule": meta.get("rule", "mean"),
        "threshold": float(threshold),
        "files": [os.path.basename(paths[i]) for i in kept],
        "references": [[float(v) for v in row] for row in embeddings],
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(profile, f)
    os.replace(tmp, args.out)
    print(f"enrolled writer {profile['writer']!r} with {len(kept)} reference signature(s); "
          f"threshold {threshold:.4f}; profile: {args.out}")
    return 0


def load_profile(path):
    with open(path) as f:
        try:
            profile = json.load(f)
        except json.JSONDecodeError as e:
            raise SystemExit(f"error: {path} is not a profile (invalid JSON: {e}).")
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise SystemExit(f"error: {path} is not a signature profile (written by `enroll`).")
    return profile


def cmd_verify(args):
    from apps.signature_verification import protocol
    from apps.signature_verification.preprocessing import UnreadableImageError, load_image
    from apps.signature_verification.training import load_model

    profile = load_profile(args.profile)
    model_path = args.model or profile["model"]
    if os.path.isfile(model_path) and _sha256(model_path) != profile.get("model_sha256"):
        _eprint(f"warning: {model_path} is not the model the profile was enrolled with; distances may be meaningless.")
    model, _ = load_model(model_path)
    try:
        x = load_image(args.image, tuple(profile["image_size"]))
    except UnreadableImageError as e:
        raise SystemExit(f"error: {e}")
    emb = model.embed(x[None], batch_size=1)
    refs = np.asarray(profile["references"], dtype=np.float64)
    distance = float(protocol.score_matrix(emb, refs, profile.get("rule", "mean"))[0])
    threshold = float(args.threshold if args.threshold is not None else profile["threshold"])
    accepted = distance <= threshold
    if args.json:
        print(json.dumps({"image": args.image, "writer": profile["writer"], "accepted": accepted,
                          "distance": distance, "threshold": threshold}))
    else:
        verdict = "ACCEPT (genuine)" if accepted else "REJECT (forgery)"
        print(f"{verdict}: {args.image} vs writer {profile['writer']!r}: distance {distance:.4f} "
              f"{'<=' if accepted else '>'} threshold {threshold:.4f}")
    return 0


# --------------------------------------------------------------------------- demo

def cmd_demo(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    data = os.path.join(args.data_dir, f"synthetic-w{args.writers}-g{args.genuine}-s{args.seed}")
    marker = os.path.join(data, ".complete")
    t0 = time.perf_counter()
    if not os.path.exists(marker):
        print(f"== generate {args.writers} writers -> {data}", flush=True)
        main(["generate", data, "--writers", str(args.writers), "--genuine", str(args.genuine),
              "--forgeries", str(args.genuine), "--seed", str(args.seed), "--workers", str(args.workers)])
        open(marker, "w").close()
    else:
        print(f"== reuse the generated data in {data}")
    model_path = os.path.join(out, "model.keras")
    print(f"== train -> {model_path}", flush=True)
    main(["train", data, "--out", model_path, "--epochs", str(args.epochs), "--seed", str(args.seed)])
    print("== evaluate on held-out writers", flush=True)
    result = evaluate(data, model_path, plots=out, verbose=False)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"EER skilled {_fmt(result['eer_skilled'])}, random {_fmt(result['eer_random'])}, "
          f"AUC skilled {_fmt(result['auc_skilled'], False)}; at the validation threshold "
          f"{result['threshold']:.4f}: FRR {_fmt(result['frr'])}, FAR skilled {_fmt(result['far_skilled'])}, "
          f"FAR random {_fmt(result['far_random'])} ({result['test_writers']} test writers)")
    # Enrol one test writer and verify a genuine signature and a forgery.
    from apps.signature_verification.loaders import load_dataset
    from apps.signature_verification.training import load_model

    _, meta = load_model(model_path)
    dataset = load_dataset(data)
    writer = meta["split"]["test"][0]
    gen, forg = dataset.genuine(writer), dataset.forged(writer)
    enroll_dir = os.path.join(out, f"enroll_writer_{writer}")
    os.makedirs(enroll_dir, exist_ok=True)
    import shutil

    for s in gen[:5]:
        shutil.copy(s.path, enroll_dir)
    profile = os.path.join(out, f"writer_{writer}.profile.json")
    main(["enroll", enroll_dir, "--model", model_path, "--out", profile])
    for s in (gen[-1], forg[0]):
        main(["verify", s.path, "--profile", profile])
    print(f"== done in {time.perf_counter() - t0:.0f} s; plots and metrics.json in {out}")
    return 0


# --------------------------------------------------------------------------- parser

def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m apps.signature_verification",
        description="Writer-independent offline signature verification with a SigNet-style CNN trained by "
                    "triplet loss (keras_triplet). Backend: KERAS_BACKEND (tensorflow, jax, torch).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write synthetic signatures (genuine + skilled forgeries)",
                       description="Generates seeded synthetic signatures (see apps/signature_verification/synthetic.py).")
    g.add_argument("out", metavar="OUT", help="output folder")
    g.add_argument("--writers", type=int, required=True, help="number of writers")
    g.add_argument("--genuine", type=int, default=12, help="genuine signatures per writer (default 12)")
    g.add_argument("--forgeries", type=int, default=12, help="skilled forgeries per writer (default 12)")
    g.add_argument("--forgers", type=int, default=3, help="forgers per writer (default 3)")
    g.add_argument("--skill", type=float, default=1.0, help="forgers' skill: >1 harder forgeries (default 1)")
    g.add_argument("--layout", choices=("cedar", "generic"), default="cedar", help="file layout (default cedar)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    g.set_defaults(fn=cmd_generate)

    t = sub.add_parser("train", help="train a model writer-independently",
                       description="Splits the writers into train / validation / test (seeded), trains on the "
                                   "training writers, picks the epoch and the threshold on the validation writers, "
                                   "and writes MODEL.keras plus MODEL.json (metadata).")
    t.add_argument("data", metavar="DATA", help="data folder (CEDAR, BHSig260 or generic layout)")
    t.add_argument("--out", required=True, metavar="MODEL.keras")
    t.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--size", type=int, nargs=2, default=(64, 128), metavar=("H", "W"),
                   help="input size after preprocessing (default 64 128)")
    t.add_argument("--classes-per-batch", type=int, default=8, help="P writers per batch (default 8)")
    t.add_argument("--samples-per-class", type=int, default=4,
                   help="K genuine signatures (and K forgeries) per writer in a batch (default 4)")
    t.add_argument("--margin", type=float, default=0.3, help="triplet margin (default 0.3)")
    t.add_argument("--miner", default="semi-hard", choices=("semi-hard", "batch-hard", "batch-all"))
    t.add_argument("--learning-rate", type=float, default=3e-3, help="Adam, cosine decay (default 3e-3)")
    t.add_argument("--embedding-dim", type=int, default=64)
    t.add_argument("--width", type=float, default=0.5, help="network width multiplier (default 0.5)")
    t.add_argument("--val-fraction", type=float, default=0.15, help="validation writers (default 0.15)")
    t.add_argument("--test-fraction", type=float, default=0.25, help="held-out test writers (default 0.25)")
    t.add_argument("--references", type=int, default=5, help="reference signatures per writer (default 5)")
    t.add_argument("--rule", choices=RULES, default=DEFAULT_RULE,
                   help=f"score against the references (default {DEFAULT_RULE}; see protocol.py)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--verbose", type=int, default=1)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="FAR / FRR / EER / AUC on writers not used for training",
                       description="Writer-independent evaluation. On the training data, uses the training run's "
                                   "split (threshold on the validation writers, metrics on the test writers); on "
                                   "other data, all writers are unseen: the threshold is chosen on half of them "
                                   "and the metrics measured on the other half.")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--model", required=True, metavar="MODEL.keras")
    e.add_argument("--references", type=int, default=None, help="references per writer (default: the model's, 5)")
    e.add_argument("--rule", choices=RULES, default=None,
                   help="score against the references (default: the model's; the threshold is re-chosen on the "
                        "validation writers)")
    e.add_argument("--layout", default="auto", choices=("auto", "cedar", "bhsig260", "generic"))
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plots", metavar="DIR", default=None, help="write ROC / DET / histogram PNGs here")
    e.set_defaults(fn=cmd_evaluate)

    n = sub.add_parser("enroll", help="enrol a writer from a folder of genuine signatures",
                       description="Embeds the images in WRITER_DIR (or WRITER_DIR/genuine) and writes a JSON "
                                   "profile (reference embeddings, threshold, model path; no pickle).")
    n.add_argument("writer_dir", metavar="WRITER_DIR")
    n.add_argument("--model", required=True, metavar="MODEL.keras")
    n.add_argument("--out", required=True, metavar="PROFILE")
    n.add_argument("--threshold", type=float, default=None, help="default: the model's validation threshold")
    n.set_defaults(fn=cmd_enroll)

    v = sub.add_parser("verify", help="accept or reject a signature against an enrolled profile")
    v.add_argument("image", metavar="IMAGE")
    v.add_argument("--profile", required=True, metavar="PROFILE")
    v.add_argument("--model", default=None, help="default: the model recorded in the profile")
    v.add_argument("--threshold", type=float, default=None, help="default: the profile's threshold")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_verify)

    d = sub.add_parser("demo", help="generate, train, evaluate on held-out writers, plot (about 25 minutes on one "
                                    "CPU core with the defaults; --writers 160 --epochs 4 for a quick look)")
    d.add_argument("--out", default=DEFAULT_DEMO_OUT, help=f"outputs (default {DEFAULT_DEMO_OUT})")
    d.add_argument("--data-dir", default=DEFAULT_DEMO_DATA, help=f"generated data (default {DEFAULT_DEMO_DATA})")
    d.add_argument("--writers", type=int, default=1600)
    d.add_argument("--genuine", type=int, default=10, help="genuine signatures and forgeries per writer")
    d.add_argument("--epochs", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
