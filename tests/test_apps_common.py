"""apps/_common.py: atomic writes, side files (and the older name), skip reports, the
one-line error. NumPy only: no Keras needed."""

import os
import shutil

import numpy as np
import pytest

from apps import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "result.json"
    _common.write_json(path, {"a": np.int64(1), "b": np.arange(2)})
    assert _common.read_json(path) == {"a": 1, "b": [0, 1]}
    with pytest.raises(RuntimeError):
        with _common.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert _common.read_json(path) == {"a": 1, "b": [0, 1]}
    assert os.listdir(path.parent) == ["result.json"]  # no temporary file left
    with pytest.raises(TypeError, match="not JSON serialisable"):
        _common.write_json(path, {"x": object()})
    assert _common.read_json(path) == {"a": 1, "b": [0, 1]}


def test_side_file_names(tmp_path):
    model = tmp_path / "m.keras"
    assert _common.side_path(model) == str(model) + ".json"
    assert _common.read_side_file(model) == {}
    _common.write_json(tmp_path / "m.json", {"old": True})  # the signature app's former name
    assert _common.read_side_file(model) == {"old": True}
    _common.write_json(tmp_path / "m.keras.json", {"new": True})  # the current name wins
    assert _common.read_side_file(model) == {"new": True}
    for name in ("audio_similarity", "signature_verification"):
        assert os.path.isfile(os.path.join(ROOT, "saved_models", f"{name}.keras.json")), name


def test_skip_report_and_error(tmp_path, capsys):
    report = _common.SkipReport([("a.wav", "empty file")])
    report.extend([(f"{i}.png", "unreadable") for i in range(12)])
    path = report.write(tmp_path / "skipped.tsv")
    assert _common.SkipReport.read(path) == report.rows and len(report) == 13
    report.print(limit=3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "skipped 13 file(s):" and err[-1] == "  ... and 10 more" and len(err) == 5
    with pytest.raises(SystemExit, match="^error: no data$"):
        _common.fail("no data")


def test_legacy_side_file_of_a_copied_model(tmp_path):
    """A model saved before the rename (`MODEL.json`) still loads with its metadata."""
    src = os.path.join(ROOT, "saved_models", "signature_verification")
    shutil.copy(src + ".keras.json", tmp_path / "old.json")
    assert _common.read_side_file(tmp_path / "old.keras")["rule"] == "min"
