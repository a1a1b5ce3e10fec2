"""The signature app's figures: ROC and DET curves (skilled and random forgeries) and
the score histograms of the test writers."""

import functools
import os

import numpy as np


def write_plots(scores, folder, threshold=None):
    """ROC and DET curves and score histograms as PNG files in `folder` (the histograms
    with the decision `threshold`, when given); returns the paths."""
    from keras_triplet import plots

    os.makedirs(folder, exist_ok=True)
    paths = []
    for kind in ("skilled", "random"):
        if len(scores[kind]) == 0:
            continue
        d = np.r_[scores["genuine"], scores[kind]]
        same = np.r_[np.ones(len(scores["genuine"]), bool), np.zeros(len(scores[kind]), bool)]
        # FAR on a log scale in the ROC: the useful region (few false accepts) is its left edge.
        roc = functools.partial(plots.roc_curve_plot, log_far=True)
        for name, fn in (("roc", roc), ("det", plots.det_curve_plot)):
            path = os.path.join(folder, f"{name}_{kind}.png")
            fn(
                d,
                same,
                title=f"{name.upper()}: genuine vs {kind} forgeries (test writers)",
                label=f"{kind} forgeries",
                path=path,
            )
            paths.append(path)
    path = os.path.join(folder, "score_histograms.png")
    score_histograms(scores, path, threshold)
    paths.append(path)
    return paths


def score_histograms(scores, path, threshold=None):
    """Histograms of the genuine, skilled-forgery and random-forgery scores (PNG), with a
    vertical line at the decision `threshold` (accept at or below it) when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    allv = np.r_[scores["genuine"], scores["skilled"], scores["random"]]
    edges = np.histogram_bin_edges(allv, bins=40)
    for kind, color in (("genuine", "tab:green"), ("skilled", "tab:red"), ("random", "tab:gray")):
        if len(scores[kind]):
            ax.hist(
                scores[kind],
                bins=edges,
                density=True,
                alpha=0.5,
                color=color,
                label=f"{kind} (n={len(scores[kind])})",
            )
    if threshold is not None:
        ax.axvline(
            threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g} (accept left of it)"
        )
    ax.set_xlabel("score (distance to the writer's references)")
    ax.set_ylabel("density")
    ax.set_title("Verification scores (test writers)")
    ax.legend()
    fig.savefig(path, dpi=100)
