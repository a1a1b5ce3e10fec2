"""The searchable index of a collection: build it from embedded clips, save it with the
side file that names its model, answer queries.

`INDEX` is a `keras_triplet.index.EmbeddingIndex` file (labels: class names, ids: the
absolute paths of the clips); `INDEX.json` names the model that embedded them, so
`query` can embed new files the same way.

`index_folder` builds the index of a large collection by chunks of files, so memory stays
bounded (one chunk's spectrograms at a time, plus the embeddings: 256 bytes a clip at 64
dimensions), and resumably: each finished chunk is written at once to `INDEX.parts/`
(atomically, named by a hash of the model, the feature settings and the chunk's files
with their sizes and modification times), so a run killed at any point, even by
`kill -9`, redoes at most the chunk it was in when run again (whose spectrograms come
back from the feature cache). The parts are merged into `INDEX` at the end and removed.
"""

import hashlib
import io
import json
import os
import time

import numpy as np

from apps._common import SkipReport, fail, read_json, sha256, side_path, write_bytes, write_json
from apps.audio_similarity import features as F
from apps.audio_similarity.data import scan_folder

DEFAULT_CHUNK = 1000  # files per chunk: ~25 MB of spectrograms for 1 s clips


def build_index(emb, fs):
    """An `EmbeddingIndex` of the clips of `fs` (`FeatureSet`) embedded as `emb`."""
    from keras_triplet.index import EmbeddingIndex

    idx = EmbeddingIndex(metric="euclidean")
    idx.add(
        emb,
        labels=np.array(fs.label_names(), dtype=str),
        ids=np.array([os.path.abspath(p) for p in fs.paths], dtype=str),
    )
    return idx


def save_index(idx, path, model_path, data_dir):
    """Saves `idx` to `path` and `path.json` (its model, data folder and size)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    idx.save(path)
    write_json(
        side_path(path),
        {"model": os.path.abspath(model_path), "data": os.path.abspath(data_dir), "size": len(idx)},
    )


def load_index(path, model_path=None):
    """`(index, model_path)`: the index and the model named in its side file (unless
    `model_path` is given). Searches use faiss when it is installed (exact NumPy search
    otherwise; both give the same neighbours up to float32 rounding)."""
    from keras_triplet.index import EmbeddingIndex

    rebuild = "rebuild it with `index DATA --model MODEL.keras --out INDEX`."
    if not os.path.exists(path):
        fail(f"index {path!r} not found (build one with `index`).")
    try:
        import faiss  # noqa: F401

        backend = "faiss"
    except ImportError:
        backend = "exact"
    try:
        idx = EmbeddingIndex.load(path, backend=backend)
    except (OSError, ValueError) as e:  # a one-line message: truncated, corrupt, tampered
        fail(f"{e} Restore the file or {rebuild}")
    if model_path is None:
        if not os.path.exists(side_path(path)):
            fail(f"{side_path(path)} (which names the index's model) is missing; pass --model MODEL.keras.")
        try:
            model_path = read_json(side_path(path))["model"]
        except (ValueError, KeyError, TypeError):
            fail(
                f"{side_path(path)} is corrupt (no model named in it); pass --model MODEL.keras or {rebuild}"
            )
    return idx, model_path


def query_files(model, settings, frames, idx, files, top, cache_dir=None):
    """`(results, report)`: for each usable query file, its ranked neighbours."""
    fs = F.extract_features(
        list(files), ["query"] * len(files), settings, cache_dir=cache_dir, progress=False
    )
    results = []
    if len(fs):
        emb = F.embed_clips(model, fs.features, frames)
        d, ids, labels = idx.search(emb, top)
        for q, path in enumerate(fs.paths):
            results.append(
                {
                    "query": path,
                    "neighbors": [
                        {
                            "rank": r + 1,
                            "distance": float(d[q, r]),
                            "file": str(ids[q, r]),
                            "label": None if labels is None else str(labels[q, r]),
                        }
                        for r in range(d.shape[1])
                    ],
                }
            )
    return results, fs.report


# ------------------------------------------------------------------ a large collection


def parts_dir(index_path):
    """`INDEX.parts`: the finished chunks of an indexing run that has not ended yet."""
    return os.fspath(index_path) + ".parts"


def _chunk_key(model_digest, settings, paths):
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_digest, "features": settings.to_dict()}, sort_keys=True).encode())
    for path in paths:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.abspath(path)}\0{stamp}\n".encode())
    return h.hexdigest()[:24]


def _write_part(path, emb, fs, report):
    buffer = io.BytesIO()
    np.savez(
        buffer,
        embeddings=np.asarray(emb, np.float32).reshape(len(fs), -1),
        labels=np.array(fs.label_names(), dtype=str),
        ids=np.array([os.path.abspath(p) for p in fs.paths], dtype=str),
        skipped=np.array([list(r) for r in report.rows], dtype=str).reshape(-1, 2),
    )
    write_bytes(path, buffer.getvalue())


def _read_part(path):
    """The arrays of a finished chunk, or None when the file is damaged (redo it)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("embeddings", "labels", "ids", "skipped")}
    except Exception:  # noqa: BLE001 - any unreadable part is recomputed
        return None


def index_folder(
    model, settings, frames, model_path, data_dir, out, chunk=DEFAULT_CHUNK, cache_dir=None, progress=True
):
    """Embeds every usable file of `data_dir` by chunks of `chunk` files, resuming from
    the finished chunks of an interrupted run (see the module docstring), and saves the
    index to `out`. Returns `(index, report, stats)`; `stats` counts the files
    `resumed` (in finished chunks), `extracted` and `cached` (spectrograms computed now
    or read from the feature cache) and the `seconds` taken."""
    from tqdm.auto import tqdm

    from keras_triplet.index import EmbeddingIndex

    t0 = time.perf_counter()
    paths, names = scan_folder(data_dir)
    if not paths:
        fail(
            f"no audio files found under {data_dir!r}. Expected DATA/<class>/<file> "
            "with .wav/.flac/.ogg/.mp3 files (one sub-folder per class)."
        )
    chunk = max(1, int(chunk))
    parts = parts_dir(out)
    os.makedirs(parts, exist_ok=True)
    digest = sha256(model_path)
    stats = {"files": len(paths), "resumed": 0, "extracted": 0, "cached": 0}
    keys = []
    bar = tqdm(total=len(paths), desc="index", unit="file", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(paths), chunk):
        chunk_paths, chunk_names = paths[start : start + chunk], names[start : start + chunk]
        key = _chunk_key(digest, settings, chunk_paths)
        keys.append(key)
        part = os.path.join(parts, key + ".npz")
        if os.path.exists(part) and _read_part(part) is not None:
            stats["resumed"] += len(chunk_paths)
        else:
            fs = F.extract_features(chunk_paths, chunk_names, settings, cache_dir=cache_dir, progress=False)
            emb = F.embed_clips(model, fs.features, frames) if len(fs) else np.zeros((0, 0), np.float32)
            _write_part(part, emb, fs, fs.report)
            stats["extracted"] += fs.computed
            stats["cached"] += len(fs) - fs.computed
        bar.update(len(chunk_paths))
    bar.close()

    # Merge: only the embeddings, labels and ids of each chunk (no spectrograms).
    index, report = EmbeddingIndex(metric="euclidean"), SkipReport()
    for key in keys:
        arrays = _read_part(os.path.join(parts, key + ".npz"))
        if arrays is None:
            fail(f"{parts}/{key}.npz became unreadable during the run; run `index` again.")
        if len(arrays["ids"]):
            index.add(arrays["embeddings"], labels=arrays["labels"], ids=arrays["ids"])
        report.extend(tuple(r) for r in arrays["skipped"].tolist())
    if len(index) == 0:
        return index, report, stats
    save_index(index, out, model_path, data_dir)
    for name in os.listdir(parts):  # only after the index is safely written
        os.remove(os.path.join(parts, name))
    os.rmdir(parts)
    stats["seconds"] = time.perf_counter() - t0
    return index, report, stats
