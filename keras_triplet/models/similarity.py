"""The similarity workflow on the model: index, lookup, calibrate, match, saved with it.

`SimilarityMixin` gives `TripletModel` what TF Similarity's `SimilarityModel` users
know, on every backend (it is NumPy around `model.embed`):

- `index(x, y=None, data=None)` embeds `x` and adds it to a
  `keras_triplet.index.EmbeddingIndex` (exact search, or faiss with `backend="faiss"`),
  with optional labels and per-item data; `lookup(x, k)` returns each query's `k`
  nearest indexed items (`Lookups`); `reset_index()`, `index_summary()`.
- `calibrate(x, y, thresholds_targets={"precision": 0.95}, metric="f1")` chooses
  distance thresholds (cutpoints) on a calibration set, with nearest-neighbour matching
  (`keras_triplet.metrics.matching`); `match(x, cutpoint="optimal")` returns each
  query's nearest label, or an "unknown" label when it is farther than the threshold;
  `evaluate_matching(x, y)` reports precision, recall, F1, accuracy, FAR and FRR there.
- `model.save(path)` writes the `.keras` file atomically, with the index, its data and
  the calibration inside it (Keras' `save_assets` / `load_assets` hooks);
  `keras.saving.load_model` restores them and checks them (below).

The files, in the `.keras` archive's `assets/` folder (written only when the model has an
index or a calibration; no pickle anywhere):

| file | contents |
|---|---|
| `similarity.json` | format version, the index's metric / backend / size / dimension, the SHA-256 of the two files below, the calibration's cutpoints, and a SHA-256 of all that |
| `similarity_index.npz` | the `EmbeddingIndex` file (`keras_triplet.index.file_format`, its own checksum) |
| `similarity_data.npz` | the per-item `data` array, when given |

Loading checks the JSON's checksum, that each file is the one the JSON names (a file
swapped in from another model is caught), that the index matches the model's embedding
dimension and the data its size; any failure is a `ValueError` that says which.
"""

import dataclasses
import hashlib
import json
import os
import warnings

import numpy as np

from keras_triplet._io import atomic_path, atomic_write

STATE_FILE = "similarity.json"
INDEX_FILE = "similarity_index.npz"
DATA_FILE = "similarity_data.npz"
STATE_VERSION = 1


def _python_scalar(value):
    """A 0-d row as a Python scalar (`'c'`, not `np.str_('c')`); an array row as is."""
    return value.item() if np.ndim(value) == 0 else value


@dataclasses.dataclass(frozen=True)
class Neighbor:
    """One indexed item found by `lookup`: its `rank` (0 = nearest), `id` (its position
    in the index, in insertion order), `distance` to the query, `label` (or `None` when
    the index has no labels) and `data` (the row given to `index(..., data=...)`, or
    `None`)."""

    rank: int
    id: object
    distance: float
    label: object
    data: object


@dataclasses.dataclass(frozen=True)
class Lookups:
    """The result of `lookup(x, k)` for `Q` queries, as arrays and per query.

    `distances` float64 `[Q, k]` (increasing along each row), `ids` `[Q, k]`,
    `labels` `[Q, k]` or `None`, `data` `[Q, k, ...]` or `None`. `lookups[q]` is query
    `q`'s list of `Neighbor`s, nearest first; `len(lookups)` is `Q` and iterating yields
    those lists.
    """

    distances: np.ndarray
    ids: np.ndarray
    labels: object = None
    data: object = None

    def __len__(self):
        return self.distances.shape[0]

    def __getitem__(self, q):
        return [
            Neighbor(
                rank=r,
                id=self.ids[q, r].item(),
                distance=float(self.distances[q, r]),
                label=None if self.labels is None else self.labels[q, r].item(),
                data=None if self.data is None else _python_scalar(self.data[q, r]),
            )
            for r in range(self.distances.shape[1])
        ]

    def __iter__(self):
        return (self[q] for q in range(len(self)))


@dataclasses.dataclass
class Calibration:
    """What `calibrate` chose: `cutpoints` maps a name (`"optimal"` and each target's
    metric) to a dict with the threshold `distance` and the calibration set's
    precision, recall, F1, accuracy, FAR and FRR there; `metric` is the metric
    `"optimal"` maximises; `unmet` the targets no threshold met. `thresholds` and
    `curve` (every metric at every threshold, as `keras_triplet.metrics.matching_curve`
    returns them) are kept in memory, not saved with the model."""

    metric: str
    cutpoints: dict
    unmet: list = dataclasses.field(default_factory=list)
    thresholds: object = None
    curve: object = None

    def to_json(self):
        return {"metric": self.metric, "cutpoints": self.cutpoints, "unmet": list(self.unmet)}

    @classmethod
    def from_json(cls, config):
        return cls(metric=config["metric"], cutpoints=config["cutpoints"], unmet=config.get("unmet", []))


class _State:
    """The index, its per-item data and the calibration of one model."""

    def __init__(self):
        self.index = None
        self.data = None
        self.calibration = None

    def empty(self):
        return self.index is None and self.calibration is None


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_json(body):
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _bad_state(problem):
    return ValueError(
        f"The similarity index saved with this model cannot be used: {problem} "
        "Re-create it with model.index(...) (and model.calibrate(...)) and save the model again."
    )


def _check_data(data, n):
    data = np.asarray(data)
    if data.ndim == 0 or data.shape[0] != n:
        raise ValueError(
            f"`data` must hold one row per indexed item: expected first dimension {n}, got shape {data.shape}."
        )
    if data.dtype.kind not in "biufcUS":
        raise ValueError(
            f"`data` must be a NumPy array of numbers, booleans or strings (it is saved without "
            f"pickle); got dtype {data.dtype}."
        )
    return data


class SimilarityMixin:
    """Index, lookup, calibrate and match on a model that has `embed(x, batch_size)`.

    See the module docstring for the workflow and the saved files.

    Example:

    >>> import numpy as np, keras
    >>> from keras_triplet import TripletModel
    >>> model = TripletModel(keras.Sequential([keras.Input((2,)), keras.layers.Identity()]),
    ...                      normalize=False)
    >>> model.index(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], "float32"), y=[0, 0, 1],
    ...             data=np.array(["a", "b", "c"]))
    >>> found = model.lookup(np.array([[4.0, 5.0]], "float32"), k=2)
    >>> [(n.label, n.data, round(n.distance, 3)) for n in found[0]]
    [(1, 'c', 1.0), (0, 'b', 5.831)]
    >>> cal = model.calibrate(np.array([[0.1, 0.0], [4.9, 5.0], [9.0, 9.0]], "float32"), [0, 1, 0])
    >>> round(cal.cutpoints["optimal"]["distance"], 3)
    0.1
    >>> model.match(np.array([[0.0, 0.05], [20.0, 20.0]], "float32")).tolist()  # -1: unknown
    [0, -1]
    """

    # ---------------------------------------------------------------- state
    def _similarity_state(self):
        state = getattr(self, "_similarity", None)
        if state is None:
            state = _State()
            self._similarity = state
        return state

    @property
    def similarity_index(self):
        """The `keras_triplet.index.EmbeddingIndex` built by `index`, or `None`."""
        return self._similarity_state().index

    @property
    def calibration(self):
        """The `Calibration` chosen by `calibrate` (or loaded with the model), or `None`."""
        return self._similarity_state().calibration

    def _default_index_metric(self):
        from keras_triplet.metrics.distances import METRICS

        distance = getattr(getattr(self, "loss", None), "distance", None)
        return distance if distance in METRICS else "euclidean"

    def _require_index(self, labels=False):
        index = self._similarity_state().index
        if index is None or len(index) == 0:
            raise ValueError("The model has no index: call model.index(x, y) first.")
        if labels and index.labels is None:
            raise ValueError(
                "The model's index has no labels: index with model.index(x, y) to calibrate or match."
            )
        return index

    # ---------------------------------------------------------------- index
    def index(self, x, y=None, data=None, batch_size=256, metric=None, backend=None, verbose=0):
        """Embeds `x` and adds it to the model's index, with labels `y` and `data`.

        Args:
            x: inputs (anything `model.embed` accepts).
            y: `[N]` labels (integers or strings), or None; give them on every call or on none.
            data: `[N, ...]` NumPy array of numbers or strings stored with each item and
                returned by `lookup` (e.g. file names, or the inputs themselves), or None.
            batch_size, verbose: of the embedding pass.
            metric: the index's distance, on the first call only (default: the compiled
                loss's distance when the index supports it, else `"euclidean"`).
            backend: `"exact"` (default) or `"faiss"`, on the first call only.
        """
        from keras_triplet.index import EmbeddingIndex

        state = self._similarity_state()
        if state.index is not None and len(state.index):
            if metric is not None and metric != state.index.metric:
                raise ValueError(
                    f"The index already uses metric {state.index.metric!r}; call "
                    "model.reset_index() before indexing with another metric."
                )
            if backend is not None and backend != state.index.backend:
                raise ValueError(
                    f"The index already uses backend {state.index.backend!r}; call "
                    "model.reset_index() before indexing with another backend."
                )
        embeddings = self.embed(x, batch_size=batch_size, verbose=verbose)
        n = embeddings.shape[0]
        if data is not None:
            data = _check_data(data, n)
        if state.index is not None and len(state.index):
            if (data is None) != (state.data is None):
                raise ValueError(
                    "The index "
                    + (
                        "holds data: give `data` on every call."
                        if data is None
                        else "has no data: give `data` on every call or on none."
                    )
                )
            if data is not None and data.shape[1:] != state.data.shape[1:]:
                raise ValueError(
                    f"`data` rows have shape {data.shape[1:]} but the index holds rows of shape "
                    f"{state.data.shape[1:]}."
                )
            if data is not None and (data.dtype.kind in "US") != (state.data.dtype.kind in "US"):
                raise ValueError(
                    f"`data` has dtype {data.dtype} but the index holds data of dtype "
                    f"{state.data.dtype}; use strings on every call or numbers on every call."
                )
        else:
            state.index = EmbeddingIndex(
                metric=metric or self._default_index_metric(), backend=backend or "exact"
            )
            state.data = None
        if data is not None and state.data is not None:
            data = np.concatenate([state.data, data])
        state.index.add(embeddings, labels=y)  # checks everything before changing the index
        if data is not None:
            state.data = data

    def lookup(self, x, k=5, batch_size=256, verbose=0):
        """The `k` nearest indexed items of each input of `x`, as `Lookups`.

        `lookups.distances`, `.ids`, `.labels`, `.data` are arrays `[Q, k, ...]`;
        `lookups[q]` is query `q`'s list of `Neighbor(rank, id, distance, label, data)`.
        `k` is capped at the index size.
        """
        index = self._require_index()
        queries = self.embed(x, batch_size=batch_size, verbose=verbose)
        distances, ids, labels = index.search(queries, k)
        data = self._similarity_state().data
        return Lookups(distances, ids, labels, None if data is None else data[ids])

    def reset_index(self):
        """Empties the index and its data (the calibration is kept: recalibrate if the new
        index differs)."""
        state = self._similarity_state()
        state.index = None
        state.data = None

    def index_summary(self, print_fn=print):
        """Prints (with `print_fn`; None: silent) and returns a dict describing the index
        (`size`, `dim`, `metric`, `backend`, `num_labels`, `data_shape`) and the
        calibration's cutpoints (`{name: distance}`)."""
        state = self._similarity_state()
        index = state.index
        summary = {
            "size": 0 if index is None else len(index),
            "dim": None if index is None else index.dim,
            "metric": None if index is None else index.metric,
            "backend": None if index is None else index.backend,
            "num_labels": (
                None if index is None or index.labels is None else int(np.unique(index.labels).size)
            ),
            "data_shape": None if state.data is None else tuple(state.data.shape),
            "cutpoints": (
                {}
                if state.calibration is None
                else {k: v["distance"] for k, v in state.calibration.cutpoints.items()}
            ),
        }
        if print_fn is not None:
            for key, value in summary.items():
                print_fn(f"{key:>11}: {value}")
        return summary

    # ---------------------------------------------------------------- calibration and matching
    def _nearest(self, x, batch_size, verbose):
        index = self._require_index(labels=True)
        distances, _, labels = index.search(self.embed(x, batch_size=batch_size, verbose=verbose), 1)
        return distances[:, 0], labels[:, 0]

    def _query_labels(self, y, n):
        from keras_triplet._validation import check_label_array

        y = check_label_array(y, n, name="`y`", items="`x`", strings=True)
        if (y.dtype.kind == "U") != (self.similarity_index.labels.dtype.kind == "U"):
            raise ValueError(
                "`y` and the index's labels must be of one kind (both integers or both strings)."
            )
        return y

    def calibrate(
        self,
        x,
        y,
        thresholds_targets=None,
        metric="f1",
        batch_size=256,
        verbose=0,
    ):
        """Chooses distance thresholds for `match` on a calibration set `(x, y)`.

        Each input of `x` is matched to its nearest indexed item; it is correct when that
        item's label is `y`'s. Over every threshold (each distinct nearest distance), the
        cutpoint `"optimal"` maximises `metric` (`"f1"`, `"precision"`, `"recall"` or
        `"accuracy"`), and each `thresholds_targets` entry (default
        `{"precision": 0.95}`; also `"recall"`, `"f1"`, `"accuracy"`, and upper bounds
        `"far"`, `"frr"`) gets the threshold that meets it (see
        `keras_triplet.metrics.choose_cutpoints`; unmet targets are warned about and left
        out). The calibration set should not be the indexed items themselves (each would
        find itself at distance 0).

        Returns the `Calibration`, also kept on the model (`model.calibration`) and saved
        with it.
        """
        from keras_triplet.metrics.matching import choose_cutpoints, matching_curve

        distances, nearest = self._nearest(x, batch_size, verbose)
        y = self._query_labels(y, distances.shape[0])
        targets = {"precision": 0.95} if thresholds_targets is None else dict(thresholds_targets)
        thresholds, curve = matching_curve(distances, nearest == y)
        cutpoints, unmet = choose_cutpoints(thresholds, curve, metric, targets)
        if unmet:
            warnings.warn(
                "No threshold meets the calibration target(s) "
                + ", ".join(f"{name} {targets[name]}" for name in unmet)
                + " on this calibration set; they get no cutpoint.",
                stacklevel=2,
            )
        calibration = Calibration(metric, cutpoints, unmet, thresholds, curve)
        self._similarity_state().calibration = calibration
        if verbose:
            for name, cut in cutpoints.items():
                values = " ".join(f"{k}={v:.4f}" for k, v in cut.items())
                print(f"{name:>10}: {values}")
        return calibration

    def _threshold(self, cutpoint):
        if isinstance(cutpoint, str):
            calibration = self._similarity_state().calibration
            if calibration is None:
                raise ValueError(
                    f"cutpoint={cutpoint!r} needs a calibration: call model.calibrate(x, y) first, "
                    "or pass a distance (cutpoint=0.5)."
                )
            if cutpoint not in calibration.cutpoints:
                raise ValueError(
                    f"Unknown cutpoint {cutpoint!r}; the calibration has {sorted(calibration.cutpoints)}."
                )
            return calibration.cutpoints[cutpoint]["distance"]
        threshold = float(cutpoint)
        if np.isnan(threshold):
            raise ValueError("`cutpoint` is NaN; give a cutpoint name or a distance.")
        return threshold

    def match(self, x, cutpoint="optimal", unknown_label=None, batch_size=256, verbose=0):
        """The label of each input's nearest indexed item, or `unknown_label` when it is
        farther than the cutpoint's distance: a NumPy array `[N]`.

        Args:
            cutpoint: a name in `model.calibration.cutpoints` (`"optimal"`, `"precision"`,
                ...) or a distance.
            unknown_label: what unmatched inputs get; default `-1` for integer labels,
                `"unknown"` for string labels (pick a value no class uses).
        """
        threshold = self._threshold(cutpoint)
        distances, nearest = self._nearest(x, batch_size, verbose)
        strings = nearest.dtype.kind == "U"
        if unknown_label is None:
            unknown_label = "unknown" if strings else -1
        if isinstance(unknown_label, str) != strings:
            raise ValueError(
                f"`unknown_label` must be {'a string' if strings else 'an integer'} like the "
                f"index's labels; got {unknown_label!r}."
            )
        return np.where(distances <= threshold, nearest, unknown_label)

    def evaluate_matching(self, x, y, cutpoint="optimal", batch_size=256, verbose=0):
        """Precision, recall, F1, accuracy, FAR, FRR (and the counts `tp`, `fp`, `fn`,
        `tn`) of `match` on `(x, y)` at `cutpoint` (a name or a distance), with the
        `distance` used (see `keras_triplet.metrics.matching`)."""
        from keras_triplet.metrics.matching import matching_metrics

        threshold = self._threshold(cutpoint)
        distances, nearest = self._nearest(x, batch_size, verbose)
        y = self._query_labels(y, distances.shape[0])
        out = matching_metrics(distances, nearest == y, threshold)
        out["distance"] = threshold
        return out

    # ---------------------------------------------------------------- saving (Keras hooks)
    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the model (and its index and calibration) as Keras does, writing a local
        `.keras` file atomically: to a temporary file next to it, then renamed over it,
        so a crash mid-save leaves the previous file intact."""
        path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
        atomic = (
            path is not None
            and path.endswith(".keras")
            and zipped in (None, True)
            and "://" not in path
            and (overwrite or not os.path.exists(path))
        )
        if not atomic:
            return super().save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)
        with atomic_path(path, suffix=".keras") as tmp:
            return super().save(tmp, overwrite=True, zipped=zipped, **kwargs)

    def save_assets(self, dir_path):
        """Keras' hook: writes the index, its data and the calibration (if any) into the
        model file's assets."""
        state = self._similarity_state()
        if state.empty():
            return
        body = {"format_version": STATE_VERSION, "index": None, "data": None, "calibration": None}
        index = state.index
        if index is not None:
            index_path = os.path.join(dir_path, INDEX_FILE)
            index.save(index_path)
            body["index"] = {
                "file": INDEX_FILE,
                "sha256": _sha256_file(index_path),
                "metric": index.metric,
                "backend": index.backend,
                "size": len(index),
                "dim": index.dim,
            }
            if state.data is not None:
                data_path = os.path.join(dir_path, DATA_FILE)
                with atomic_write(data_path, "wb") as f:
                    np.savez(f, data=state.data)
                body["data"] = {"file": DATA_FILE, "sha256": _sha256_file(data_path)}
        if state.calibration is not None:
            body["calibration"] = state.calibration.to_json()
        body["checksum"] = _sha256_json(body)
        with atomic_write(os.path.join(dir_path, STATE_FILE), "w") as f:
            json.dump(body, f, indent=1, sort_keys=True)

    def load_assets(self, dir_path):
        """Keras' hook: restores and checks what `save_assets` wrote (a model file without
        it loads with no index)."""
        state = self._similarity_state()
        state.index = state.data = state.calibration = None
        path = os.path.join(dir_path, STATE_FILE)
        if not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf-8") as f:
                body = json.load(f)
            stored = body.pop("checksum")
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise _bad_state(f"{STATE_FILE} is not valid ({type(e).__name__}: {e}).") from None
        if not isinstance(body.get("format_version"), int) or body["format_version"] > STATE_VERSION:
            raise _bad_state(
                f"{STATE_FILE} has format version {body.get('format_version')!r}; this keras_triplet "
                f"reads up to {STATE_VERSION} (upgrade keras_triplet)."
            )
        if stored != _sha256_json(body):
            raise _bad_state(f"{STATE_FILE} failed its SHA-256 checksum (modified after it was written).")
        index_info, data_info = body.get("index"), body.get("data")
        index = data = None
        if index_info is not None:
            index = self._load_index_asset(dir_path, index_info)
        if data_info is not None:
            data_path = self._checked_asset(dir_path, data_info, "data")
            try:
                with np.load(data_path, allow_pickle=False) as archive:
                    data = archive["data"]
            except (ValueError, OSError, KeyError) as e:
                raise _bad_state(f"{DATA_FILE} cannot be read ({type(e).__name__}: {e}).") from None
            if index is None or data.shape[:1] != (len(index),):
                raise _bad_state(
                    f"{DATA_FILE} holds {data.shape[:1]} rows for an index of {0 if index is None else len(index)} items."
                )
        calibration = body.get("calibration")
        state.index, state.data = index, data
        state.calibration = None if calibration is None else Calibration.from_json(calibration)

    @staticmethod
    def _checked_asset(dir_path, info, what):
        path = os.path.join(dir_path, str(info.get("file")))
        if os.path.basename(path) not in (INDEX_FILE, DATA_FILE) or not os.path.exists(path):
            raise _bad_state(f"the {what} file {info.get('file')!r} is missing from the model file.")
        if _sha256_file(path) != info.get("sha256"):
            raise _bad_state(
                f"{os.path.basename(path)} is not the {what} file saved with this model (its SHA-256 "
                "differs from the one recorded in similarity.json: swapped, modified or corrupted)."
            )
        return path

    def _load_index_asset(self, dir_path, info):
        from keras_triplet.index import EmbeddingIndex

        path = self._checked_asset(dir_path, info, "index")
        backend = info.get("backend", "exact")
        if backend == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                warnings.warn(
                    "The saved index used faiss, which is not installed here: searching exactly instead.",
                    stacklevel=2,
                )
                backend = "exact"
        index = EmbeddingIndex.load(path, backend=backend)
        if (
            len(index) != info.get("size")
            or index.dim != info.get("dim")
            or index.metric != info.get("metric")
        ):
            raise _bad_state(
                f"{INDEX_FILE} holds {len(index)} embeddings of dimension {index.dim} ({index.metric}) but "
                f"similarity.json records {info.get('size')} of dimension {info.get('dim')} ({info.get('metric')})."
            )
        dim = self._embedding_dim()
        if dim is not None and index.dim is not None and index.dim != dim:
            raise _bad_state(
                f"the index holds embeddings of dimension {index.dim} but this model embeds to dimension {dim}."
            )
        return index

    def _embedding_dim(self):
        """The model's embedding dimension when the embedder knows its output shape, else None."""
        try:
            shape = self.embedder.output_shape
        except (AttributeError, ValueError, RuntimeError):
            return None
        return shape[-1] if isinstance(shape, tuple) and shape and isinstance(shape[-1], int) else None
