"""The apps' figures carry what a reader needs: labelled axes, whole epochs, the validation
curve, the decision threshold; and the apps' progress lines fit the terminal."""

import matplotlib  # noqa: F401 - the plots extra, part of the dev install
import numpy as np

from apps._common import epoch_line
from apps.audio_similarity.plots import plot_history
from apps.signature_verification.plots import score_histograms


def test_training_curves_have_labels_whole_epochs_and_validation(tmp_path, monkeypatch):
    import matplotlib.figure

    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    history = {
        "loss": [0.5, 0.3, 0.2],
        "val_loss": [0.6, 0.4, 0.35],
        "hard_fraction": [0.2, 0.1, 0.05],
    }
    plot_history(history, str(tmp_path / "curves.png"))
    (fig,) = figures
    loss, hard = fig.axes
    assert loss.get_ylabel() == "triplet loss" and hard.get_ylabel()
    assert [line.get_label() for line in loss.lines] == ["training", "validation"]
    assert len(hard.lines) == 1  # no validation series for it
    ticks = [t for t in loss.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_score_histograms_mark_the_threshold(tmp_path, monkeypatch):
    import matplotlib.figure

    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    rng = np.random.default_rng(0)
    scores = {
        "genuine": rng.normal(0.3, 0.1, 50),
        "skilled": rng.normal(0.8, 0.2, 50),
        "random": rng.normal(1.3, 0.2, 200),
    }
    score_histograms(scores, str(tmp_path / "scores.png"), threshold=0.5)
    (ax,) = figures[0].axes
    (line,) = ax.lines
    assert list(line.get_xdata()) == [0.5, 0.5] and "threshold" in line.get_label()


def test_epoch_lines_fit_the_width():
    logs = {
        "loss": 0.1234,
        "active_fraction": 0.31,
        "hard_fraction": 0.05,
        "positive_distance": 0.61,
        "negative_distance": 1.02,
        "embedding_norm": 11.3,
        "val_loss": 0.2,
        "val_active_fraction": 0.4,
    }
    line = epoch_line(2, 12, logs, 3.25, width=200)
    assert line.startswith("epoch 3/12  3.2 s  loss 0.1234") and "| val loss 0.2" in line
    assert len(epoch_line(2, 12, logs, 3.25, width=60)) == 60
