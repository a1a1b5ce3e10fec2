"""`EmbeddingIndex`: the container (embeddings, ids, labels) and its checks.

Searches are answered by `keras_triplet.index.exact` (default) or
`keras_triplet.index.faiss_search`; files are read and written by
`keras_triplet.index.file_format`.
"""

import numpy as np

from keras_triplet._validation import check_embedding_array, check_label_array
from keras_triplet.index import file_format
from keras_triplet.index.exact import exact_search
from keras_triplet.index.faiss_search import FaissSearch, require_faiss
from keras_triplet.metrics.distances import METRICS

BACKENDS = ("exact", "faiss")


def _as_keys(values, n, name):
    """Ids or labels: 1-D, one per embedding, int64 or unicode (saved without pickle)."""
    return check_label_array(values, n, name=f"`{name}`", items="`embeddings`", strings=True)


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
            require_faiss()
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
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros((0, dim), np.float32)]
        return self._parts[0]

    @property
    def ids(self):
        """The ids, `[N]` int64 or strings."""
        return np.zeros((0,), np.int64) if self._ids is None else self._ids

    @property
    def labels(self):
        """The labels `[N]`, or `None` when the index has none."""
        return self._labels

    def _check_vectors(self, x, name, dtype):
        x = np.asarray(x)
        if x.ndim == 1 and self.dim is not None and x.shape[0] == self.dim:
            x = x[None, :]  # one query
        x = check_embedding_array(x, f"`{name}`", dtype=dtype)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(
                f"`{name}` have dimension {x.shape[1]} but this index holds embeddings of "
                f"dimension {self.dim}; embed with the same model the index was built with."
            )
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
        x = self._check_vectors(embeddings, "embeddings", np.float32)
        n = x.shape[0]
        if self._size and (labels is None) != (self._labels is None):
            raise ValueError(
                "This index "
                + (
                    "has labels: give `labels` on every add."
                    if labels is None
                    else "was built without labels: give labels on every add or on none."
                )
            )
        new_labels = None if labels is None else _as_keys(labels, n, "labels")
        if ids is None:
            if self._ids is not None and self._ids.dtype.kind == "U":
                raise ValueError("This index has string ids: give `ids` on every add.")
            new_ids = np.arange(self._size, self._size + n, dtype=np.int64)
        else:
            new_ids = _as_keys(ids, n, "ids")
        all_ids = _concat_keys(self._ids, new_ids, "ids")
        if np.unique(all_ids).size != all_ids.size:
            raise ValueError(
                "`ids` must be unique; this add repeats an id already in the index (or within itself)."
            )
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
        q = self._check_vectors(queries, "queries", np.float64)
        if self.backend == "faiss":
            if self._faiss is None:
                self._faiss = FaissSearch(self.embeddings, self.metric)
            dist, pos = self._faiss.search(q, k)
        else:
            dist, pos = exact_search(self.embeddings, q, k, self.metric, self.chunk_size)
        labels = None if self._labels is None else self._labels[pos]
        return dist, self._ids[pos], labels

    # ------------------------------------------------------------------- files
    def save(self, path, compress=False):
        """Writes the index to `path` (one `.npz`, no pickle), atomically.

        The archive is written to a temporary file next to `path`, synced to disk and
        moved over `path` with `os.replace`: readers see the old file or the new one,
        never half a file, and a crash mid-save leaves the previous file intact. `path`
        is used as given (no `.npz` suffix is added). `compress=True` zips the arrays.

        Example:

        >>> import numpy as np, os, tempfile
        >>> index = EmbeddingIndex(); index.add(np.ones((2, 3)))
        >>> path = os.path.join(tempfile.mkdtemp(), "i.npz")
        >>> index.save(path)
        >>> os.listdir(os.path.dirname(path))  # no temporary file left behind
        ['i.npz']
        """
        file_format.write(path, self, compress)

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
        fields = file_format.read(path)
        index = cls(metric=fields["metric"], backend=backend, chunk_size=chunk_size)
        index.dim = fields["dim"]
        if fields["embeddings"].shape[0]:
            index._parts = [fields["embeddings"]]
            index._ids = fields["ids"]
            index._labels = fields["labels"]
            index._size = fields["embeddings"].shape[0]
        return index
