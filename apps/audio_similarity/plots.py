"""The audio app's figures: training curves, and the held-out classes' distance
histograms, ROC (model and MFCC baseline), 2-D projection and nearest neighbours."""

import os

import numpy as np

from apps.audio_similarity import features as F


def plot_history(history, path):
    """Loss and mining statistics per epoch, one panel each (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [
        n
        for n in (
            "loss",
            "active_fraction",
            "hard_fraction",
            "positive_distance",
            "negative_distance",
            "embedding_norm",
        )
        if n in history
    ]
    fig = Figure(figsize=(3.2 * len(names), 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        values = history[name]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    return path


def make_plots(emb, fs, idx, picks, frames, folder, baseline=None):
    """Distance histograms, ROC (model and baseline), 2-D projection, a neighbours grid;
    returns the PNG paths."""
    from keras_triplet import plots
    from keras_triplet.metrics import pair_distances

    os.makedirs(folder, exist_ok=True)
    out = []
    p = os.path.join(folder, "distance_histograms.png")
    plots.distance_histograms(emb, fs.labels, title="held-out classes: pair distances", path=p)
    out.append(p)
    p = os.path.join(folder, "roc.png")
    d, same = pair_distances(emb, fs.labels)
    fig = plots.roc_curve_plot(d, same, title="held-out classes: verification ROC", label="triplet CNN")
    if baseline is not None:
        _add_roc(fig, baseline, fs.labels)
    fig.savefig(p, dpi=100)
    out.append(p)
    p = os.path.join(folder, "projection.png")
    plots.embedding_projection(emb, fs.labels, title="held-out classes (PCA of embeddings)", path=p)
    out.append(p)
    p = os.path.join(folder, "neighbors.png")
    d, ids, labels = idx.search(emb[picks], 5)
    pos = {os.path.abspath(path): i for i, path in enumerate(fs.paths)}

    def show(i):  # low bands at the bottom
        return F.fit_window(fs.features[i], frames).T[::-1]

    plots.neighbors_grid(
        [show(q) for q in picks],
        [[show(pos[str(i)]) for i in row[1:]] for row in ids],
        query_labels=[fs.label_names()[q] for q in picks],
        neighbor_labels=[list(row[1:]) for row in labels],
        distances=d[:, 1:],
        cmap="magma",
        cell_size=2.4,
        title="query -> nearest held-out clips (log-mel)",
        path=p,
    )
    out.append(p)
    return out


def _add_roc(fig, stats, labels):
    from keras_triplet.metrics import pair_distances, roc_curve

    d, same = pair_distances(stats, labels, metric="cosine")
    far, tar, _ = roc_curve(d, same)
    ax = fig.axes[0]
    ax.plot(far, tar, linestyle="--", label="MFCC mean+std (cosine)")
    ax.legend(loc="lower right", fontsize="small")
