"""`EmbeddingIndex`: nearest-neighbour search over stored embeddings, with safe files.

Exact search by default: queries are compared with the stored embeddings by chunks (of
queries and of stored embeddings, in NumPy float64), keeping a running top-`k`, so memory
stays bounded whatever the size of the index. With `backend="faiss"` (when `faiss-cpu`
or `faiss-gpu` is installed) the search runs in a faiss flat index instead
(`IndexFlatL2`; for `cosine` / `angular`, `IndexFlatIP` on L2-normalised vectors); the
distances it returns are converted to the same metric definitions.

Metrics (the definitions of `keras_triplet.distances`): `"euclidean"` `‖x − y‖₂`,
`"squared_euclidean"` `‖x − y‖₂²`, `"cosine"` `1 − cos(x, y)` (a zero vector has
similarity 0 with everything), `"angular"` `max(1 − cos(x, y), 0)`.

Files (`save` / `load`) are one `.npz` archive with no pickled object anywhere (it is
read with `allow_pickle=False`): the embeddings (float32), the ids (int64 or unicode
strings), the labels if any (int64 or unicode strings), the dimension, the metric, a
format version and a SHA-256 checksum of all of these. Writes are atomic: the archive is
written to a temporary file in the same directory, flushed to disk (`fsync`) and moved
over the destination with `os.replace`, so a crash mid-save leaves the previous file
intact. Loading a truncated, modified or inconsistent file raises a `ValueError` that
says what is wrong.
"""

import hashlib
import os
import tempfile
import zipfile

import numpy as np

from keras_triplet.metrics.retrieval import METRICS

FORMAT_VERSION = 1
BACKENDS = ("exact", "faiss")

# A query chunk × a block of stored embeddings holds at most this many float64 values.
_BLOCK_ELEMENTS = 2**22

_REQUIRED = ("format_version", "metric", "dim", "embeddings", "ids", "checksum")


def _checksum(arrays):
    """SHA-256 over the names, dtypes, shapes and bytes of `arrays` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8") + b"\0")
        h.update(a.dtype.str.encode("ascii") + b"\0")
        h.update(repr(a.shape).encode("ascii") + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def _as_key_array(values, n, name):
    """Checks ids / labels: 1-D, length n, integers or strings (never objects)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(
            f"`{name}` must be 1-D with one entry per embedding ({n}); got shape {values.shape}."
        )
    if values.dtype.kind in "iu" or values.dtype == bool:
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"`{name}` must be integers or strings; got fractional values.")
        return values.astype(np.int64)
    if values.dtype.kind == "U":
        return values
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values.tolist()):
        return values.astype(str)
    raise ValueError(
        f"`{name}` must be integers or strings (saved without pickle); got dtype {values.dtype}."
    )


def _concat_keys(old, new, name):
    if old is None or old.size == 0:
        return new
    if (old.dtype.kind == "U") != (new.dtype.kind == "U"):
        raise ValueError(
            f"`{name}` of this add are {'strings' if new.dtype.kind == 'U' else 'integers'} but "
            f"the index already holds {'strings' if old.dtype.kind == 'U' else 'integers'}; "
            "use one kind for the whole index."
        )
    return np.concatenate([old, new])


class EmbeddingIndex:
    """Nearest-neighbour index of embeddings, with optional labels and ids.

    Args:
        metric: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or `"angular"`.
        backend: `"exact"` (NumPy, chunked; the default) or `"faiss"` (needs the `faiss`
            package: `pip install faiss-cpu`).
        chunk_size: queries per chunk in exact search (`None`: 256).

    `add(embeddings, labels=None, ids=None)` appends; the first add fixes the dimension.
    Ids default to insertion positions `0, 1, 2, ...`; given ids must be unique integers or
    strings. Labels are given on every add or on none.

    `search(queries, k)` returns `(distances, ids, labels)`:

    - `distances`: float64 `[Q, k]`, increasing along each row;
    - `ids`: `[Q, k]` ids of the neighbours (the positions when no ids were given);
    - `labels`: `[Q, k]` labels of the neighbours, or `None` when the index has no labels.

    `k` is capped at the index size. Exact search orders equal distances by insertion
    order.

    Example:

    >>> import numpy as np
    >>> index = EmbeddingIndex(metric="euclidean")
    >>> index.add(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]), labels=[0, 0, 1])
    >>> d, ids, labels = index.search(np.array([[0.9, 0.0]]), k=2)
    >>> ids.tolist(), labels.tolist()
    ([[1, 0]], [[0, 0]])
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "index.npz")
    >>> index.save(path)
    >>> len(EmbeddingIndex.load(path))
    3
    """

    def __init__(self, metric="euclidean", backend="exact", chunk_size=None):
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}.")
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; expected one of {BACKENDS}.")
        if backend == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError as e:
                raise ImportError(
                    "backend='faiss' needs the faiss package: `pip install faiss-cpu` "
                    "(or use backend='exact')."
                ) from e
        self.metric = metric
        self.backend = backend
        self.chunk_size = 256 if chunk_size is None else int(chunk_size)
        if self.chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1; got {chunk_size}.")
        self.dim = None
        self._parts = []  # float32 [n_i, dim] arrays, consolidated lazily
        self._ids = None
        self._labels = None
        self._size = 0
        self._faiss = None

    # ---------------------------------------------------------------- contents
    def __len__(self):
        return self._size

    def __repr__(self):
        return (
            f"EmbeddingIndex(metric={self.metric!r}, backend={self.backend!r}, "
            f"dim={self.dim}, size={self._size})"
        )

    @property
    def embeddings(self):
        """The stored embeddings, float32 `[N, dim]`."""
        if len(self._parts) != 1:
            dim = 0 if self.dim is None else self.dim
            self._parts = [
                np.concatenate(self._parts) if self._parts else np.zeros((0, dim), np.float32)
            ]
        return self._parts[0]

    @property
    def ids(self):
        """The ids, `[N]` int64 or strings."""
        return np.zeros((0,), np.int64) if self._ids is None else self._ids

    @property
    def labels(self):
        """The labels `[N]`, or `None` when the index has none."""
        return self._labels

    def _check_vectors(self, x, name):
        x = np.asarray(x)
        if x.ndim == 1 and self.dim is not None and x.shape[0] == self.dim:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D [n, dim]; got shape {x.shape}.")
        if x.dtype.kind not in "fiu":
            raise ValueError(f"`{name}` must be real numbers; got dtype {x.dtype}.")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(
                f"`{name}` have dimension {x.shape[1]} but this index holds embeddings of "
                f"dimension {self.dim}; embed with the same model the index was built with."
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        return x

    def add(self, embeddings, labels=None, ids=None):
        """Appends `embeddings` `[n, dim]`, with optional `labels` `[n]` and `ids` `[n]`.

        Example:

        >>> import numpy as np
        >>> index = EmbeddingIndex()
        >>> index.add(np.eye(3), ids=["a", "b", "c"])
        >>> index.ids.tolist()
        ['a', 'b', 'c']
        """
        x = self._check_vectors(embeddings, "embeddings").astype(np.float32)
        n = x.shape[0]
        if self._size and (labels is None) != (self._labels is None):
            raise ValueError(
                "This index "
                + ("has labels: give `labels` on every add." if labels is None
                   else "was built without labels: give labels on every add or on none.")
            )
        new_labels = None if labels is None else _as_key_array(labels, n, "labels")
        if ids is None:
            if self._ids is not None and self._ids.dtype.kind == "U":
                raise ValueError("This index has string ids: give `ids` on every add.")
            new_ids = np.arange(self._size, self._size + n, dtype=np.int64)
        else:
            new_ids = _as_key_array(ids, n, "ids")
        all_ids = _concat_keys(self._ids, new_ids, "ids")
        if np.unique(all_ids).size != all_ids.size:
            raise ValueError("`ids` must be unique; this add repeats an id already in the index (or within itself).")
        all_labels = None if new_labels is None else _concat_keys(self._labels, new_labels, "labels")
        # Commit only once everything is checked.
        if self.dim is None:
            self.dim = int(x.shape[1])
        self._parts.append(x)
        self._ids = all_ids
        self._labels = all_labels
        self._size += n
        self._faiss = None

    # ------------------------------------------------------------------ search
    def search(self, queries, k):
        """The `k` nearest stored embeddings of each query: `(distances, ids, labels)`.

        `distances` float64 `[Q, k]` (increasing), `ids` `[Q, k]`, `labels` `[Q, k]` or
        `None`; `k` is capped at `len(index)`.

        Example:

        >>> import numpy as np
        >>> index = EmbeddingIndex(metric="cosine")
        >>> index.add(np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> d, ids, _ = index.search(np.array([[2.0, 0.1]]), k=1)
        >>> ids.tolist()
        [[0]]
        """
        if self._size == 0:
            raise ValueError("The index is empty: add embeddings before searching.")
        k = int(k)
        if k < 1:
            raise ValueError(f"`k` must be >= 1; got {k}.")
        k = min(k, self._size)
        q = self._check_vectors(queries, "queries")
        if self.backend == "faiss":
            dist, pos = self._search_faiss(q, k)
        else:
            dist, pos = self._search_exact(q, k)
        labels = None if self._labels is None else self._labels[pos]
        return dist, self._ids[pos], labels

    def _distances(self, q, block, block_sq):
        if self.metric in ("cosine", "angular"):
            d = 1.0 - q @ block.T
            return np.maximum(d, 0.0) if self.metric == "angular" else d
        sq = np.sum(q * q, axis=1)[:, None] + block_sq[None, :] - 2.0 * (q @ block.T)
        sq = np.maximum(sq, 0.0)
        return np.sqrt(sq) if self.metric == "euclidean" else sq

    @staticmethod
    def _unit(x):
        norms = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
        return x / np.where(norms > 0, norms, 1.0)

    def _search_exact(self, q, k):
        refs = self.embeddings
        n = refs.shape[0]
        q = q.astype(np.float64)
        if self.metric in ("cosine", "angular"):
            q = self._unit(q)
        chunk = min(self.chunk_size, q.shape[0]) or 1
        block = max(k, _BLOCK_ELEMENTS // chunk)
        out_d = np.empty((q.shape[0], k))
        out_p = np.empty((q.shape[0], k), dtype=np.int64)
        for r0 in range(0, n, block):
            r = refs[r0:r0 + block].astype(np.float64)
            if self.metric in ("cosine", "angular"):
                r = self._unit(r)
            r_sq = np.sum(r * r, axis=1)
            for q0 in range(0, q.shape[0], chunk):
                d = self._distances(q[q0:q0 + chunk], r, r_sq)
                pos = np.broadcast_to(np.arange(r0, r0 + r.shape[0]), d.shape)
                kk = min(k, d.shape[1])
                if kk < d.shape[1]:
                    part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
                    # Keep every value tied with the k-th one so ties resolve by position.
                    kth = np.take_along_axis(d, part, axis=1).max(axis=1, keepdims=True)
                    keep = d <= kth
                    if np.all(keep.sum(axis=1) == kk):
                        d = np.take_along_axis(d, part, axis=1)
                        pos = np.take_along_axis(pos, part, axis=1)
                    # else: rare ties at the boundary, merge the whole block below.
                if r0 > 0:
                    d = np.concatenate([out_d[q0:q0 + chunk], d], axis=1)
                    pos = np.concatenate([out_p[q0:q0 + chunk], pos], axis=1)
                order = np.lexsort((pos, d), axis=-1)[:, :k]
                out_d[q0:q0 + chunk] = np.take_along_axis(d, order, axis=1)
                out_p[q0:q0 + chunk] = np.take_along_axis(pos, order, axis=1)
        return out_d, out_p

    def _search_faiss(self, q, k):
        import faiss

        if self._faiss is None:
            refs = np.ascontiguousarray(self.embeddings, dtype=np.float32)
            if self.metric in ("cosine", "angular"):
                index = faiss.IndexFlatIP(self.dim)
                refs = np.ascontiguousarray(self._unit(refs).astype(np.float32))
            else:
                index = faiss.IndexFlatL2(self.dim)
            index.add(refs)
            self._faiss = index
        q = q.astype(np.float32)
        if self.metric in ("cosine", "angular"):
            q = self._unit(q).astype(np.float32)
        scores, pos = self._faiss.search(np.ascontiguousarray(q), k)
        scores = scores.astype(np.float64)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(scores, 0.0))
        elif self.metric == "squared_euclidean":
            dist = np.maximum(scores, 0.0)
        else:
            dist = 1.0 - scores
            if self.metric == "angular":
                dist = np.maximum(dist, 0.0)
        return dist, pos.astype(np.int64)

    # ------------------------------------------------------------------- files
    def _arrays(self):
        arrays = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "metric": np.array(self.metric),
            "dim": np.array(-1 if self.dim is None else self.dim, dtype=np.int64),
            "embeddings": np.ascontiguousarray(self.embeddings, dtype=np.float32),
            "ids": self.ids,
        }
        if self._labels is not None:
            arrays["labels"] = self._labels
        arrays["checksum"] = np.array(_checksum(arrays))
        return arrays

    def save(self, path, compress=False):
        """Writes the index to `path` (one `.npz`, no pickle), atomically.

        The archive is written to a temporary file next to `path`, synced to disk and
        moved over `path` with `os.replace`: readers see the old file or the new one,
        never half a file, and a crash mid-save leaves the previous file intact. `path`
        is used as given (no `.npz` suffix is added). `compress=True` zips the arrays.

        Example:

        >>> import numpy as np, os, tempfile
        >>> index = EmbeddingIndex(); index.add(np.ones((2, 3)))
        >>> index.save(os.path.join(tempfile.mkdtemp(), "i.npz"))
        """
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        arrays = self._arrays()
        fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
        )
        try:
            with os.fdopen(fd, "wb") as f:
                (np.savez_compressed if compress else np.savez)(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _file_mode(path))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        try:  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path, backend="exact", chunk_size=None):
        """Reads an index written by `save`, checking its integrity.

        Raises `ValueError` (saying what is wrong) when the file is truncated or not an
        index archive, holds pickled objects, comes from a newer format version, fails its
        checksum (modified after writing) or has inconsistent shapes.

        Example:

        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "i.npz")
        >>> index = EmbeddingIndex(metric="cosine"); index.add(np.eye(2), labels=[3, 4])
        >>> index.save(path)
        >>> loaded = EmbeddingIndex.load(path)
        >>> loaded.metric, loaded.dim, loaded.labels.tolist()
        ('cosine', 2, [3, 4])
        """
        path = os.fspath(path)
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array, not an .npz archive")
            with archive:
                arrays = {name: archive[name] for name in archive.files}
        except FileNotFoundError:
            raise
        except ValueError as e:
            if "pickle" in str(e):
                raise ValueError(
                    f"{path!r} is not an EmbeddingIndex file: reading it would need pickle "
                    "(object arrays or a non-NumPy file), which EmbeddingIndex files never use; "
                    "refusing to unpickle."
                ) from e
            raise ValueError(f"Cannot read {path!r} as an EmbeddingIndex file: {e}.") from e
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
            raise ValueError(
                f"Cannot read {path!r} as an EmbeddingIndex file: it is truncated, corrupted or "
                f"not an .npz archive ({type(e).__name__}: {e})."
            ) from e
        missing = [name for name in _REQUIRED if name not in arrays]
        if missing:
            raise ValueError(
                f"{path!r} is not an EmbeddingIndex file: missing array(s) {missing}."
            )
        try:
            version = int(arrays["format_version"])
            dim = int(arrays["dim"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path!r}: format_version and dim must be integer scalars.") from e
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{path!r} has format version {version}, newer than this keras_triplet "
                f"reads ({FORMAT_VERSION}); upgrade keras_triplet."
            )
        stored = str(arrays.pop("checksum"))
        actual = _checksum(arrays)
        if stored != actual:
            raise ValueError(
                f"{path!r} failed its SHA-256 checksum (stored {stored[:12]}..., computed "
                f"{actual[:12]}...): the file was modified or corrupted after it was written."
            )
        metric = str(arrays["metric"])
        emb = arrays["embeddings"]
        ids = arrays["ids"]
        labels = arrays.get("labels")
        if emb.ndim != 2 or emb.dtype != np.float32 or (dim >= 0 and emb.shape[1] != dim):
            raise ValueError(
                f"{path!r}: embeddings of shape {emb.shape} / dtype {emb.dtype} do not match "
                f"the stored dimension {dim}."
            )
        n = emb.shape[0]
        for name, values in (("ids", ids), ("labels", labels)):
            if values is not None and values.dtype.kind not in "iU":
                raise ValueError(f"{path!r}: {name} have dtype {values.dtype}; expected int64 or strings.")
        if ids.shape != (n,) or (labels is not None and labels.shape != (n,)):
            raise ValueError(
                f"{path!r}: ids {ids.shape} / labels "
                f"{None if labels is None else labels.shape} do not match {n} embeddings."
            )
        if metric not in METRICS:
            raise ValueError(f"{path!r}: unknown metric {metric!r}.")
        index = cls(metric=metric, backend=backend, chunk_size=chunk_size)
        if n or dim >= 0:
            index.dim = dim
        if n:
            index._parts = [emb]
            index._ids = ids
            index._labels = labels
            index._size = n
        return index


def _file_mode(path):
    """The mode the saved file gets: the existing file's, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
