"""The searchable index of a collection: build it from embedded clips, save it with the
side file that names its model, answer queries.

`INDEX` is a `keras_triplet.index.EmbeddingIndex` file (labels: class names, ids: the
absolute paths of the clips); `INDEX.json` names the model that embedded them, so
`query` can embed new files the same way.
"""

import os

import numpy as np

from apps._common import fail, read_json, side_path, write_json
from apps.audio_similarity import features as F


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
    `model_path` is given)."""
    from keras_triplet.index import EmbeddingIndex

    rebuild = "rebuild it with `index DATA --model MODEL.keras --out INDEX`."
    if not os.path.exists(path):
        fail(f"index {path!r} not found (build one with `index`).")
    try:
        idx = EmbeddingIndex.load(path)
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
