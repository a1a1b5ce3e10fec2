"""Which loss should I use? Every loss of the kit trained under one budget, on held-out classes.

Follows the protocol of Musgrave, Belongie & Lim, "A Metric Learning Reality Check"
(ECCV 2020): the same network, the same budget (steps, batch, optimizer) for every loss;
the one hyper-parameter tuned, the learning rate, is chosen on a *validation split of
the training classes* (never on the test classes); then the chosen rate is trained with
3 seeds and the held-out figures are reported as mean ± standard deviation over the
seeds, with the seconds per training step.

Two tasks, both open-set (the test classes are never seen in training):

* `audio`: the audio app's built-in synthesised sound classes
  (`apps/audio_similarity/synth.py`): training sources minus a few held back for
  validation, the app's held-out sources for the test. The app's CNN embedder
  (`apps/audio_similarity/model.py build_embedder`) over log-mel windows, at a smaller
  size to fit the budget (see `TASKS`). Test figures: MAP@R, Recall@1 and EER over all
  pairs, every test clip querying all the others (`apps/audio_similarity/evaluation.py`).
* `signature`: the signature app's writer-independent protocol
  (`apps/signature_verification/`): generated writers split by `protocol.writer_split`
  into train / validation / test writers; the network learns writer identity from
  the genuine signatures of the training writers only (one class per writer, so every
  loss, the proxy ones included, sees the same labels); test figures: the EER of
  genuine signatures against skilled forgeries, and against random forgeries (other
  writers' genuine ones), with 5 references per writer and the app's `min` rule.

Beside the losses, each table has the non-learned baseline of the app (MFCC mean+std;
HOG) and the untrained network (random initialisation, 3 seeds).

Budget, the same for every loss: `STEPS` steps of P×K batches (`PKSampler`), Adam,
learning rate from `LRS` chosen on validation with seed 0, then seeds 0, 1, 2. The
losses take the arguments of `LOSSES` (pytorch-metric-learning's defaults, a margin of
0.2 for the triplet losses on unit-length embeddings). The data are made once and
cached under `--cache-dir`; every run appends one JSON line to `--results` and a rerun
skips the runs already there, so an interrupted run resumes; `--table` prints the
Markdown tables from whatever is there.

    OMP_NUM_THREADS=1 KERAS_BACKEND=tensorflow python benchmarks/loss_zoo.py   # full run
    ... python benchmarks/loss_zoo.py --reverse   # optional: a second process sharing it
    python benchmarks/loss_zoo.py --table                                     # the tables
    python benchmarks/loss_zoo.py --smoke --results /tmp/zoo                  # seconds
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LRS = (1e-3, 3e-3)
SEEDS = (0, 1, 2)
STEPS = 250
K = 4  # examples per class in a batch; P (classes per batch) in TASKS: B = 64

# Task sizes, chosen so that both tasks × 14 losses × (2 sweep + 2 more seeds) runs fit
# about an hour on one CPU core.
TASKS = {
    "audio": dict(
        sources=24,  # 48 classes: 36 training (8 of them validation), 12 test
        val_sources=4,
        clips_per_class=20,
        n_mels=32,
        hop_ms=20.0,
        frames=48,  # about 1 s windows
        width=8,
        dim=32,
        P=16,
    ),
    "signature": dict(
        writers=100,  # 60 training, 15 validation, 25 test
        genuine=12,
        forgeries=6,
        size=(48, 96),
        width=0.5,
        dim=32,
        P=16,
    ),
}
SMOKE = {
    "audio": dict(TASKS["audio"], sources=12, val_sources=2, clips_per_class=4, width=4, P=4),
    "signature": dict(TASKS["signature"], writers=16, genuine=7, forgeries=2, size=(32, 64), width=0.25, P=4),
}


def make_loss(name, num_classes, dim):
    """The loss called `name` (see `LOSSES`)."""
    from keras_triplet import losses, miners

    return {
        "triplet semi-hard": lambda: losses.TripletLoss(margin=0.2, miner="semi-hard"),
        "triplet batch-hard": lambda: losses.TripletLoss(margin=0.2, miner="batch-hard"),
        "triplet batch-all": lambda: losses.TripletLoss(margin=0.2, miner="batch-all"),
        "contrastive": lambda: losses.ContrastiveLoss(),
        "multi-similarity + miner": lambda: losses.MultiSimilarityLoss(miner=miners.MultiSimilarityMiner()),
        "circle": lambda: losses.CircleLoss(),
        "generalized lifted": lambda: losses.GeneralizedLiftedStructureLoss(),
        "N-pairs": lambda: losses.NPairsLoss(),
        "NT-Xent": lambda: losses.NTXentLoss(),
        "SupCon": lambda: losses.SupConLoss(),
        "proxy-anchor": lambda: losses.ProxyAnchorLoss(num_classes, dim),
        "proxy-NCA": lambda: losses.ProxyNCALoss(num_classes, dim),
        "ArcFace": lambda: losses.ArcFaceLoss(num_classes, dim),
        "CosFace": lambda: losses.CosFaceLoss(num_classes, dim),
    }[name]()


LOSSES = (
    "triplet semi-hard",
    "triplet batch-hard",
    "triplet batch-all",
    "contrastive",
    "multi-similarity + miner",
    "circle",
    "generalized lifted",
    "N-pairs",
    "NT-Xent",
    "SupCon",
    "proxy-anchor",
    "proxy-NCA",
    "ArcFace",
    "CosFace",
)
SMOKE_LOSSES = ("triplet batch-hard", "proxy-anchor")


# ---------------------------------------------------------------------------------- data


def _cached(path, build):
    """The arrays saved at `path` (an `.npz`), built by `build()` and saved the first time."""
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def audio_data(cfg, cache_dir):
    """Log-mel features of the built-in classes, padded to one length: `x [N, T, M]`,
    `length [N]`, `label [N]`, `split [N]` (0 train, 1 validation, 2 test)."""
    from apps.audio_similarity import features as F
    from apps.audio_similarity import synth

    settings = F.FeatureSettings(n_mels=cfg["n_mels"], hop_ms=cfg["hop_ms"])
    key = f"audio_s{cfg['sources']}_c{cfg['clips_per_class']}_{settings.key()}.npz"

    def build():
        classes = synth.class_list(cfg["sources"])
        train_sources = sorted({s for _, s, _, _, held in classes if not held})
        # Validation: whole sources (both sibling classes), drawn with a fixed seed.
        val_sources = set(np.random.default_rng(0).choice(train_sources, cfg["val_sources"], replace=False))
        feats, labels, splits = [], [], []
        for c, s, v, _name, held in classes:
            for i in range(cfg["clips_per_class"]):
                feats.append(F.log_mel(synth.synthesize(s, v, i), settings))
                labels.append(c)
                splits.append(2 if held else 1 if s in val_sources else 0)
        T = max(len(f) for f in feats)
        x = np.zeros((len(feats), T, cfg["n_mels"]), np.float32)
        for i, f in enumerate(feats):
            x[i, : len(f)] = f
        return dict(
            x=x,
            length=np.array([len(f) for f in feats]),
            label=np.array(labels),
            split=np.array(splits),
        )

    return _cached(os.path.join(cache_dir, key), build)


def signature_data(cfg, cache_dir):
    """Preprocessed signatures: `x [N, H, W, 1]`, `writer [N]` (str), `genuine [N]`,
    `split [N]` (0 train, 1 validation, 2 test)."""
    from apps.signature_verification import preprocessing, protocol, synthetic

    h, w = cfg["size"]
    key = f"signature_w{cfg['writers']}_g{cfg['genuine']}_f{cfg['forgeries']}_{h}x{w}.npz"

    def build():
        names = [str(i + 1) for i in range(cfg["writers"])]
        split = protocol.writer_split(names, seed=0)
        which = {n: j for j, part in enumerate(("train", "val", "test")) for n in split[part]}
        xs, writers, genuine, splits = [], [], [], []
        for i, name in enumerate(names):
            # Forgeries only where they are scored: training uses genuine signatures only.
            forgeries = 0 if which[name] == 0 else cfg["forgeries"]
            sigs = synthetic.generate_writer(i, cfg["genuine"], forgeries, seed=0)
            xs.append(preprocessing.preprocess_batch([s.image for s in sigs], size=(h, w)))
            writers += [s.writer for s in sigs]
            genuine += [s.genuine for s in sigs]
            splits += [which[name]] * len(sigs)
        return dict(
            x=np.concatenate(xs), writer=np.array(writers), genuine=np.array(genuine), split=np.array(splits)
        )

    return _cached(os.path.join(cache_dir, key), build)


# ---------------------------------------------------------------------------------- tasks


class AudioTask:
    name = "audio"
    higher_is_better = True  # of the validation figure (MAP@R)
    val_title = "val MAP@R"
    columns = (("map@r", "MAP@R", 1), ("recall@1", "Recall@1", 1), ("eer", "EER", -1))

    def __init__(self, cfg, cache_dir):
        self.cfg = cfg
        d = audio_data(cfg, cache_dir)
        self.feats = [x[:n] for x, n in zip(d["x"], d["length"])]
        self.label, self.split = d["label"], d["split"]
        train = np.flatnonzero(self.split == 0)
        classes = np.unique(self.label[train])
        self.train_index = train
        self.train_label = np.searchsorted(classes, self.label[train])
        self.num_classes = len(classes)
        values = np.concatenate([self.feats[i] for i in train])
        self.mean, self.std = float(values.mean()), float(values.std())

    def build_embedder(self, seed):
        from apps.audio_similarity.model import build_embedder

        c = self.cfg
        return build_embedder(
            frames=c["frames"], n_mels=c["n_mels"], embedding_dim=c["dim"], width=c["width"],
            mean=self.mean, std=self.std, seed=seed,
        )  # fmt: skip

    def batch(self, indices, rng):
        from apps.audio_similarity.features import fit_window

        frames = self.cfg["frames"]
        x = np.stack([fit_window(self.feats[self.train_index[i]], frames, rng=rng) for i in indices])
        return x[..., None]

    def evaluate(self, model, part):
        from apps.audio_similarity.evaluation import score_embeddings
        from apps.audio_similarity.features import embed_clips

        idx = np.flatnonzero(self.split == part)
        emb = embed_clips(model, [self.feats[i] for i in idx], self.cfg["frames"])
        return score_embeddings(emb, self.label[idx], "euclidean")

    def validation_score(self, model):
        return self.evaluate(model, 1)["map@r"]

    def baseline(self):
        from apps.audio_similarity.evaluation import baseline_embeddings, score_embeddings

        idx = np.flatnonzero(self.split == 2)
        emb = baseline_embeddings([self.feats[i] for i in idx])
        return "MFCC mean+std (cosine)", score_embeddings(emb, self.label[idx], "cosine")


class SignatureTask:
    name = "signature"
    higher_is_better = False  # of the validation figure (EER against skilled forgeries)
    val_title = "val EER skilled"
    columns = (("eer_skilled", "EER skilled", -1), ("eer_random", "EER random", -1))

    def __init__(self, cfg, cache_dir):
        self.cfg = cfg
        d = signature_data(cfg, cache_dir)
        self.x, self.writer, self.genuine, self.split = d["x"], d["writer"], d["genuine"], d["split"]
        train = np.flatnonzero((self.split == 0) & self.genuine)
        writers = np.unique(self.writer[train])
        self.train_index = train
        self.train_label = np.searchsorted(writers, self.writer[train])
        self.num_classes = len(writers)

    def build_embedder(self, seed):
        from apps.signature_verification.model import build_embedder

        c = self.cfg
        return build_embedder((*c["size"], 1), embedding_dim=c["dim"], width=c["width"], seed=seed)

    def batch(self, indices, rng):
        return self.x[self.train_index[indices]]

    def _scores(self, emb, idx):
        from apps.signature_verification.evaluation import score_writers

        summary, _ = score_writers(emb, self.writer[idx], self.genuine[idx], references=5, rule="min")
        return {k: summary[k] for k in ("eer_skilled", "eer_random", "auc_skilled")}

    def evaluate(self, model, part):
        idx = np.flatnonzero(self.split == part)
        return self._scores(model.embed(self.x[idx], batch_size=256), idx)

    def validation_score(self, model):
        return self.evaluate(model, 1)["eer_skilled"]

    def baseline(self):
        from apps.signature_verification.evaluation import baseline_embeddings

        idx = np.flatnonzero(self.split == 2)
        return "HOG", self._scores(baseline_embeddings(self.x[idx], "hog"), idx)


# ---------------------------------------------------------------------------------- runs


def train_and_evaluate(task, loss_name, lr, seed, steps, run_eagerly=False):
    """One run: a fresh network trained with `loss_name` for `steps` steps; its validation
    score and test figures (a dict). `loss_name=None`: the untrained network."""
    import keras

    from keras_triplet import TripletModel
    from keras_triplet.data import PKSampler

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = TripletModel(task.build_embedder(seed), normalize=True)
    out = {}
    if loss_name is not None:
        loss = make_loss(loss_name, task.num_classes, task.cfg["dim"])
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, run_eagerly=run_eagerly)
        sampler = PKSampler(task.train_label, classes_per_batch=task.cfg["P"], samples_per_class=K, seed=seed)
        rng = np.random.default_rng(seed)
        losses = []
        t0 = time.perf_counter()
        for step in range(steps):
            if step == 1:
                t1 = time.perf_counter()  # after the first step, which compiles
            i = sampler.batch_indices(step)
            logs = model.train_on_batch(task.batch(i, rng), task.train_label[i], return_dict=True)
            losses.append(float(logs["loss"]))
        t2 = time.perf_counter()
        out.update(
            first_step_s=t1 - t0,
            s_per_step=(t2 - t1) / max(steps - 1, 1),
            final_loss=float(np.mean(losses[-20:])),
            finite=bool(np.all(np.isfinite(losses))),
        )
    embedder = _EagerEmbedder(model) if run_eagerly else model
    out["val"] = float(task.validation_score(embedder))
    out["test"] = {k: float(v) for k, v in task.evaluate(embedder, 2).items()}
    return out


class _EagerEmbedder:
    """`model.embed` without compiling (calls the model eagerly): for `--smoke`, where a
    compiled predict function per fresh network costs more than the few batches it embeds."""

    def __init__(self, model):
        self.model = model

    def embed(self, x, batch_size=256):
        import keras

        parts = [self.model(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        return np.concatenate([keras.ops.convert_to_numpy(p) for p in parts])


def load_results(path):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line cut by a crash: that run is redone
    return rows


def unique(rows):
    """The first row of each run (two processes sharing a run may both finish one)."""
    seen = {}
    for r in rows:
        seen.setdefault(_key(r), r)
    return list(seen.values())


def _key(r):
    return (r["task"], r["loss"], r["lr"], r["seed"])


def run(tasks, losses, lrs, seeds, steps, path, log, run_eagerly=False):
    """Every run not yet in `path`, loss by loss (each loss on every task before the next
    loss, so an interrupted run leaves whole rows): the learning-rate sweep with the first
    seed, then the chosen rate with the other seeds."""
    done = {_key(r): r for r in load_results(path)}

    def append(row):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        done[_key(row)] = row

    def record(task, loss_name, lr, seed):
        key = (task.name, loss_name, lr, seed)
        if key in done:
            return done[key]
        t = time.perf_counter()
        trained = None if loss_name == "untrained" else loss_name
        try:
            res = train_and_evaluate(task, trained, lr, seed, steps, run_eagerly)
        except Exception as e:  # one broken loss must not stop the others; rerun to retry it
            log(f"{task.name:9s} {loss_name:24s} lr {lr:g} seed {seed}: FAILED {type(e).__name__}: {e}")
            return dict(task=task.name, loss=loss_name, lr=lr, seed=seed, val=float("nan"), finite=False)
        row = dict(
            task=task.name, loss=loss_name, lr=lr, seed=seed, steps=steps, batch=task.cfg["P"] * K, **res
        )
        row["run_s"] = time.perf_counter() - t
        append(row)
        test = ", ".join(f"{k} {v:.3f}" for k, v in row["test"].items())
        log(
            f"{task.name:9s} {loss_name:24s} lr {lr:g} seed {seed}: val {row['val']:.3f}; {test} ({row['run_s']:.0f} s)"
        )
        return row

    for task in tasks:
        if (task.name, "baseline", 0.0, 0) not in done:
            name, figures = task.baseline()
            append(dict(task=task.name, loss="baseline", name=name, lr=0.0, seed=0, test=figures))
        for seed in seeds:
            record(task, "untrained", 0.0, seed)
    claims = os.path.join(os.path.dirname(path), "claims")
    for loss_name in losses:
        for task in tasks:
            if not _claim(claims, f"{task.name}-{loss_name}"):
                continue  # another process (`--reverse`) trains this one
            done.update((_key(r), r) for r in load_results(path))
            sweep = [record(task, loss_name, lr, seeds[0]) for lr in lrs]
            best = choose(sweep, task.higher_is_better)
            for seed in seeds[1:]:
                record(task, loss_name, best, seed)
    shutil.rmtree(claims, ignore_errors=True)  # all done or being done: a rerun needs none


def _claim(folder, name):
    """Whether this process may train `name` (a task and loss): true unless a live other
    process claimed it first. Two processes (one with `--reverse`) can so share a run."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name.replace(" ", "_").replace("+", "and"))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            with open(path, encoding="utf-8") as f:
                pid = int(f.read().strip() or 0)
            os.kill(pid, 0)  # raises if no such process
            if pid != os.getpid():
                return False
        except (OSError, ValueError):
            pass  # the claimant is gone: take it over
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def choose(sweep, higher_is_better):
    """The learning rate of the best validation score (a diverged run never wins)."""

    def score(r):
        v = (
            r["val"]
            if r.get("finite", True) and np.isfinite(r["val"])
            else -np.inf
            if higher_is_better
            else np.inf
        )
        return v if higher_is_better else -v

    return max(sweep, key=score)["lr"]


# ---------------------------------------------------------------------------------- table


def tables(rows, lrs=LRS, seeds=SEEDS):
    """Markdown tables (one per task) of the rows found."""
    out = []
    rows = unique(rows)
    for task_cls in (AudioTask, SignatureTask):
        task_rows = [r for r in rows if r["task"] == task_cls.name]
        if not task_rows:
            continue
        cols = task_cls.columns
        head = "| loss | " + " | ".join(f"{title} {'↑' if sign > 0 else '↓'}" for _, title, sign in cols)
        out.append(f"**{task_cls.name}** (held-out classes; mean ± std over the seeds)\n")
        out.append(head + f" | chosen LR | {task_cls.val_title} | s/step | seeds |")
        out.append("|---" * (len(cols) + 5) + "|")

        def line(label, runs, lr="", s_step=""):
            cells = []
            for key, _, _ in cols:
                v = np.array([r["test"][key] for r in runs], float)
                cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
            val = np.mean([r["val"] for r in runs]) if "val" in runs[0] else float("nan")
            val = "" if np.isnan(val) else f"{val:.3f}"
            return f"| {label} | " + " | ".join(cells) + f" | {lr} | {val} | {s_step} | {len(runs)} |"

        for r in task_rows:
            if r["loss"] == "baseline":
                out.append(line(f"*baseline: {r['name']}*", [r]))
        untrained = [r for r in task_rows if r["loss"] == "untrained"]
        if untrained:
            out.append(line("*untrained network*", untrained))
        summary = []
        for name in LOSSES:
            runs = [r for r in task_rows if r["loss"] == name]
            sweep = [r for r in runs if r["seed"] == seeds[0] and r["lr"] in lrs]
            if len(sweep) < len(lrs):
                continue
            best = choose(sweep, task_cls.higher_is_better)
            final = [r for r in runs if r["lr"] == best and r["seed"] in seeds]
            s_step = np.median([r["s_per_step"] for r in runs])
            out.append(line(name, final, f"{best:g}", f"{s_step:.3f}"))
            summary.append((name, np.array([r["test"][cols[0][0]] for r in final])))
        out.append("")
        if len(summary) > 1:
            means = np.array([v.mean() for _, v in summary])
            stds = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for _, v in summary])
            sign = cols[0][2]
            order = np.argsort(-sign * means)
            out.append(
                f"{cols[0][1]}: best {summary[order[0]][0]} {means[order[0]]:.3f}, worst "
                f"{summary[order[-1]][0]} {means[order[-1]]:.3f}; range of the means "
                f"{np.ptp(means):.3f} against a median seed std of {np.median(stds):.3f}.\n"
            )
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["audio", "signature"], choices=list(TASKS))
    p.add_argument("--losses", nargs="+", default=None, help="a subset of LOSSES (default: all)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results", "loss_zoo"))
    p.add_argument("--cache-dir", default=os.path.join(ROOT, ".cache", "loss_zoo"))
    p.add_argument("--smoke", action="store_true", help="2 losses, a few steps, tiny data (seconds)")
    p.add_argument("--reverse", action="store_true", help="the losses in reverse order (a second process)")
    p.add_argument("--table", action="store_true", help="only print the tables of the results found")
    args = p.parse_args(argv)

    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "runs.jsonl")
    if not args.table:
        import keras

        cfgs = SMOKE if args.smoke else TASKS
        losses = args.losses or (SMOKE_LOSSES if args.smoke else LOSSES)
        losses = losses[::-1] if args.reverse else losses
        steps = args.steps or (3 if args.smoke else STEPS)
        seeds = SEEDS[:1] if args.smoke else SEEDS
        lrs = LRS[:1] if args.smoke else LRS
        print(
            f"backend {keras.backend.backend()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
            f"{steps} steps of B = {TASKS['audio']['P']}×{K}, Adam, LR in {LRS}, seeds {seeds}",
            flush=True,
        )
        tasks = []
        for name in args.tasks:
            t = time.perf_counter()
            tasks.append((AudioTask if name == "audio" else SignatureTask)(cfgs[name], args.cache_dir))
            print(
                f"{name}: data ready in {time.perf_counter() - t:.0f} s, {tasks[-1].num_classes} training classes",
                flush=True,
            )
        # Smoke: eager steps, as compiling would take longer than the few steps it runs.
        run(tasks, losses, lrs, seeds, steps, path, lambda s: print(s, flush=True), run_eagerly=args.smoke)
    print(tables(load_results(path), lrs=LRS[:1] if args.smoke else LRS))


if __name__ == "__main__":
    main()
