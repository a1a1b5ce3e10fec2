"""The `"calibrated"` rule (cohort score normalisation, `apps/signature_verification/cohort.py`)
and the `calibrate` command: fitted on writers with forgeries, saved beside the model,
used by `evaluate`, `enroll`, `verify` (tiny data: seconds per backend)."""

import json
import os
import shutil

import numpy as np
import pytest

from apps.signature_verification import cohort, protocol

# The shipped HOG metric (`training.SHIPPED_HOG_MODEL`; not imported here: it imports Keras).
SHIPPED = os.path.join(os.path.dirname(__file__), "..", "saved_models", "signature_hog_metric.keras")


def _embeddings(writers=10, genuine=6, forgeries=3, seed=0):
    """Unit embeddings of `writers` writers: genuine signatures near the writer's centre,
    skilled forgeries a little farther, writers at different spreads (distance scales)."""
    rng = np.random.default_rng(seed)
    emb, w, g = [], [], []
    for k in range(writers):
        centre = rng.normal(size=16)
        spread = 0.05 + 0.1 * (k % 3)
        emb += [centre + spread * rng.normal(size=16) for _ in range(genuine)]
        emb += [centre + 3 * spread * rng.normal(size=16) for _ in range(forgeries)]
        w += [str(k)] * (genuine + forgeries)
        g += [True] * genuine + [False] * forgeries
    emb = np.array(emb)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.array(w), np.array(g)


def test_calibration_fits_saves_and_scores(tmp_path):
    emb, w, g = _embeddings()
    cal = cohort.fit_calibration(emb, w, g, references=3, cohort_writers=4)
    assert cal.cohort.shape == (4, 3, 16) and len(cal.cohort_writers) == 4
    refs = protocol.reference_indices(w, g, 3)
    writer = [x for x in refs if x not in cal.cohort_writers][0]
    ref = emb[refs[writer]]
    scores = protocol.score_matrix(emb, ref, "calibrated", cal)
    np.testing.assert_allclose(scores, cal.score(emb, ref))
    own, others = scores[(w == writer) & g], scores[w != writer]
    assert own.max() < np.median(others)  # genuine signatures score lower than other writers'
    # Saved (cohort as float16) and loaded back: the same scores, to float16's precision.
    path = str(tmp_path / "m.keras.cohort.npz")
    cal.save(path)
    again = cohort.CohortCalibration.load(path)
    np.testing.assert_allclose(again.score(emb, ref), scores, atol=0.05)
    # One reference: finite scores (no spread to divide by).
    assert np.isfinite(cal.score(emb, emb[:1])).all()
    # The rule needs a calibration; a file that is not one says so.
    with pytest.raises(ValueError, match="needs the model's cohort calibration"):
        protocol.verification_scores(emb, w, g, 3, "calibrated")
    with pytest.raises(ValueError, match="too few for a cohort of 9"):
        cohort.fit_calibration(emb, w, g, references=3, cohort_writers=9)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(2))
    with pytest.raises(ValueError, match="is not a cohort calibration"):
        cohort.CohortCalibration.load(str(bad))


def test_calibration_evens_out_writer_scales():
    # Writers at three distance scales: one global threshold on plain `min` distances
    # pays for it; the calibrated scores, fitted on other writers, pay less.
    emb, w, g = _embeddings(writers=40, seed=1)
    train = np.isin(w, [str(k) for k in range(24)])
    cal = cohort.fit_calibration(emb[train], w[train], g[train], references=3, cohort_writers=8)
    eer = {}
    for rule in ("min", "calibrated"):
        s = protocol.verification_scores(emb[~train], w[~train], g[~train], 3, rule, calibration=cal)
        eer[rule] = protocol.summarize(s, protocol.choose_threshold(s))["eer_skilled"]
    assert eer["calibrated"] < eer["min"], eer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from apps.signature_verification.__main__ import main

    path = str(tmp_path_factory.mktemp("cohort") / "data")
    assert (
        main(["generate", path, "--writers", "10", "--genuine", "5", "--forgeries", "3", "--seed", "4"]) == 0
    )
    return path


def test_cli_calibrate_evaluate_enroll_verify(data, tmp_path, capsys):
    from apps.signature_verification.__main__ import main

    model = str(tmp_path / "hog.keras")
    shutil.copy(SHIPPED, model)
    meta = json.loads(open(SHIPPED + ".json").read())
    meta.pop("calibration", None)
    meta.pop(
        "fuse", None
    )  # the HOG metric alone (the shipped one is fused with the CNN)  # a model as `train` writes it: no cohort
    meta["rule"] = "min"
    open(model + ".json", "w").write(json.dumps(meta))
    with pytest.raises(SystemExit, match="^error: rule 'calibrated' needs the model's cohort calibration"):
        main(["evaluate", data, "--model", model, "--rule", "calibrated"])
    capsys.readouterr()
    assert main(["calibrate", data, "--model", model, "--cohort-writers", "4", "--references", "3"]) == 0
    assert "rule calibrated, threshold" in capsys.readouterr().out
    meta = json.loads(open(model + ".json").read())
    assert meta["rule"] == "calibrated" and meta["calibration"]["cohort_writers"] == 4
    assert meta["calibration"]["before"]["rule"] == "min"
    assert cohort.load_calibration(model).cohort.shape == (4, 3, 3780)

    assert main(["evaluate", data, "--model", model, "--references", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rule"] == "calibrated" and result["eer_skilled"] is not None
    # A baseline has no cohort of its own: its plain rule.
    assert main(["evaluate", data, "--model", model, "--baseline", "hog", "--references", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rule"] == "min"

    profile = str(tmp_path / "w.json")
    assert (
        main(["enroll", data, "--writer", "1", "--references", "3", "--model", model, "--out", profile]) == 0
    )
    assert json.loads(open(profile).read())["rule"] == "calibrated"
    capsys.readouterr()
    assert main(["verify", f"{data}/full_org/original_1_5.png", "--profile", profile, "--json"]) == 0
    decision = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert decision["accepted"] is (decision["distance"] <= decision["threshold"])
    os.remove(cohort.cohort_path(model))
    with pytest.raises(SystemExit, match="^error: rule 'calibrated' needs .*cohort.npz"):
        main(["verify", f"{data}/full_org/original_1_5.png", "--profile", profile])


def test_cli_train_keeps_the_calibration_of_an_unchanged_init(data, tmp_path, capsys):
    """`train --init MODEL` that gives a calibrated MODEL back unchanged (here: learning
    rate 0) keeps its cohort and rule; an explicit `--rule` or a changed network does not."""
    from apps.signature_verification.__main__ import main

    model = str(tmp_path / "hog.keras")
    shutil.copy(SHIPPED, model)
    meta = json.loads(open(SHIPPED + ".json").read())
    meta.pop("calibration", None)
    meta.pop("fuse", None)  # the HOG metric alone (the shipped one is fused with the CNN)
    open(model + ".json", "w").write(json.dumps({**meta, "rule": "min"}))
    assert main(["calibrate", data, "--model", model, "--cohort-writers", "4", "--references", "3"]) == 0
    args = [
        "train",
        data,
        "--init",
        model,
        "--epochs",
        "1",
        "--classes-per-batch",
        "2",
        "--samples-per-class",
        "2",
    ]
    args += ["--val-fraction", "0.34", "--test-fraction", "0.34", "--references", "3", "--verbose", "0"]
    out = str(tmp_path / "kept.keras")
    capsys.readouterr()
    assert main([*args, "--out", out, "--learning-rate", "0"]) == 0
    assert "cohort calibration kept" in capsys.readouterr().out
    kept = json.loads(open(out + ".json").read())
    assert kept["rule"] == "calibrated" and kept["training"]["best_epoch"] == 0
    assert cohort.load_calibration(out).cohort.shape == (4, 3, 3780)
    assert main([*args, "--out", out, "--learning-rate", "0", "--rule", "min"]) == 0
    assert json.loads(open(out + ".json").read())["rule"] == "min"
    assert not os.path.exists(cohort.cohort_path(out))  # no stale cohort beside it
