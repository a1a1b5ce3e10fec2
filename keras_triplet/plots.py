"""Figures for metric learning: distance histograms, ROC / DET curves, 2-D projections and
nearest-neighbour grids.

Every function builds a `matplotlib.figure.Figure` on the Agg canvas (it never touches
`pyplot`'s global state or the interactive backend, so it works on headless machines and
in threads), returns it, and also writes a PNG when `path` is given (atomically: the
previous file or the new one, never half a file). In a notebook, the
returned figure displays itself.

Needs matplotlib (`pip install matplotlib`); `embedding_projection` also needs
scikit-learn, and `det_curve_plot` SciPy (installed with scikit-learn).
"""

import numpy as np

from keras_triplet._io import atomic_write
from keras_triplet._validation import check_embedding_array, check_label_array
from keras_triplet.metrics.verification import (
    DEFAULT_MAX_PAIRS,
    _eer_from_curve,
    pair_distances,
    roc_curve,
)


def _figure(figsize):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("keras_triplet.plots needs matplotlib: `pip install matplotlib`.") from e
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path, dpi):
    if path is not None:  # atomically: a crash never leaves half a PNG
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=dpi, format="png")
    return fig


def distance_histograms(
    embeddings,
    labels,
    metric="euclidean",
    bins=50,
    max_pairs=DEFAULT_MAX_PAIRS,
    seed=0,
    mark_eer=True,
    title=None,
    path=None,
    dpi=100,
):
    """Histograms of same-class (positive) and different-class (negative) pair distances.

    Pairs as in `keras_triplet.metrics.pair_distances` (every pair `i < j`, sampled above
    `max_pairs`). Both histograms are normalised to unit area so the classes are comparable
    whatever their pair counts; the legend gives the counts and means. With
    `mark_eer=True` a vertical line marks the EER threshold.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 4)); y = np.arange(60) % 3
    >>> fig = distance_histograms(x, y)
    >>> len(fig.axes)
    1
    """
    d, same = pair_distances(embeddings, labels, metric, max_pairs, seed)
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(d, bins=bins)
    for mask, name, color in (
        (same, "positive (same class)", "tab:green"),
        (~same, "negative (different class)", "tab:red"),
    ):
        if np.any(mask):
            ax.hist(
                d[mask],
                bins=edges,
                density=True,
                alpha=0.55,
                color=color,
                label=f"{name}: n={int(mask.sum())}, mean={d[mask].mean():.3g}",
            )
    if mark_eer and np.any(same) and np.any(~same):
        eer, threshold = _eer_from_curve(*roc_curve(d, same))
        ax.axvline(
            threshold,
            color="black",
            linestyle="--",
            label=f"EER threshold {threshold:.3g} (EER {100 * eer:.2f}%)",
        )
    ax.set_xlabel(f"{metric} distance")
    ax.set_ylabel("density")
    ax.set_title(title or "Pair distances")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # headroom for the legend
    ax.legend(fontsize="small", loc="upper right")
    return _finish(fig, path, dpi)


def roc_curve_plot(distances, is_same, log_far=False, title=None, label=None, path=None, dpi=100):
    """ROC curve (TAR against FAR) of pair distances, with the EER point marked.

    `distances` and `is_same` as in `keras_triplet.metrics.roc_curve` (get them from
    `keras_triplet.metrics.pair_distances(embeddings, labels)`). The legend gives the AUC
    and the EER; the dotted line is `TAR = 1 − FAR`, where the EER lies. `log_far=True`
    draws FAR on a log scale (to read TAR at low FAR).

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> d = np.r_[rng.normal(1, 0.3, 200), rng.normal(2, 0.3, 800)]
    >>> fig = roc_curve_plot(d, np.r_[np.ones(200, bool), np.zeros(800, bool)])
    >>> fig.axes[0].get_xlabel()
    'false accept rate (FAR)'
    """
    far, tar, thresholds = roc_curve(distances, is_same)
    eer, threshold = _eer_from_curve(far, tar, thresholds)
    auc = float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))
    fig = _figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot(far, tar, color="tab:blue", label=f"{label + ': ' if label else ''}AUC = {auc:.4f}")
    ax.plot([0, 1], [1, 0], color="gray", linestyle=":", linewidth=1)
    ax.plot([eer], [1 - eer], "o", color="tab:red", label=f"EER = {100 * eer:.2f}% at d = {threshold:.3g}")
    if log_far:
        positive = far[far > 0]
        ax.set_xscale("log")
        ax.set_xlim(max(positive.min() if positive.size else 1e-4, 1e-6), 1.0)
    else:
        ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title or "ROC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _finish(fig, path, dpi)


def det_curve_plot(distances, is_same, title=None, label=None, path=None, dpi=100):
    """DET curve (FRR against FAR on normal-deviate axes), with the EER point marked.

    The standard detection-error trade-off plot of speaker / face verification: both
    axes use the probit scale (`scipy.stats.norm.ppf`), ticks in percent, up to 99.9%;
    a rate of 0 is drawn at 0.001%, on the chart's edge at a tick labelled 0 (so a
    perfectly separating model draws its curve along the edges and its EER point in the
    corner, with a note), and a rate of 1 at 99.999%, off the top.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> d = np.r_[rng.normal(1, 0.3, 200), rng.normal(2, 0.3, 800)]
    >>> fig = det_curve_plot(d, np.r_[np.ones(200, bool), np.zeros(800, bool)])
    >>> fig.axes[0].get_ylabel()
    'false reject rate (FRR, %)'
    """
    from scipy.stats import norm

    far, tar, thresholds = roc_curve(distances, is_same)
    eer, threshold = _eer_from_curve(far, tar, thresholds)
    frr = 1.0 - tar
    lo, hi = 1e-5, 1 - 1e-5  # rates of exactly 0 (or 1) are drawn there

    def probit(p):
        return norm.ppf(np.clip(p, lo, hi))

    fig = _figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot(probit(far), probit(frr), color="tab:blue", label=label or "DET")
    ax.plot(probit([lo, hi]), probit([lo, hi]), color="gray", linestyle=":", linewidth=1)
    ax.plot(
        probit([eer]),
        probit([eer]),
        "o",
        color="tab:red",
        label=f"EER = {100 * eer:.2f}% at d = {threshold:.3g}",
    )
    ticks = np.array([0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99, 0.999])
    # Show the ticks that cover the curve (plus one on each side).
    used = np.r_[far, frr]
    used = used[(used > 0) & (used < 1)]
    low = used.min() if used.size else 0.01
    keep = ticks >= ticks[max(np.searchsorted(ticks, low) - 1, 0)]
    ticks = ticks[keep]
    labels = [f"{100 * t:g}" for t in ticks]
    # Rates of 0 sit on the clipped edge `lo`: keep it on the chart, labelled "0", or a
    # perfectly separating model (EER = 0) would draw an empty chart.
    if eer == 0 or np.any(np.r_[far, frr] == 0):
        ticks, labels = np.r_[lo, ticks], ["0", *labels]
    for set_ticks, set_labels in ((ax.set_xticks, ax.set_xticklabels), (ax.set_yticks, ax.set_yticklabels)):
        set_ticks(probit(ticks))
        set_labels(labels)
    margin = 0.15  # probit units: the curve and the EER point on the edge stay visible
    ax.set_xlim(probit(ticks[0]) - margin, probit(0.999))
    ax.set_ylim(probit(ticks[0]) - margin, probit(0.999))
    ax.set_xlabel("false accept rate (FAR, %)")
    ax.set_ylabel("false reject rate (FRR, %)")
    ax.set_title(title or "DET")
    ax.grid(alpha=0.3)
    if eer == 0:  # the curve runs along the lower and left edges: keep the corner clear
        ax.legend(loc="upper right", fontsize="small", title="no errors: classes perfectly separated")
    else:
        ax.legend(loc="lower left", fontsize="small")
    return _finish(fig, path, dpi)


def embedding_projection(
    embeddings,
    labels,
    method="pca",
    max_points=5000,
    seed=0,
    perplexity=30.0,
    tsne_kwargs=None,
    title=None,
    path=None,
    dpi=100,
    class_names=None,
):
    """2-D projection of embeddings (PCA or t-SNE), one colour per class.

    `method="pca"` uses `sklearn.decomposition.PCA`, `"tsne"` `sklearn.manifold.TSNE`
    (slow: above a few thousand points keep `max_points` small). Above `max_points`
    points a random subset (seeded by `seed`) is drawn. The legend lists the classes when
    there are at most 20 (outside the axes, on the right). `tsne_kwargs` go to `TSNE`
    (e.g. `{"max_iter": 250}` for a quicker, rougher map). `class_names` names the
    classes in the legend: a sequence indexed by label or a `{label: name}` dict.
    The axes are the two principal components (with the share of the variance each
    explains) or the two t-SNE coordinates (which have no units).

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 8)); y = np.arange(50) % 5
    >>> fig = embedding_projection(x, y, method="pca", class_names=["a", "b", "c", "d", "e"])
    >>> len(fig.axes[0].collections), fig.axes[0].get_legend().get_texts()[0].get_text()
    (5, 'a')
    >>> fig.axes[0].get_xlabel()[:4]
    'PC 1'
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"`method` must be 'pca' or 'tsne'; got {method!r}.")
    x = check_embedding_array(embeddings)
    y = check_label_array(labels, len(x))
    if x.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x, y = x[keep], y[keep]
    axis_names = ("t-SNE 1", "t-SNE 2")
    if x.shape[1] <= 2:
        xy = np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
        axis_names = ("dimension 1", "dimension 2")
    elif method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        xy = pca.fit_transform(x)
        axis_names = tuple(
            f"PC {i + 1} ({100 * share:.0f}% of variance)"
            for i, share in enumerate(pca.explained_variance_ratio_)
        )
    else:
        from sklearn.manifold import TSNE

        # Exact gradients up to 500 points (faster there, no thread pool); Barnes-Hut above.
        options = dict(
            n_components=2,
            init="pca",
            random_state=seed,
            perplexity=min(perplexity, max(1.0, (x.shape[0] - 1) / 3)),
            method="exact" if x.shape[0] <= 500 else "barnes_hut",
        )
        options.update(tsne_kwargs or {})
        xy = TSNE(**options).fit_transform(x)
    classes = np.unique(y)
    fig = _figure((6.4, 5.6))
    ax = fig.add_subplot()
    cmap = _class_colors(len(classes))
    for i, c in enumerate(classes):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=10, color=cmap[i], label=_class_name(c, class_names), alpha=0.8)
    if len(classes) <= 20:
        ax.legend(
            title="class",
            fontsize="small",
            markerscale=2,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
    ax.set_title(title or f"Embeddings ({'PCA' if method == 'pca' else 't-SNE'})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    return _finish(fig, path, dpi)


def _class_name(label, class_names):
    """The legend entry of `label`: its name in `class_names` (sequence or dict) if any."""
    if class_names is None:
        return str(label)
    try:
        return str(class_names[label.item() if hasattr(label, "item") else label])
    except (KeyError, IndexError, TypeError):
        return str(label)


def _class_colors(n):
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / max(n - 1, 1)) for i in range(n)]


def _show_item(ax, item, cmap):
    item = np.asarray(item)
    if item.ndim == 3 and item.shape[-1] == 1:
        item = item[..., 0]
    if item.ndim == 1:
        ax.plot(item, linewidth=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if item.ndim == 3 and item.shape[-1] in (3, 4):
        if np.issubdtype(item.dtype, np.floating):
            lo, hi = float(item.min()), float(item.max())
            if lo < 0 or hi > 1:  # rescale for display
                item = (item - lo) / (hi - lo if hi > lo else 1.0)
        ax.imshow(item)
    elif item.ndim == 2:
        ax.imshow(item, cmap=cmap, aspect="auto" if max(item.shape) > 3 * min(item.shape) else None)
    else:
        raise ValueError(
            f"Cannot draw an item of shape {item.shape}: give 1-D signals, [H, W] images, "
            "[H, W, 1|3|4] images or [F, T] spectrograms."
        )
    ax.set_xticks([])
    ax.set_yticks([])


def neighbors_grid(
    query_items,
    neighbor_items,
    query_labels=None,
    neighbor_labels=None,
    distances=None,
    cmap="gray",
    cell_size=1.6,
    title=None,
    path=None,
    dpi=100,
):
    """A grid of queries (first column) and their nearest neighbours (next columns).

    Args:
        query_items: `Q` items; each is an image `[H, W]` / `[H, W, 1|3|4]`, a 2-D array
            such as a spectrogram (drawn with `imshow`), or a 1-D signal (drawn as a line).
        neighbor_items: `[Q, k, ...]` the neighbours of each query, nearest first.
        query_labels: optional `[Q]` labels (shown as titles).
        neighbor_labels: optional `[Q, k]` labels; with `query_labels`, neighbour titles
            are green when the label matches the query's and red otherwise.
        distances: optional `[Q, k]` distances, shown under the neighbour titles.

    Typically fed from `keras_triplet.index.EmbeddingIndex.search`:
    `d, ids, labels = index.search(query_embeddings, k)` then
    `neighbors_grid(query_images, gallery_images[ids], query_labels, labels, d)`.

    Example:

    >>> import numpy as np
    >>> q = np.zeros((2, 8, 8)); nb = np.ones((2, 3, 8, 8))
    >>> fig = neighbors_grid(q, nb, [0, 1], [[0, 1, 0], [1, 1, 0]], np.ones((2, 3)))
    >>> len(fig.axes)
    8
    """
    q_items = list(query_items)
    nb_items = [list(row) for row in neighbor_items]
    n_q = len(q_items)
    if len(nb_items) != n_q:
        raise ValueError(
            f"`neighbor_items` has {len(nb_items)} rows but there are {n_q} queries; "
            "give one row of neighbours per query."
        )
    k = max((len(row) for row in nb_items), default=0)
    if distances is not None:
        distances = np.asarray(distances, dtype=np.float64).reshape(n_q, -1)
    if neighbor_labels is not None:
        neighbor_labels = [list(row) for row in neighbor_labels]
    fig = _figure((cell_size * (k + 1), cell_size * n_q + 0.4))
    grid = fig.add_gridspec(max(n_q, 1), k + 1)
    for i in range(n_q):
        ax = fig.add_subplot(grid[i, 0])
        _show_item(ax, q_items[i], cmap)
        ax.set_title(
            "query" + (f"\nlabel {query_labels[i]}" if query_labels is not None else ""),
            fontsize="small",
            fontweight="bold",
        )
        for spine in ax.spines.values():
            spine.set_linewidth(2)
        for j, item in enumerate(nb_items[i]):
            ax = fig.add_subplot(grid[i, j + 1])
            _show_item(ax, item, cmap)
            parts = [f"#{j + 1}"]
            color = "black"
            if neighbor_labels is not None:
                lab = neighbor_labels[i][j]
                parts.append(f"label {lab}")
                if query_labels is not None:
                    color = "tab:green" if lab == query_labels[i] else "tab:red"
                    for spine in ax.spines.values():
                        spine.set_edgecolor(color)
                        spine.set_linewidth(2)
            text = " ".join(parts)
            if distances is not None:
                text += f"\nd = {distances[i, j]:.3g}"
            ax.set_title(text, fontsize="small", color=color)
    if title:
        fig.suptitle(title)
    return _finish(fig, path, dpi)
