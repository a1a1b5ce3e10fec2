"""The audio app's figures: training curves, and the held-out classes' distance
histograms, ROC (model and MFCC baseline), 2-D projection and nearest neighbours."""

import os

import numpy as np

from apps.audio_similarity import features as F

# What each logged series is, for the y axis of its panel.
Y_LABELS = {
    "loss": "triplet loss",
    "active_fraction": "fraction of triplets with loss > 0",
    "hard_fraction": "fraction with d(a, n) < d(a, p)",
    "positive_distance": "mean d(anchor, positive)",
    "negative_distance": "mean d(anchor, negative)",
    "embedding_norm": "mean L2 norm",
}


def plot_history(history, path, loss_label="triplet loss"):
    """Loss and mining statistics per epoch, one panel each (PNG): training in solid
    lines, validation (the `val_` series, when the run had validation data) dashed;
    `loss_label` names the loss on its panel's y axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [n for n in Y_LABELS if n in history]
    fig = Figure(figsize=(3.2 * len(names), 2.9), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, style, label in ((name, "-", "training"), ("val_" + name, "--", "validation")):
            values = history.get(key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", markersize=3, label=label)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_label if name == "loss" else Y_LABELS[name])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if i == 0 and any("val_" + n in history for n in names):
            ax.legend(fontsize="small")
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
    # FAR on a log scale: the useful region (low false accepts) is the left edge.
    fig = plots.roc_curve_plot(
        d, same, log_far=True, title="held-out classes: verification ROC", label="triplet CNN"
    )
    if baseline is not None:
        _add_roc(fig, baseline, fs.labels)
    fig.savefig(p, dpi=100)
    out.append(p)
    p = os.path.join(folder, "projection.png")
    plots.embedding_projection(
        emb, fs.labels, title="held-out classes (PCA of embeddings)", class_names=fs.class_names, path=p
    )
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
