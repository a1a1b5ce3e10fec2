"""The sub-commands: generate, train, calibrate, evaluate, enroll, verify and demo, one function each.

Each takes the `argparse.Namespace` of `__main__.py` and returns an exit status.
Results go to stdout; warnings and skipped files to stderr. `__main__` imports this
module only after `--backend` has set `KERAS_BACKEND`.
"""

import json
import os
import shutil
import time

import numpy as np

from apps._common import SkipReport, fail, log, read_side_file, sha256, side_path, write_json
from apps.signature_verification import enrollment, protocol
from apps.signature_verification.cohort import cohort_path, fit_calibration, load_calibration
from apps.signature_verification.evaluation import FEW_WRITERS, load_split_images, percent
from apps.signature_verification.features import HOG_SETTINGS, hog_size
from apps.signature_verification.loaders import load_dataset
from apps.signature_verification.model import FusedModel
from apps.signature_verification.preprocessing import DEFAULT_SIZE
from apps.signature_verification.training import (
    DEFAULT_EMBEDDING_DIM,
    DEFAULT_NETWORK,
    DEFAULT_WIDTH,
    FINE_TUNE_LEARNING_RATE,
    HOG_DROPOUT,
    HOG_EPOCHS,
    HOG_HIDDEN,
    HOG_LEARNING_RATE,
    HOG_MARGIN,
    SCRATCH_LEARNING_RATE,
    SHIPPED_HOG_MODEL,
    SHIPPED_MODEL,
    check_inputs,
    fuse_entry,
    fuse_partner_path,
    load_model,
    load_partner,
    partner_of,
    save_model,
    train_model,
)


def generate(args):
    """Writes seeded synthetic signatures (genuine and skilled forgeries) to OUT."""
    from apps.signature_verification.synthetic import generate_dataset

    t = time.perf_counter()
    n = generate_dataset(
        args.out,
        args.writers,
        args.genuine,
        args.forgeries,
        seed=args.seed,
        layout=args.layout,
        forgers_per_writer=args.forgers,
        forgery_skill=args.skill,
        workers=args.workers,
        generator=args.generator,
    )
    print(
        f"wrote {n} images of {args.writers} writers ({args.layout} layout, {args.generator} generator) to {args.out} "
        f"in {time.perf_counter() - t:.1f} s"
    )
    return 0


def _network(args):
    """The network `train` builds when it starts from scratch: `--network`, else the
    SigNet CNN when an option of the CNN (`--width`, `--embedding-dim`) is given, else
    the default, the learned HOG metric."""
    cnn = [
        f"--{name.replace('_', '-')}"
        for name in ("width", "embedding_dim")
        if getattr(args, name) is not None
    ]
    if args.network == "hog" and cnn:
        fail(
            f"{' and '.join(cnn)} set the SigNet CNN; --network hog takes --hidden (or leave --network out)."
        )
    return args.network or ("signet" if cnn else DEFAULT_NETWORK)


def _shown(path):
    """`path` relative to the working directory when it is below it, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _initial_model(args, num_writers):
    """`(model or None, its metadata, the path, the network)` that `train` starts from
    (see `--init` and `--network`)."""
    from apps.signature_verification.__main__ import SMALL_DATA_WRITERS

    choice = args.init
    network = _network(args) if choice in ("auto", "none") else None
    if choice == "auto" and network == "hog":
        # Like the CNN's options, --hidden or another --size under `auto` mean a new network.
        new_network = ["--hidden"] if args.hidden is not None else []
        if args.size is not None and list(args.size) != read_side_file(SHIPPED_HOG_MODEL).get("image_size"):
            new_network.append("--size")
        if num_writers < SMALL_DATA_WRITERS and not new_network:
            print(
                f"init: {num_writers} writers (fewer than {SMALL_DATA_WRITERS}): fine-tuning the shipped "
                f"HOG metric {_shown(SHIPPED_HOG_MODEL)} (--init none starts from HOG itself)"
            )
            choice = SHIPPED_HOG_MODEL
        else:
            reason = (
                f"{num_writers} writers (at least {SMALL_DATA_WRITERS})"
                if num_writers >= SMALL_DATA_WRITERS
                else f"{' and '.join(new_network)} given"
            )
            print(
                f"init: {reason}: a new learned HOG metric (it starts as the HOG descriptor and learns "
                "a correction; --network signet trains the CNN)"
            )
            return None, {}, None, network
    if choice == "auto":
        network_options = [
            f"--{name.replace('_', '-')}"
            for name in ("width", "embedding_dim")
            if getattr(args, name) is not None
        ]
        shipped_size = read_side_file(SHIPPED_MODEL).get("image_size")
        if args.size is not None and list(args.size) != shipped_size:
            network_options.append("--size")
        if network_options:
            print(f"init: {' and '.join(network_options)} given: training a new network from scratch")
            return None, {}, None, "signet"
        if num_writers < SMALL_DATA_WRITERS:
            choice = SHIPPED_MODEL
            print(
                f"init: {num_writers} writers (fewer than {SMALL_DATA_WRITERS}): fine-tuning the shipped "
                f"model {_shown(SHIPPED_MODEL)} (--init none trains from scratch)"
            )
        else:
            print(
                f"init: {num_writers} writers (at least {SMALL_DATA_WRITERS}): training from scratch "
                "(--init MODEL fine-tunes MODEL)"
            )
            return None, {}, None, "signet"
    elif choice.lower() == "none":
        print(
            "init: training from scratch (--init none)"
            + (": a new learned HOG metric (it starts as HOG itself)" if network == "hog" else "")
        )
        return None, {}, None, network
    elif choice == args.init:  # --init MODEL (under `auto`, a line above named the shipped one)
        print(f"init: fine-tuning {choice}")
    for name in ("width", "embedding_dim", "hidden"):
        if getattr(args, name) is not None:
            fail(
                f"--{name.replace('_', '-')} sets the network trained from scratch; fine-tuning keeps "
                f"{choice}'s network (add --init none to train a new one)."
            )
    try:
        model, meta = load_model(choice, fused=False)  # the network alone: its partner is not trained
    except FileNotFoundError as e:
        fail(str(e))
    network = "hog" if meta.get("features") == "hog" else "signet"
    if args.network is not None and args.network != network:
        fail(
            f"--network {args.network}: {choice} is a {network} model (leave --network out to fine-tune it)."
        )
    return model, meta, choice, network


def train(args):
    """Trains on the training writers of DATA (from scratch or fine-tuning `--init`);
    MODEL.keras + MODEL.keras.json."""
    dataset = load_dataset(args.data, args.layout)
    print(dataset.summary())
    SkipReport(dataset.skipped).print()
    split = protocol.writer_split(dataset.writers, args.val_fraction, args.test_fraction, seed=args.seed)
    print(
        f"writers: {len(split['train'])} train, {len(split['val'])} validation, "
        f"{len(split['test'])} test (held out, not loaded)"
    )
    init, init_meta, init_path, network = _initial_model(args, len(dataset.writers))
    hog = network == "hog"
    margin = args.margin if args.margin is not None else (HOG_MARGIN if hog else 0.3)
    epochs = args.epochs if args.epochs is not None else (HOG_EPOCHS if hog else 8)
    hidden = args.hidden or HOG_HIDDEN
    if hog and init is not None:  # the model's own (`--hidden` is refused with --init MODEL)
        hidden = init_meta.get("settings", {}).get("hidden", hidden)
    if init is None:
        size = tuple(args.size or DEFAULT_SIZE)
        learning_rate = args.learning_rate or (HOG_LEARNING_RATE if hog else SCRATCH_LEARNING_RATE)
        embedding_dim = args.embedding_dim or DEFAULT_EMBEDDING_DIM
        width = args.width or DEFAULT_WIDTH
    else:
        size = tuple(init_meta["image_size"])
        if args.size is not None and tuple(args.size) != size:
            fail(
                f"--size {args.size[0]} {args.size[1]}: {init_path} takes {size[0]}x{size[1]} images "
                "(leave --size out, or add --init none to train a new network)."
            )
        learning_rate = args.learning_rate or (HOG_LEARNING_RATE if hog else FINE_TUNE_LEARNING_RATE)
        embedding_dim = int(init.embedder.output_shape[-1])
        width = init_meta.get("settings", {}).get("width")
    t = time.perf_counter()
    x, w, g = load_split_images(dataset, split["train"], size)
    vx, vw, vg = load_split_images(dataset, split["val"], size) if split["val"] else (None, None, None)
    print(
        f"preprocessed {len(x) + (len(vx) if vx is not None else 0)} images in {time.perf_counter() - t:.1f} s"
    )
    if len(set(w.tolist())) < 2:
        fail("training needs at least 2 training writers with readable images.")
    model, info = train_model(
        x,
        w,
        g,
        vx,
        vw,
        vg,
        epochs=epochs,
        classes_per_batch=args.classes_per_batch,
        samples_per_class=args.samples_per_class,
        margin=margin,
        miner=args.miner,
        learning_rate=learning_rate,
        embedding_dim=embedding_dim,
        width=width,
        references=args.references,
        rule=args.rule,
        seed=args.seed,
        verbose=args.verbose,
        init=init,
        network=network,
        hidden=hidden,
        dropout=HOG_DROPOUT,
    )
    threshold = info.get("threshold")
    if threshold is None:
        # No validation writers: fall back to the training writers (optimistic) and say so.
        scores = protocol.verification_scores(model.embed(x), w, g, args.references, args.rule, args.seed)
        threshold = protocol.choose_threshold(scores)
        log("warning: no validation writers; the threshold was chosen on the training writers.")
    rule, calibration, fuse = args.rule, None, None
    if init_path is not None and vx is not None and not getattr(args, "rule_given", True):
        model, info, calibration, fuse, kept_threshold = _keep_calibration(
            model, info, init_path, init_meta, args.out, (vx, vw, vg), args.references, args.seed, args.rule
        )
        if calibration is not None:
            rule, threshold = "calibrated", kept_threshold
    save_model(
        model,
        args.out,
        {
            "image_size": list(size),
            "references": args.references,
            "rule": rule,
            "threshold": threshold,
            "threshold_source": "validation writers, EER of genuine vs skilled forgeries"
            if info.get("threshold") is not None
            else "training writers",
            "split": split,
            "seed": args.seed,
            "data_fingerprint": dataset.fingerprint(),
            "data_root": os.path.abspath(args.data),
            "layout": dataset.layout,
            "training": {k: v for k, v in info.items() if k not in ("history", "val", "threshold")},
            "init": None
            if init_path is None
            else {"model": os.path.abspath(init_path), "sha256": sha256(init_path)},
            "network": network,
            **({"features": "hog", "hog": HOG_SETTINGS} if hog else {}),
            "settings": {
                **{k: getattr(args, k) for k in ("classes_per_batch", "samples_per_class", "miner")},
                "epochs": epochs,
                "margin": margin,
                "learning_rate": learning_rate,
                **(
                    {"hidden": hidden, "dropout": HOG_DROPOUT, "embedding_dim": hog_size(size)}
                    if hog
                    else {"embedding_dim": embedding_dim, "width": width}
                ),
            },
            "validation": info.get("val"),
            "check_embeddings": model.embed(check_inputs(size)).round(6).tolist(),
            **(
                {"calibration": {**init_meta.get("calibration", {}), "from": init_path}}
                if rule == "calibrated"
                else {}
            ),
            **({"fuse": fuse} if fuse is not None else {}),
        },
    )
    if rule != "calibrated" and os.path.exists(cohort_path(args.out)):
        os.remove(cohort_path(args.out))  # an earlier model's cohort: not this model's embeddings
    if rule == "calibrated":
        calibration.save(cohort_path(args.out))
        print(
            f"rule calibrated: {init_path}'s cohort calibration kept ({cohort_path(args.out)}"
            + (f", fused with {_shown(fuse_partner_path(args.out, {'fuse': fuse}))}" if fuse else "")
            + f"), threshold {threshold:.4f} on the validation writers"
        )
    print(
        ("fine-tuned" if init is not None else "trained")
        + f" {info['epochs']} epochs on {info['backend']}: {info['seconds_per_epoch']} s/epoch "
        f"(first epoch {info['seconds_first_epoch']} s), {info['train_seconds']} s in all"
        + (f"; best epoch {info['best_epoch']}" if "best_epoch" in info else "")
        + (
            " (the model as it was: no epoch did better on the validation writers)"
            if info.get("best_epoch") == 0
            else ""
        )
    )
    if info.get("val"):
        v = info["val"]
        print(
            f"validation writers: EER skilled {percent(v['eer_skilled'])}, random {percent(v['eer_random'])}; "
            f"threshold {threshold:.4f}"
        )
    print(f"saved {args.out} (+ {os.path.basename(args.out)}.json)")
    return 0


def _keep_calibration(model, info, init_path, init_meta, out, val, references, seed, rule):
    """`(model, info, calibration, fuse, threshold)` of `train --init MODEL` when MODEL is
    calibrated (its cohort file, and its partner when fused, `"fuse"`), else
    `(model, info, None, None, None)`.

    The calibration holds only for MODEL's own network. When training gave MODEL back
    unchanged (best epoch 0) it is kept, the threshold chosen again on the validation
    writers. When training changed the network, the changed network (rule `min`, the
    cohort would be the old network's embeddings) competes with MODEL as it was, with its
    calibration, on the validation writers (skilled EER, then random): a fine-tuned metric
    that does not beat the calibrated (or fused) one gives MODEL back."""
    calibration = load_calibration(init_path)
    if calibration is None:
        return model, info, None, None, None
    vx, vw, vg = val
    original = model
    if info.get("best_epoch") != 0:
        original, _ = load_model(init_path, fused=False)
    fuse, scored = None, original
    if init_meta.get("fuse"):
        partner_path = fuse_partner_path(init_path, init_meta)
        scored = FusedModel(
            [original, load_partner(partner_path, init_path, init_meta)], init_meta["fuse"]["parts"]
        )
        fuse = fuse_entry(out, partner_path, init_meta["fuse"]["parts"])
    scores = protocol.verification_scores(
        scored.embed(vx), vw, vg, references, "calibrated", seed, calibration
    )
    threshold = protocol.choose_threshold(scores)
    if info.get("best_epoch") != 0:
        mine = protocol.summarize(scores, threshold)
        theirs = info.get("val") or {}
        ours_key = (mine["eer_skilled"] or 0.0, mine["eer_random"] or 0.0)
        theirs_key = (theirs.get("eer_skilled") or 0.0, theirs.get("eer_random") or 0.0)
        print(
            f"validation writers: {init_path} as it was, rule calibrated"
            + (" (fused)" if fuse else "")
            + f": EER skilled {percent(ours_key[0])}, random {percent(ours_key[1])}; fine-tuned, rule "
            f"{rule}: {percent(theirs_key[0])}, {percent(theirs_key[1])}"
        )
        if not ours_key <= theirs_key:
            return model, info, None, None, None
        print(f"kept {init_path} as it was (its calibration does better on the validation writers)")
        info = {**info, "best_epoch": 0, "val": mine, "fine_tuned_val": theirs}
    return original, info, calibration, fuse, threshold


def _calibration(model_path, meta):
    """The cohort calibration of `model_path` when `meta` (the model's side file or a
    profile) asks for the `"calibrated"` rule, else None; a one-line error when missing."""
    if meta.get("rule") != "calibrated":
        return None
    try:
        calibration = load_calibration(model_path)
    except ValueError as e:
        fail(str(e))
    if calibration is None:
        fail(
            f"rule 'calibrated' needs {cohort_path(model_path)} (written by `calibrate DATA --model "
            f"{model_path}`), which is missing."
        )
    return calibration


def calibrate(args):
    """Fits the `"calibrated"` rule (cohort score normalisation, `cohort.py`) of MODEL on
    the writers of DATA (with their forgeries); writes MODEL.keras.cohort.npz and makes
    `"calibrated"` the model's rule, with a threshold chosen on the same writers. With a
    partner (`--fuse PARTNER`, or the one MODEL's side file names) one calibration of both
    models' embeddings, and the side file's `"fuse"` names the partner."""
    # The models whose embeddings the calibration scores: MODEL, and its partner when fused
    # (`--fuse PARTNER`, else the one MODEL's side file names, unless `--fuse none`).
    model, meta = load_model(args.model, fused=args.fuse is None)
    models = model.models if isinstance(model, FusedModel) else [model]
    if args.fuse not in (None, "none"):
        models = [model, load_partner(args.fuse, args.model, meta)]
    dataset = load_dataset(args.data, args.layout)
    print(dataset.summary())
    SkipReport(dataset.skipped).print()
    writers = dataset.writers
    if args.writers is not None and args.writers < len(writers):
        writers = protocol.writer_split(writers, 0.0, args.writers / len(writers), seed=args.seed)["test"]
    references = args.references or meta.get("references", 5)
    t = time.perf_counter()
    x, w, g = load_split_images(dataset, writers, tuple(meta["image_size"]))
    parts = [np.asarray(m.embed(x, batch_size=128), np.float32) for m in models]
    embeddings, widths, fuse = parts[0], None, None
    if len(parts) > 1:
        embeddings, widths = np.concatenate(parts, axis=1), [p.shape[1] for p in parts]
        fuse = fuse_entry(args.model, args.fuse or fuse_partner_path(args.model, meta), widths)
    print(f"embedded {len(x)} images of {len(writers)} writers in {time.perf_counter() - t:.1f} s")
    try:
        calibration = fit_calibration(
            embeddings,
            w,
            g,
            references,
            args.cohort_writers,
            args.seed,
            parts=widths,
            regularization=args.regularization,
            guard=getattr(args, "guard", True),
        )
    except ValueError as e:
        fail(str(e))
    # The threshold on the writers the regression was fitted on, the cohort left out.
    fitted = ~np.isin(np.asarray(w).astype(str), calibration.cohort_writers)
    scores = protocol.verification_scores(
        embeddings[fitted], w[fitted], g[fitted], references, "calibrated", args.seed, calibration
    )
    threshold = protocol.choose_threshold(scores)
    summary = protocol.summarize(scores, threshold)
    calibration.save(cohort_path(args.model))
    before = {k: meta.get(k) for k in ("rule", "threshold", "threshold_source")}
    meta.update(
        {
            "rule": "calibrated",
            "threshold": threshold,
            "threshold_source": "calibration writers (the cohort left out), EER of genuine vs skilled forgeries",
            "calibration": {
                "data": os.fspath(args.data),
                "data_fingerprint": dataset.fingerprint(),
                "writers": len(writers),
                "cohort_writers": args.cohort_writers,
                "references": references,
                "seed": args.seed,
                "file": os.path.basename(cohort_path(args.model)),
                "eer_skilled": summary["eer_skilled"],
                "eer_random": summary["eer_random"],
                "regularization": args.regularization,
                "guard": calibration.guard is not None,
                "before": before,
            },
        }
    )
    meta.pop("fuse", None)
    if fuse is not None:
        meta["fuse"] = fuse
    write_json(side_path(args.model), meta, indent=1)
    print(
        f"calibrated {args.model}"
        + (f" fused with {_shown(fuse_partner_path(args.model, meta))}" if fuse else "")
        + (" (guarded by the model's own score)" if calibration.guard is not None else "")
        + f" on {len(writers)} writers ({args.cohort_writers} in the cohort): "
        f"EER skilled {percent(summary['eer_skilled'])}, random {percent(summary['eer_random'])} on the "
        f"others; rule calibrated, threshold {threshold:.4f}; cohort: {cohort_path(args.model)} "
        f"({time.perf_counter() - t:.0f} s)"
    )
    return 0


def evaluate(args):
    """FAR / FRR / EER / AUC of MODEL on writers of DATA it was not trained on."""
    from apps.signature_verification.evaluation import evaluate as run

    if args.model is None and args.baseline is None:
        fail("evaluate needs --model MODEL.keras (or --baseline pixels|hog).")
    try:
        result = run(
            args.data,
            args.model,
            args.references,
            args.rule,
            args.layout,
            plots=args.plots,
            baseline=args.baseline,
        )
    except ValueError as e:  # e.g. rule calibrated for a model without a cohort
        fail(str(e))
    if result["test_writers"] < FEW_WRITERS:
        log(
            f"warning: only {result['test_writers']} test writers: the rates below are rough (see the 95% "
            f"intervals of the EERs, a bootstrap over writers); evaluate on {FEW_WRITERS} or more writers "
            "to compare models."
        )
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(
        (f"baseline: {args.baseline} (no learning); " if args.baseline else "")
        + f"split: {result['split']}; {result['val_writers']} validation, {result['test_writers']} test writers; "
        f"{result['references']} references, rule: {result['rule']}"
    )
    for kind, pad in (("skilled", ""), ("random", " ")):
        print(
            f"EER  {kind} forgeries: {pad}{percent(result[f'eer_{kind}'])}{_interval(result, kind)}   "
            f"AUC {percent(result[f'auc_{kind}'], False)}"
        )
    print(
        f"at the validation threshold {result['threshold']:.4f}: FRR {percent(result['frr'])}, "
        f"FAR skilled {percent(result['far_skilled'])}, FAR random {percent(result['far_random'])}"
    )
    for kind in ("skilled", "random"):
        w = result[f"per_writer_eer_{kind}"]
        if w["num_writers"]:
            print(
                f"per-writer EER {kind + ':':8} mean {percent(w['mean'])}, median {percent(w['median'])}, "
                f"worst {percent(w['worst'])} ({w['num_writers']} writers)"
            )
    if "sweep" in result:
        print(
            "references | writers | EER skilled | EER random | per-writer EER skilled: mean / median / worst"
        )
        for r in result["sweep"]:
            w = r["per_writer_eer_skilled"]
            print(
                f"{r['references']:>10} | {r['test_writers']:>7} | {percent(r['eer_skilled']):>11} | "
                f"{percent(r['eer_random']):>10} | {percent(w['mean'])} / {percent(w['median'])} / "
                f"{percent(w['worst'])}"
            )
    for p in result.get("plots", []):
        print(f"plot: {p}")
    return 0


def _interval(result, kind):
    """` (95% CI a–b%)` of the EER of `kind` forgeries, or nothing."""
    ci = result.get(f"eer_{kind}_ci95")
    return f" (95% CI {100 * ci[0]:.2f}–{100 * ci[1]:.2f}%)" if ci else ""


def enroll(args):
    """Writes the profile of the writer whose genuine signatures are in WRITER_DIR (or of
    `--writer` in the data folder WRITER_DIR, in any layout)."""
    from apps.signature_verification.loaders import dataset_writer_images, writer_images
    from apps.signature_verification.preprocessing import load_images

    model, meta = load_model(args.model)
    threshold = args.threshold if args.threshold is not None else meta.get("threshold")
    if threshold is None:
        fail(f"{args.model} has no threshold in its metadata; pass --threshold.")
    _calibration(args.model, meta)
    try:
        if args.writer is None:
            paths, skipped = writer_images(args.writer_dir)
        else:
            paths, skipped = dataset_writer_images(args.writer_dir, args.writer, args.layout)
    except ValueError as e:
        fail(str(e))
    if args.references is not None:
        paths = paths[: args.references]
    images, kept, bad = load_images(paths, tuple(meta["image_size"]))
    SkipReport(skipped + bad).print()
    if len(images) == 0:
        fail(f"no readable signature image in {args.writer_dir}.")
    if len(images) < 2:
        log("warning: a single reference signature; verification works better with 3 to 10.")
    profile = enrollment.make_profile(
        writer=args.writer or os.path.basename(os.path.normpath(args.writer_dir)),
        model_path=args.model,
        hashes=enrollment.model_hashes(args.model, partner_of(args.model, meta)),
        image_size=meta["image_size"],
        rule=meta.get("rule", "mean"),
        threshold=threshold,
        files=[os.path.basename(paths[i]) for i in kept],
        embeddings=model.embed(images, batch_size=64),
    )
    enrollment.save_profile(profile, args.out)
    print(
        f"enrolled writer {profile['writer']!r} with {len(kept)} reference signature(s); "
        f"threshold {threshold:.4f}; profile: {args.out}"
    )
    return 0


def verify(args):
    """Accepts or rejects IMAGE as a genuine signature of the profile's writer."""
    from apps.signature_verification.preprocessing import UnreadableImageError, load_image

    profile = enrollment.load_profile(args.profile)
    model_path = args.model or profile["model"]
    model, meta = load_model(model_path)
    partner_path = partner_of(model_path, meta)
    changed = enrollment.changed_model(profile, enrollment.model_hashes(model_path, partner_path))
    if changed:
        shown = (
            model_path if changed == "model" else f"{partner_path} (the partner {model_path} is fused with)"
        )
        log(f"warning: {shown} is not the model the profile was enrolled with; distances may be meaningless.")
    calibration = _calibration(model_path, profile)
    try:
        x = load_image(args.image, tuple(profile["image_size"]))
    except UnreadableImageError as e:
        fail(str(e))
    try:
        accepted, distance, threshold = enrollment.verify(
            model.embed(x[None], batch_size=1)[0], profile, args.threshold, calibration
        )
    except ValueError as e:  # e.g. a fused profile scored with one model's cohort
        fail(str(e))
    if args.json:
        print(
            json.dumps(
                {
                    "image": args.image,
                    "writer": profile["writer"],
                    "accepted": accepted,
                    "distance": distance,
                    "threshold": threshold,
                }
            )
        )
    else:
        verdict = "ACCEPT (genuine)" if accepted else "REJECT (forgery)"
        print(
            f"{verdict}: {args.image} vs writer {profile['writer']!r}: distance {distance:.4f} "
            f"{'<=' if accepted else '>'} threshold {threshold:.4f}"
        )
    return 0


def demo(args):
    """generate (once) -> train -> evaluate on held-out writers -> enrol and verify."""
    from apps.signature_verification.__main__ import main
    from apps.signature_verification.evaluation import evaluate as run

    out = args.out
    os.makedirs(out, exist_ok=True)
    data = os.path.join(args.data_dir, f"synthetic-w{args.writers}-g{args.genuine}-s{args.seed}")
    marker = os.path.join(data, ".complete")
    t0 = time.perf_counter()
    if not os.path.exists(marker):
        print(f"== generate {args.writers} writers -> {data}", flush=True)
        main(
            [
                "generate",
                data,
                "--writers",
                str(args.writers),
                "--genuine",
                str(args.genuine),
                "--forgeries",
                str(args.genuine),
                "--seed",
                str(args.seed),
                "--workers",
                str(args.workers),
            ]
        )
        open(marker, "w").close()
    else:
        print(f"== reuse the generated data in {data}")
    model_path = os.path.join(out, "model.keras")
    print(f"== train -> {model_path}", flush=True)
    # The SigNet CNN, as the shipped model was trained (`train`'s default is the HOG metric).
    main(
        ["train", data, "--out", model_path, "--network", "signet"]
        + ["--epochs", str(args.epochs), "--seed", str(args.seed)]
    )
    print("== evaluate on held-out writers", flush=True)
    result = run(data, model_path, plots=out, verbose=False)
    write_json(os.path.join(out, "metrics.json"), result, indent=1)
    print(
        f"EER skilled {percent(result['eer_skilled'])}, random {percent(result['eer_random'])}, "
        f"AUC skilled {percent(result['auc_skilled'], False)}; at the validation threshold "
        f"{result['threshold']:.4f}: FRR {percent(result['frr'])}, FAR skilled {percent(result['far_skilled'])}, "
        f"FAR random {percent(result['far_random'])} ({result['test_writers']} test writers)"
    )
    # Enrol one test writer and verify a genuine signature and a forgery.
    _, meta = load_model(model_path)
    dataset = load_dataset(data)
    writer = meta["split"]["test"][0]
    gen, forg = dataset.genuine(writer), dataset.forged(writer)
    enroll_dir = os.path.join(out, f"enroll_writer_{writer}")
    os.makedirs(enroll_dir, exist_ok=True)
    for s in gen[:5]:
        shutil.copy(s.path, enroll_dir)
    profile = os.path.join(out, f"writer_{writer}.profile.json")
    main(["enroll", enroll_dir, "--model", model_path, "--out", profile])
    for s in (gen[-1], forg[0]):
        main(["verify", s.path, "--profile", profile])
    print(f"== done in {time.perf_counter() - t0:.0f} s; plots and metrics.json in {out}")
    return 0
