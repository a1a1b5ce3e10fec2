"""keras_triplet.plots: every figure renders and writes a PNG."""

import matplotlib  # noqa: E402, F401 - the plots extra, part of the dev install
import numpy as np
import pytest

from keras_triplet import plots  # noqa: E402
from keras_triplet.metrics import equal_error_rate, pair_distances  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def _embeddings(seed=0, classes=5, per_class=20, dim=8):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = 2 * rng.normal(size=(classes, dim))[y] + rng.normal(size=(len(y), dim))
    return x, y


def test_distance_histograms(tmp_path):
    x, y = _embeddings()
    fig = plots.distance_histograms(x, y, path=tmp_path / "hist.png", title="test")
    assert _is_png(tmp_path / "hist.png")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("positive") for t in texts) and any("EER" in t for t in texts)
    d, same = pair_distances(x, y)
    _, threshold = equal_error_rate(d, same)
    assert ax.lines[0].get_xdata()[0] == pytest.approx(threshold)


def test_roc_and_det_curves_mark_the_eer(tmp_path):
    x, y = _embeddings(1)
    d, same = pair_distances(x, y)
    eer, _ = equal_error_rate(d, same)
    fig = plots.roc_curve_plot(d, same, path=tmp_path / "roc.png", label="model")
    assert _is_png(tmp_path / "roc.png")
    marker = fig.axes[0].lines[-1]
    assert marker.get_xdata()[0] == pytest.approx(eer)
    assert marker.get_ydata()[0] == pytest.approx(1 - eer)
    plots.roc_curve_plot(d, same, log_far=True, path=tmp_path / "roc_log.png")
    assert _is_png(tmp_path / "roc_log.png")
    fig = plots.det_curve_plot(d, same, path=tmp_path / "det.png")
    assert _is_png(tmp_path / "det.png")
    from scipy.stats import norm

    marker = fig.axes[0].lines[-1]
    assert marker.get_xdata()[0] == pytest.approx(norm.ppf(eer))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_projection(tmp_path, method):
    x, y = _embeddings(2, per_class=6)
    fig = plots.embedding_projection(
        x, y, method=method, path=tmp_path / f"{method}.png", tsne_kwargs={"max_iter": 250}
    )
    assert _is_png(tmp_path / f"{method}.png")
    assert len(fig.axes[0].collections) == 5
    with pytest.raises(ValueError, match="method"):
        plots.embedding_projection(x, y, method="umap")


def test_projection_subsamples_and_handles_many_classes():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 4)), np.arange(300) % 30
    fig = plots.embedding_projection(x, y, max_points=100)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 100
    assert fig.axes[0].get_legend() is None  # > 20 classes: no legend


def test_neighbors_grid_images_signals_and_spectrograms(tmp_path):
    rng = np.random.default_rng(4)
    q = rng.random((3, 8, 8))
    nb = rng.random((3, 4, 8, 8))
    labels = [[0, 1, 0, 0], [1, 1, 0, 1], [2, 0, 2, 2]]
    fig = plots.neighbors_grid(
        q, nb, [0, 1, 2], labels, rng.random((3, 4)), path=tmp_path / "grid.png", title="neighbours"
    )
    assert _is_png(tmp_path / "grid.png")
    assert len(fig.axes) == 3 * 5
    title = fig.axes[2].get_title()
    assert "label 1" in title and "d = " in title
    assert fig.axes[2].title.get_color() == "tab:red"
    assert fig.axes[1].title.get_color() == "tab:green"
    rgb = rng.normal(size=(2, 6, 6, 3))  # out of [0, 1]: rescaled for display
    plots.neighbors_grid(rgb, rgb[:, None], path=tmp_path / "rgb.png")
    signals = rng.normal(size=(2, 100))
    plots.neighbors_grid(signals, signals[:, None].repeat(2, 1), path=tmp_path / "sig.png")
    spectro = rng.random((2, 20, 120))
    plots.neighbors_grid(spectro, spectro[:, None], path=tmp_path / "spec.png")
    for name in ("rgb", "sig", "spec"):
        assert _is_png(tmp_path / f"{name}.png")
    with pytest.raises(ValueError, match="one row of neighbours per query"):
        plots.neighbors_grid(q, nb[:2])
    with pytest.raises(ValueError, match="Cannot draw"):
        plots.neighbors_grid(rng.random((1, 2, 2, 2, 2)), rng.random((1, 1, 2, 2, 2, 2)))


def test_neighbors_grid_from_an_index_search(tmp_path):
    from keras_triplet.index import EmbeddingIndex

    rng = np.random.default_rng(5)
    images = rng.random((20, 8, 8))
    labels = np.arange(20) % 4
    emb = images.reshape(20, -1)
    index = EmbeddingIndex()
    index.add(emb[4:], labels=labels[4:])
    d, ids, nb_labels = index.search(emb[:4], k=3)
    fig = plots.neighbors_grid(
        images[:4], images[4:][ids], labels[:4], nb_labels, d, path=tmp_path / "search.png"
    )
    assert _is_png(tmp_path / "search.png") and len(fig.axes) == 16


# ---- what a user reads on the figures


def test_det_curve_is_drawn_when_the_classes_are_perfectly_separated():
    """EER = 0: every rate is 0 or 1; the curve runs along the chart's edges (at the tick
    labelled 0) instead of off the chart."""
    d = np.r_[np.linspace(0.1, 0.5, 30), np.linspace(1.0, 2.0, 90)]
    fig = plots.det_curve_plot(d, np.r_[np.ones(30, bool), np.zeros(90, bool)])
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    curve = ax.lines[0]
    inside = (curve.get_xdata() >= x0) & (curve.get_xdata() <= x1) & (curve.get_ydata() >= y0)
    assert inside.sum() >= 2
    marker = ax.lines[-1]
    assert x0 < marker.get_xdata()[0] < x1 and y0 < marker.get_ydata()[0] < y1
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "0"
    assert "no errors" in ax.get_legend().get_title().get_text()


def test_projection_names_classes_and_axes():
    x, y = _embeddings(5, classes=3, per_class=10)
    fig = plots.embedding_projection(x, y, class_names={0: "cat", 1: "dog", 2: "owl"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat", "dog", "owl"]
    assert ax.get_xlabel().startswith("PC 1 (") and ax.get_ylabel().startswith("PC 2 (")
    fig = plots.embedding_projection(
        x, y, class_names=["a", "b", "c"], method="tsne", tsne_kwargs={"max_iter": 250}
    )
    assert fig.axes[0].get_xlabel() == "t-SNE 1"
