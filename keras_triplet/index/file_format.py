"""The `EmbeddingIndex` file: one `.npz` archive, no pickle, a checksum over every array.

The archive holds:

| array | contents |
|---|---|
| `format_version` | int64 scalar, `FORMAT_VERSION` |
| `metric` | unicode scalar |
| `dim` | int64 scalar, `-1` for an index that never received an embedding |
| `embeddings` | float32 `[N, dim]` |
| `ids` | int64 or unicode `[N]` |
| `labels` | int64 or unicode `[N]`; absent when the index has no labels |
| `checksum` | unicode scalar: SHA-256 of every other array (`checksum`) |

It is read with `allow_pickle=False`, so no file can run code. The checksum covers every
array in the archive but itself (name, dtype, shape and bytes), so any change after
writing (a tampered id, dimension, metric, version, ...) or a removed or added array is
caught. Writes go through `keras_triplet._io.atomic_write`: a crash mid-save leaves the
previous file intact. Reading a bad file raises a one-line `ValueError` that says what
is wrong.
"""

import hashlib
import os
import zipfile

import numpy as np

from keras_triplet._io import atomic_write
from keras_triplet.metrics.distances import METRICS

FORMAT_VERSION = 1

_REQUIRED = ("format_version", "metric", "dim", "embeddings", "ids", "checksum")


def checksum(arrays):
    """SHA-256 (hex) over the names, dtypes, shapes and bytes of `arrays`, by name.

    `arrays` is every stored array but `checksum` itself: nothing is left out by a list
    that could go stale.

    >>> checksum({"dim": np.array(2)}) == checksum({"dim": np.array(3)})
    False
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8") + b"\0")
        h.update(a.dtype.str.encode("ascii") + b"\0")
        h.update(repr(a.shape).encode("ascii") + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def to_arrays(index):
    """The arrays of the file of `index` (an `EmbeddingIndex`), checksum included."""
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "metric": np.array(index.metric),
        "dim": np.array(-1 if index.dim is None else index.dim, dtype=np.int64),
        "embeddings": np.ascontiguousarray(index.embeddings, dtype=np.float32),
        "ids": index.ids,
    }
    if index.labels is not None:
        arrays["labels"] = index.labels
    arrays["checksum"] = np.array(checksum(arrays))
    return arrays


def write(path, index, compress=False):
    """Writes `index` to `path` (used as given), atomically; `compress` zips the arrays."""
    arrays = to_arrays(index)
    with atomic_write(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def read(path):
    """Reads and checks the file at `path`: a dict of `metric`, `dim` (`None` when the
    index never received an embedding), `embeddings`, `ids` and `labels` (or `None`).

    Raises `FileNotFoundError`, or a one-line `ValueError` when the file is not an index
    file, comes from a newer format version, fails its checksum or is inconsistent.
    """
    path = os.fspath(path)
    arrays = _read_archive(path)
    missing = [name for name in _REQUIRED if name not in arrays]
    if missing:
        _fail(path, f"is not an EmbeddingIndex file: missing array(s) {missing}.")
    version = _int_scalar(path, arrays, "format_version")
    if version > FORMAT_VERSION:
        # Checked before the checksum: a newer format may compute it differently.
        _fail(
            path,
            f"has format version {version}, newer than this keras_triplet reads "
            f"({FORMAT_VERSION}); upgrade keras_triplet.",
        )
    stored = str(arrays.pop("checksum"))
    actual = checksum(arrays)
    if stored != actual:
        _fail(
            path,
            f"failed its SHA-256 checksum (stored {stored[:12]}..., computed "
            f"{actual[:12]}...): the file was modified or corrupted after it was "
            "written.",
        )
    # The checksum matched: what follows catches files written by other code.
    dim = _int_scalar(path, arrays, "dim")
    metric = str(arrays["metric"])
    if arrays["metric"].shape != () or metric not in METRICS:
        _fail(path, f"unknown metric {metric!r}.")
    emb, ids, labels = arrays["embeddings"], arrays["ids"], arrays.get("labels")
    n = emb.shape[0] if emb.ndim == 2 else -1
    if emb.dtype != np.float32 or n < 0 or not (emb.shape[1] == dim or (dim == -1 and n == 0)):
        _fail(
            path,
            f"embeddings of shape {emb.shape} / dtype {emb.dtype} do not match the stored dimension {dim}.",
        )
    for name, values in (("ids", ids), ("labels", labels)):
        if values is None:
            continue
        if values.dtype.kind not in "iU":
            _fail(path, f"{name} have dtype {values.dtype}; expected int64 or strings.")
        if values.shape != (n,):
            _fail(path, f"{name} of shape {values.shape} do not match {n} embeddings.")
    if np.unique(ids).size != n:
        _fail(path, "ids are not unique.")
    return {
        "metric": metric,
        "dim": None if dim == -1 else dim,
        "embeddings": emb,
        "ids": ids,
        "labels": labels,
    }


def _fail(path, problem):
    raise ValueError(f"{path!r} {problem}")


def _int_scalar(path, arrays, name):
    a = arrays[name]
    if a.shape != () or a.dtype.kind not in "iu":
        _fail(
            path,
            f"is not an EmbeddingIndex file: {name} must be an integer scalar, got "
            f"shape {a.shape} / dtype {a.dtype}.",
        )
    return int(a)


def _read_archive(path):
    """Every array of the `.npz` at `path`, or a one-line `ValueError`."""
    damaged = "is truncated, corrupted or not an .npz archive"
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except ValueError:  # NumPy's guess ("pickled data") for any file it does not know
        archive, problem = None, f"{damaged} (it does not start with the .npz signature)"
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
        archive, problem = None, f"{damaged} ({_short(e)})"
    if archive is not None and not isinstance(archive, np.lib.npyio.NpzFile):
        archive, problem = None, "holds a single .npy array, not an .npz archive"
    if archive is not None:
        try:
            with archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as e:
            if "Object arrays" in str(e):
                problem = (
                    "holds object arrays (pickled Python objects), which "
                    "EmbeddingIndex files never contain; they are not loaded (no pickle)"
                )
            else:  # a damaged array header
                problem = f"{damaged} ({_short(e)})"
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
            problem = f"{damaged} ({_short(e)})"
    raise ValueError(f"Cannot read {path!r} as an EmbeddingIndex file: it {problem}.")


def _short(error):
    """`Type: message` of `error` on one line, at most 120 characters."""
    text = " ".join(str(error).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
