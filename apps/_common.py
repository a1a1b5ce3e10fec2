"""What every app needs and none should write twice: messages, the one-line error exit,
the backend switch, atomic file writes, model side files and skipped-file reports.

Standard library and NumPy only: the command lines import this before Keras, so that
`--backend` can still choose the backend and `--help` stays fast.

Example:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "out", "result.json")
>>> write_json(path, {"recall@1": np.float32(0.5)})
>>> read_json(path)
{'recall@1': 0.5}
>>> side_path("runs/model.keras")
'runs/model.keras.json'
"""

import contextlib
import csv
import hashlib
import json
import os
import shutil
import sys

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
SIDE_SUFFIX = ".json"  # MODEL.keras -> MODEL.keras.json: what the model file cannot hold


def log(*parts):
    """Progress and information: to stderr, so stdout holds only results."""
    print(*parts, file=sys.stderr, flush=True)


class CommandError(SystemExit):
    """The end of a command that cannot go on: exit status 2 (argparse's, for usage
    errors), the one-line message already on stderr. `str()` is that line."""

    def __init__(self, line):
        super().__init__(2)
        self.line = line

    def __str__(self):
        return self.line


def fail(message):
    """Ends the command with one line `error: message` on stderr (exit status 2): what is
    wrong and how to fix it, never a traceback."""
    line = "error: " + " ".join(str(message).split())
    print(line, file=sys.stderr, flush=True)
    raise CommandError(line)


def require_folder(path, what="data folder", hint=""):
    """`fail`s unless `path` is an existing folder; commands call it before importing
    Keras, so that a typo costs no backend start-up."""
    if not os.path.isdir(path):
        problem = "is a file, not a folder" if os.path.isfile(path) else "does not exist"
        fail(f"{what} {path!r} {problem}.{' ' + hint if hint else ''}")


def require_file(path, what="file", hint=""):
    """`fail`s unless `path` is an existing file (see `require_folder`)."""
    if not os.path.isfile(path):
        problem = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        fail(f"{what} {path!r} {problem}.{' ' + hint if hint else ''}")


def quiet_tensorflow(verbose=False, preload=None):
    """Keeps TensorFlow's C++ logging off stderr unless `verbose`: its start-up banners
    (oneDNN, CPU features) and graph warnings (the harmless "Type inference failed" of a
    conditional's gradient in the training step). Runs after `select_backend`, before
    Keras is imported; a `TF_CPP_MIN_LOG_LEVEL` the user set wins.

    `TF_CPP_MIN_LOG_LEVEL=2` hides TensorFlow's own warnings, but the banners are written
    while TensorFlow is imported, before that setting is read: so TensorFlow is imported
    here, with file descriptor 2 pointing at /dev/null, when it will be used (`preload`:
    True, False, or None for "when the Keras backend is TensorFlow")."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if preload is None:
        preload = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    if preload and "tensorflow" not in sys.modules:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is not None:
            with _stderr_to_devnull():
                import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_to_devnull():
    """Points file descriptor 2 (C++ code writes there directly) at /dev/null."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_keras_model(path, hint=""):
    """`keras.saving.load_model(path, compile=False)` with one-line errors: a missing
    file, or a file that is not a readable `.keras` archive (Keras would report a corrupt
    file as "File not found")."""
    import zipfile

    import keras

    require_file(path, "model file", hint)
    if not zipfile.is_zipfile(path):
        fail(
            f"model file {path!r} is corrupt or truncated: a .keras file is a zip archive "
            "and this one is not; save or copy it again."
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # whatever Keras raises on a damaged archive: one line, no traceback
        fail(
            f"model file {path!r} could not be loaded; it is corrupt or not a model of this app ({_short(e)})."
        )


def _short(error, limit=160):
    """`Type: message` of `error` on one line, at most `limit` characters."""
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------------------- backend


def add_backend_argument(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND, else Keras' default)",
    )


def select_backend(name):
    """Sets `KERAS_BACKEND` to `name` (None: leave it); Keras must not be loaded yet,
    since it reads the variable once, when first imported."""
    if name is None:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            fail(
                f"--backend {name} but Keras is already loaded with the "
                f"{keras.backend.backend()} backend in this process; set KERAS_BACKEND={name} "
                "before starting Python instead."
            )
        return
    os.environ["KERAS_BACKEND"] = name


# ---------------------------------------------------------------------------- progress

# Short names of the logged values, for one progress line per epoch.
SHORT_NAMES = {
    "loss": "loss",
    "active_fraction": "active",
    "hard_fraction": "hard",
    "positive_distance": "d+",
    "negative_distance": "d-",
    "embedding_norm": "norm",
    "eer_skilled": "EER skilled",
    "eer_random": "EER random",
}


def epoch_line(epoch, epochs, logs, seconds, width=None):
    """One line for an epoch's logs, cut to `width` columns (default: the terminal's):
    the loss first, then the other values under short names, validation ones as `val`.

    >>> epoch_line(2, 12, {"loss": 0.1234, "hard_fraction": 0.05, "val_loss": 0.2}, 3.2, width=80)
    'epoch 3/12  3.2 s  loss 0.1234  hard 0.05  | val loss 0.2'
    >>> len(epoch_line(0, 9, {f"m{i}": 1.0 for i in range(40)}, 1.0, width=50))
    50
    """
    if width is None:
        width = shutil.get_terminal_size((100, 24)).columns - 1
    parts = [f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f} s"]
    train = [k for k in logs if not k.startswith("val_")]
    val = [k for k in logs if k.startswith("val_")]
    for keys, prefix in ((train, ""), (val, "val ")):
        keys = sorted(keys, key=_display_rank)
        if prefix and keys:
            parts.append("|")
        for i, k in enumerate(keys):
            name = SHORT_NAMES.get(k.removeprefix("val_"), k.removeprefix("val_"))
            parts.append(f"{prefix if i == 0 else ''}{name} {float(logs[k]):.4g}")
    line = "  ".join(parts).replace("  |  ", "  | ")
    return line if len(line) <= width else line[: width - 3] + "..."


def _display_rank(key):
    """The loss first, then the statistics in the order of `SHORT_NAMES`, then the rest."""
    name = key.removeprefix("val_")
    order = list(SHORT_NAMES)
    return (order.index(name) if name in order else len(order), name)


def epoch_progress(epochs, stream=None):
    """A Keras callback printing `epoch_line` after every epoch (to stderr): the apps'
    progress instead of Keras' bar, whose line with every mining statistic is wider than
    a terminal. Imports Keras: call it after the backend is chosen."""
    import time

    import keras

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            line = epoch_line(epoch, epochs, logs or {}, time.perf_counter() - self.start)
            print(line, file=stream or sys.stderr, flush=True)

    return EpochProgress()


# ---------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` to write; on success it replaces `path` in
    one step (`os.replace`), so readers see the old file or the new one, never half of
    one; on failure it is removed. The temporary name keeps `path`'s extension (Keras
    checks it) behind a leading dot, so folder scans skip it."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data):
    """Writes `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path, obj, indent=2):
    """Writes `obj` as JSON to `path` atomically; NumPy scalars and arrays become numbers
    and lists."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n"
    write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_model(model, path):
    """`model.save(path)` atomically: an interrupted save leaves the previous file."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        fail(f"the model file must end in .keras; got {path!r}.")
    with atomic_path(path) as tmp:
        model.save(tmp)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------- side files


def side_path(model_path):
    """`MODEL.keras.json`, the side file beside `MODEL.keras` (settings, metadata)."""
    return os.fspath(model_path) + SIDE_SUFFIX


def read_side_file(model_path):
    """The side file of `model_path` as a dict (empty when there is none). Also reads
    the older name `MODEL.json` that the signature app wrote before both apps agreed."""
    for path in (side_path(model_path), os.path.splitext(os.fspath(model_path))[0] + ".json"):
        if os.path.isfile(path):
            return read_json(path)
    return {}


# --------------------------------------------------------------------- skipped files


class SkipReport:
    """The files a run could not use, with the reason for each; never fatal.

    Example:

    >>> report = SkipReport()
    >>> report.add("x.wav", "empty file")
    >>> len(report), report.rows[0]
    (1, ('x.wav', 'empty file'))
    """

    def __init__(self, rows=()):
        self.rows = [(os.fspath(p), str(r)) for p, r in rows]

    def add(self, path, reason):
        self.rows.append((os.fspath(path), str(reason)))

    def extend(self, rows):
        for path, reason in rows:
            self.add(path, reason)

    def __len__(self):
        return len(self.rows)

    def write(self, path):
        """Writes `file<TAB>reason` rows (with a header) to `path`, atomically."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["file", "reason"])
            writer.writerows(self.rows)
        return os.fspath(path)

    @staticmethod
    def read(path):
        """The `(file, reason)` rows of a report written by `write`."""
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        return [tuple(r) for r in rows[1:]]

    def summary(self, used, report_path=None):
        text = f"used {used} file(s), skipped {len(self)}"
        if len(self) and report_path:
            text += f" (reasons in {report_path})"
        return text

    def print(self, limit=10):
        """Lists the first `limit` skipped files on stderr."""
        if not self.rows:
            return
        log(f"skipped {len(self)} file(s):")
        for path, reason in self.rows[:limit]:
            log(f"  {path}: {reason}")
        if len(self) > limit:
            log(f"  ... and {len(self) - limit} more")
