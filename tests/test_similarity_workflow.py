"""TripletModel's similarity workflow (keras_triplet.models.similarity): index, lookup,
calibrate, match, evaluate_matching, and the index + calibration saved in the `.keras`
file (checked on load), on the backend under test."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from keras_triplet import TripletModel, losses
from keras_triplet.metrics import pairwise_distances_numpy
from keras_triplet.metrics.matching import matching_metrics

RNG = np.random.default_rng(0)
CENTRES = 3.0 * RNG.normal(size=(5, 6))


def _clusters(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    return (CENTRES[y] + 0.8 * rng.normal(size=(n, 6))).astype("float32"), y


X_INDEX, Y_INDEX = _clusters(150, 1)
X_CAL, Y_CAL = _clusters(100, 2)
X_QUERY, Y_QUERY = _clusters(60, 3)


def _model(dim=4, loss=True):
    keras.utils.set_random_seed(0)
    model = TripletModel(keras.Sequential([keras.Input((6,)), keras.layers.Dense(dim)]))
    if loss:
        # sgd: an unbuilt optimizer saves and loads without a variable-count warning
        model.compile(optimizer="sgd", loss=losses.TripletLoss(margin=0.2, distance="cosine"))
    model.embed(X_INDEX[:2])  # builds it
    return model


def _indexed(dim=4, data=True):
    model = _model(dim)
    model.index(X_INDEX, Y_INDEX, data=np.arange(150) * 10 if data else None)
    return model


def test_lookup_matches_brute_force():
    model = _indexed()
    assert model.similarity_index.metric == "cosine"  # the compiled loss's distance
    found = model.lookup(X_QUERY, k=3)
    assert len(found) == 60 and found.distances.shape == (60, 3)
    d = pairwise_distances_numpy(model.embed(X_QUERY), model.embed(X_INDEX), "cosine")
    order = np.argsort(d, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(found.ids, order)
    np.testing.assert_allclose(found.distances, np.take_along_axis(d, order, 1), atol=1e-6)
    np.testing.assert_array_equal(found.labels, Y_INDEX[order])
    np.testing.assert_array_equal(found.data, order * 10)
    first = found[0]
    assert [n.rank for n in first] == [0, 1, 2]
    assert first[0].id == order[0, 0] and first[0].data == 10 * order[0, 0]
    assert isinstance(first[0].label, int) and first[0].distance == pytest.approx(d[0, order[0, 0]], abs=1e-6)
    assert sum(1 for _ in found) == 60


def test_index_appends_resets_and_summarises():
    model = _model()
    model.index(X_INDEX[:100], Y_INDEX[:100], data=np.arange(100))
    model.index(X_INDEX[100:], Y_INDEX[100:], data=np.arange(100, 150))
    lines = []
    summary = model.index_summary(print_fn=lines.append)
    assert summary["size"] == 150 and summary["dim"] == 4 and summary["num_labels"] == 5
    assert summary["data_shape"] == (150,) and summary["metric"] == "cosine"
    assert any("size" in line and "150" in line for line in lines)
    np.testing.assert_array_equal(model.lookup(X_INDEX[120:121], k=1).data, [[120]])
    with pytest.raises(ValueError, match="holds data"):
        model.index(X_INDEX[:2], Y_INDEX[:2])
    with pytest.raises(ValueError, match="reset_index"):
        model.index(X_INDEX[:2], Y_INDEX[:2], data=np.arange(2), metric="euclidean")
    with pytest.raises(ValueError, match="strings on every call"):
        model.index(X_INDEX[:2], Y_INDEX[:2], data=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="pickle"):
        model.index(X_INDEX[:2], Y_INDEX[:2], data=np.array([{}, {}], dtype=object))
    assert len(model.similarity_index) == 150  # failed adds change nothing
    model.reset_index()
    assert model.similarity_index is None and model.index_summary(print_fn=None)["size"] == 0
    with pytest.raises(ValueError, match=r"call model.index\(x, y\) first"):
        model.lookup(X_QUERY)
    model.index(X_INDEX, metric="euclidean")  # no labels, no data: lookup works, match does not
    assert model.lookup(X_QUERY[:2], k=2).labels is None
    with pytest.raises(ValueError, match="no labels"):
        model.match(X_QUERY, cutpoint=0.5)


def test_calibrate_match_and_evaluate():
    model = _indexed()
    cal = model.calibrate(X_CAL, Y_CAL, thresholds_targets={"precision": 0.9, "far": 0.2})
    assert model.calibration is cal and {"optimal", "precision", "far"} <= set(cal.cutpoints)
    assert cal.cutpoints["precision"]["precision"] >= 0.9 and cal.cutpoints["far"]["far"] <= 0.2
    # Brute force on the calibration set: nearest neighbour and the metrics at the cutpoint.
    e_cal, e_index = model.embed(X_CAL), model.embed(X_INDEX)
    d = pairwise_distances_numpy(e_cal, e_index, "cosine")
    nn = d.argmin(axis=1)
    t = cal.cutpoints["optimal"]["distance"]
    want = matching_metrics(d.min(axis=1), Y_INDEX[nn] == Y_CAL, t)
    assert cal.cutpoints["optimal"]["f1"] == pytest.approx(want["f1"])
    assert cal.curve["f1"].max() == pytest.approx(want["f1"])
    got = model.evaluate_matching(X_CAL, Y_CAL)
    assert got["distance"] == t and got["f1"] == pytest.approx(want["f1"])
    # match: the nearest label where d <= t, else -1.
    dq = pairwise_distances_numpy(model.embed(X_QUERY), e_index, "cosine")
    expected = np.where(dq.min(axis=1) <= t, Y_INDEX[dq.argmin(axis=1)], -1)
    np.testing.assert_array_equal(model.match(X_QUERY), expected)
    np.testing.assert_array_equal(model.match(X_QUERY, cutpoint=-1.0), np.full(60, -1))
    np.testing.assert_array_equal(
        model.match(X_QUERY, cutpoint=np.inf, unknown_label=99), Y_INDEX[dq.argmin(axis=1)]
    )
    with pytest.raises(ValueError, match="Unknown cutpoint 'recall'"):
        model.match(X_QUERY, cutpoint="recall")
    with pytest.raises(ValueError, match="an integer"):
        model.match(X_QUERY, unknown_label="unknown")


def test_string_labels_and_unmet_target():
    model = _model()
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    model.index(X_INDEX, names[Y_INDEX])
    with pytest.warns(UserWarning, match="No threshold meets"):
        cal = model.calibrate(X_CAL, names[Y_CAL], thresholds_targets={"precision": 1.5})
    assert cal.unmet == ["precision"]
    out = model.match(X_QUERY, cutpoint=-1.0)
    assert out.tolist() == ["unknown"] * 60
    assert set(model.match(X_QUERY, cutpoint=np.inf).tolist()) <= set(names)
    with pytest.raises(ValueError, match="one kind"):
        model.calibrate(X_CAL, Y_CAL)


def test_match_needs_a_calibration():
    model = _indexed()
    with pytest.raises(ValueError, match=r"call model.calibrate\(x, y\) first"):
        model.match(X_QUERY)


# ---------------------------------------------------------------- saving


def _saved(tmp_path, model, name="model.keras"):
    path = str(tmp_path / name)
    model.save(path)
    return path


def test_save_and_load_keep_index_data_and_calibration(tmp_path):
    model = _indexed()
    model.fit(X_INDEX, Y_INDEX, batch_size=50, epochs=1, verbose=0)  # optimizer state too
    model.reset_index()
    model.index(X_INDEX, Y_INDEX, data=np.arange(150) * 10)
    cal = model.calibrate(X_CAL, Y_CAL)
    path = _saved(tmp_path, model)
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert {"assets/similarity.json", "assets/similarity_index.npz", "assets/similarity_data.npz"} <= set(
        names
    )
    loaded = keras.saving.load_model(path)
    a, b = model.lookup(X_QUERY, k=4), loaded.lookup(X_QUERY, k=4)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-6)
    assert loaded.calibration.cutpoints == cal.cutpoints and loaded.calibration.metric == "f1"
    np.testing.assert_array_equal(loaded.match(X_QUERY), model.match(X_QUERY))
    assert loaded.index_summary(print_fn=None) == model.index_summary(print_fn=None)


def test_model_without_index_saves_no_assets(tmp_path):
    path = _saved(tmp_path, _model())
    with zipfile.ZipFile(path) as z:
        assert not [n for n in z.namelist() if "similarity" in n]
    loaded = keras.saving.load_model(path)
    assert loaded.similarity_index is None and loaded.calibration is None


def test_calibration_without_index_round_trips(tmp_path):
    model = _indexed(data=False)
    model.calibrate(X_CAL, Y_CAL)
    model.reset_index()
    loaded = keras.saving.load_model(_saved(tmp_path, model))
    assert loaded.similarity_index is None
    assert loaded.calibration.cutpoints == model.calibration.cutpoints


def _rewrite(path, replace):
    """Rewrites the `.keras` zip at `path` with members replaced by `replace[name]` bytes."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _member(path, name):
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def test_tampered_or_mismatched_index_is_refused(tmp_path):
    path = _saved(tmp_path, _indexed(), "a.keras")
    other = _saved(tmp_path, _indexed(dim=3), "b.keras")
    index_bytes = _member(path, "assets/similarity_index.npz")
    state = json.loads(_member(path, "assets/similarity.json"))

    cases = {
        # A byte flipped in the embeddings: the index's own checksum (and the recorded hash).
        "flipped": (
            {"assets/similarity_index.npz": index_bytes[:-300] + b"X" + index_bytes[-299:]},
            "SHA-256",
        ),
        # A valid index from another model swapped in.
        "swapped": (
            {"assets/similarity_index.npz": _member(other, "assets/similarity_index.npz")},
            "not the index file saved with this model",
        ),
        # The JSON edited (a cutpoint moved) without its checksum.
        "edited": (
            {
                "assets/similarity.json": json.dumps(
                    {**state, "format_version": 1, "index": {**state["index"], "size": 3}}
                )
            },
            "similarity.json failed its SHA-256 checksum",
        ),
        # Index and JSON both from the 3-dimensional model: consistent, but not this model's dimension.
        "other dimension": (
            {
                "assets/similarity.json": _member(other, "assets/similarity.json"),
                "assets/similarity_index.npz": _member(other, "assets/similarity_index.npz"),
            },
            "this model embeds to dimension 4",
        ),
        "not json": ({"assets/similarity.json": b"\x00garbage"}, "similarity.json is not valid"),
    }
    for name, (replace, message) in cases.items():
        broken = str(tmp_path / f"{name}.keras")
        with open(path, "rb") as src, open(broken, "wb") as dst:
            dst.write(src.read())
        _rewrite(broken, replace)
        with pytest.raises(ValueError, match=message):
            keras.saving.load_model(broken)


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    model = _indexed()
    path = _saved(tmp_path, model)
    before = open(path, "rb").read()

    def fail(self, dir_path):
        raise OSError("disk full")

    monkeypatch.setattr(TripletModel, "save_assets", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.keras"]


def test_readme_migration_block_runs(tmp_path, monkeypatch, capsys):
    """The README's "Migrating from TF Similarity" example runs as written (1 epoch)."""
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
    section = readme[readme.index("## Migrating from TF Similarity") :]
    section = section[: section.index("\n## ")]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```", start)]
    assert "epochs=10" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "cutpoints: {'optimal'" in out and "size: 898" in out
    assert os.listdir(tmp_path) == ["digits.keras"]


def test_faiss_index_round_trips(tmp_path):
    pytest.importorskip("faiss")
    model = _model()
    model.index(X_INDEX, Y_INDEX, backend="faiss")
    exact = _model()
    exact.index(X_INDEX, Y_INDEX)
    a, b = model.lookup(X_QUERY, k=3), exact.lookup(X_QUERY, k=3)
    np.testing.assert_allclose(a.distances, b.distances, atol=1e-5)
    np.testing.assert_array_equal(a.labels[:, 0], b.labels[:, 0])
    loaded = keras.saving.load_model(_saved(tmp_path, model))
    assert loaded.similarity_index.backend == "faiss"
    np.testing.assert_allclose(loaded.lookup(X_QUERY, k=3).distances, a.distances, atol=1e-6)
