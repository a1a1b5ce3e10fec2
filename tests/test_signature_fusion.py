"""The fused `calibrated` rule (a model pair with one calibration: `calibrate --fuse`,
`model.FusedModel`, `cohort.CohortCalibration` with `parts`): the round trip through every
command from one `--model` path, single-model calibrations loading as before, and the
shipped pair (the HOG metric fused with the CNN) loading on every backend (tiny data:
seconds per backend)."""

import json
import os
import shutil

import numpy as np
import pytest

from apps.signature_verification import cohort, protocol

ROOT = os.path.join(os.path.dirname(__file__), "..")
SHIPPED = os.path.join(ROOT, "saved_models", "signature_hog_metric.keras")
SHIPPED_CNN = os.path.join(ROOT, "saved_models", "signature_verification.keras")


def _two_embeddings(writers=12, genuine=6, forgeries=3, seed=0):
    """Two unit embeddings (16 and 8 values) of the same signatures, side by side."""
    rng = np.random.default_rng(seed)
    parts = []
    for width in (16, 8):
        emb = []
        for k in range(writers):
            centre, spread = rng.normal(size=width), 0.05 + 0.1 * (k % 3)
            emb += [centre + spread * rng.normal(size=width) for _ in range(genuine)]
            emb += [centre + 3 * spread * rng.normal(size=width) for _ in range(forgeries)]
        emb = np.array(emb)
        parts.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    writers_ = np.repeat(np.arange(writers).astype(str), genuine + forgeries)
    genuine_ = np.tile(np.r_[np.ones(genuine, bool), np.zeros(forgeries, bool)], writers)
    return np.concatenate(parts, axis=1), writers_, genuine_


def test_fused_calibration_fits_saves_and_loads(tmp_path):
    emb, w, g = _two_embeddings()
    cal = cohort.fit_calibration(emb, w, g, references=3, cohort_writers=4, parts=(16, 8), regularization=0.1)
    assert cal.fused and cal.parts == (16, 8) and cal.cohort.shape == (4, 3, 24)
    assert len(cal.weights) == 2 * len(cohort.FEATURES) and cal.feature_names[8] == "1:min"
    refs = protocol.reference_indices(w, g, 3)
    writer = [x for x in refs if x not in cal.cohort_writers][0]
    ref = emb[refs[writer]]
    scores = protocol.score_matrix(emb, ref, "calibrated", cal)
    np.testing.assert_allclose(scores, cal.score(emb, ref))
    assert scores[(w == writer) & g].max() < np.median(scores[w != writer])
    # `verification_scores` (blocks of writers, one distance matrix per part) agrees.
    s = protocol.verification_scores(emb, w, g, 3, "calibrated", calibration=cal)
    own = s["genuine_writer"] == writer
    assert np.isin(np.round(s["genuine"][own], 6), np.round(scores, 6)).all()
    path = str(tmp_path / "m.keras.cohort.npz")
    cal.save(path)
    again = cohort.CohortCalibration.load(path)
    assert again.parts == (16, 8)
    np.testing.assert_allclose(again.score(emb, ref), scores, atol=0.05)
    # Embeddings of another width (one model where the calibration fused two): one clear error.
    with pytest.raises(ValueError, match="holds 24-dimensional embeddings"):
        again.score(emb[:, :16], ref[:, :16])
    # The guard (the default): the first model's own regression vetoes. The score is the larger
    # of the fused and the guard's negated log-odds; without it, the fused format as before.
    assert again.guard is not None and not again.guard[0][len(cohort.FEATURES) :].any()
    with np.load(path) as z:
        assert str(z["format"]) == cohort.GUARDED_FORMAT
    unguarded = cohort.CohortCalibration(cal.cohort, cal.mean, cal.scale, cal.weights, cal.bias, 3, (16, 8))
    alone = cohort.CohortCalibration(cal.cohort, cal.mean, cal.scale, cal.guard[0], cal.guard[1], 3, (16, 8))
    np.testing.assert_allclose(scores, np.maximum(unguarded.score(emb, ref), alone.score(emb, ref)))
    assert (scores > unguarded.score(emb, ref)).any()  # the veto acts on these writers
    with pytest.raises(ValueError, match="first part's features only"):
        cohort.CohortCalibration(
            cal.cohort, cal.mean, cal.scale, cal.weights, 0, 3, (16, 8), (cal.weights, 0)
        )
    plain = cohort.fit_calibration(emb, w, g, references=3, cohort_writers=4, parts=(16, 8), guard=False)
    plain.save(path)
    with np.load(path) as z:
        assert str(z["format"]) == cohort.FUSED_FORMAT and "guard_weights" not in z.files
    assert cohort.CohortCalibration.load(path).guard is None
    # A single-embedding calibration is still written in (and read from) the first format.
    single = cohort.fit_calibration(emb[:, :16], w, g, references=3, cohort_writers=4)
    single.save(path)
    with np.load(path) as z:
        assert str(z["format"]) == cohort.COHORT_FORMAT and "parts" not in z.files
    assert not cohort.CohortCalibration.load(path).fused


def _single_model_copy(directory):
    """The shipped HOG metric as `train` writes it (no calibration, no partner), and the
    shipped CNN beside it."""
    model = os.path.join(directory, "hog.keras")
    cnn = os.path.join(directory, "cnn.keras")
    shutil.copy(SHIPPED, model)
    shutil.copy(SHIPPED_CNN, cnn)
    shutil.copy(SHIPPED_CNN + ".json", cnn + ".json")
    meta = json.loads(open(SHIPPED + ".json").read())
    for key in ("calibration", "fuse"):
        meta.pop(key, None)
    open(model + ".json", "w").write(json.dumps({**meta, "rule": "min"}))
    return model, cnn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from apps.signature_verification.__main__ import main

    path = str(tmp_path_factory.mktemp("fusion") / "data")
    assert (
        main(["generate", path, "--writers", "10", "--genuine", "5", "--forgeries", "3", "--seed", "4"]) == 0
    )
    return path


def test_cli_fused_round_trip(data, tmp_path, capsys):
    """calibrate --fuse -> evaluate / enroll / verify / serve, each from the one --model
    path; a missing partner is one line; --fuse none goes back to one model."""
    from apps.signature_verification import enrollment
    from apps.signature_verification.__main__ import main
    from apps.signature_verification.preprocessing import load_image
    from apps.signature_verification.serve import SignatureService

    model, cnn = _single_model_copy(str(tmp_path))
    capsys.readouterr()
    calibrate = ["calibrate", data, "--model", model, "--cohort-writers", "4", "--references", "3"]
    assert main([*calibrate, "--fuse", cnn, "--regularization", "0.1"]) == 0
    assert "fused with" in capsys.readouterr().out
    meta = json.loads(open(model + ".json").read())
    assert meta["rule"] == "calibrated" and meta["calibration"]["regularization"] == 0.1
    assert meta["calibration"]["guard"] and cohort.load_calibration(model).guard is not None
    assert meta["fuse"]["model"] == "cnn.keras" and meta["fuse"]["parts"] == [3780, 64]
    assert cohort.load_calibration(model).parts == (3780, 64)

    assert main(["evaluate", data, "--model", model, "--references", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rule"] == "calibrated" and result["eer_skilled"] is not None

    profile = str(tmp_path / "w.json")
    assert (
        main(["enroll", data, "--writer", "1", "--references", "3", "--model", model, "--out", profile]) == 0
    )
    stored = json.loads(open(profile).read())
    assert stored["rule"] == "calibrated" and np.shape(stored["references"]) == (3, 3780 + 64)
    capsys.readouterr()
    genuine, forgery = f"{data}/full_org/original_1_5.png", f"{data}/full_forg/forgeries_1_1.png"
    assert main(["verify", genuine, "--profile", profile, "--json"]) == 0
    decision = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert decision["accepted"] is (decision["distance"] <= decision["threshold"])
    # The profile records both models; another partner file is named in a warning.
    assert stored["partner_sha256"] == enrollment.model_hashes(cnn)["model_sha256"]
    assert enrollment.changed_model(stored, enrollment.model_hashes(model, cnn)) is None
    other = str(tmp_path / "other-partner.json")
    open(other, "w").write(json.dumps({**stored, "partner_sha256": "0" * 64}))
    assert main(["verify", genuine, "--profile", other, "--json"]) == 0
    assert "cnn.keras (the partner" in capsys.readouterr().err
    assert (
        enrollment.changed_model({**stored, "model_sha256": "0" * 64}, enrollment.model_hashes(model))
        == "model"
    )

    # The web page's service: the same pair, the same score; the forgery scores higher.
    service = SignatureService(model)
    distances = []
    for image in (genuine, forgery):
        x = load_image(image, tuple(service.image_size))
        distances.append(
            enrollment.verify(service.embed(x[None])[0], stored, calibration=service.calibration)[1]
        )
    assert distances[0] == pytest.approx(decision["distance"], abs=1e-3)
    assert distances[0] < distances[1]
    service.check_profile(stored, "w.json")  # the same pair: accepted
    with pytest.raises(Exception, match="enrolled with another model"):
        service.check_profile({**stored, "partner_sha256": "0" * 64}, "w.json")

    # `train --init` with a fused model: tests/test_signature_hog_metric.py (the default `train`
    # fine-tunes the shipped pair).

    # The partner missing: one line.
    shutil.move(cnn, cnn + ".away")
    with pytest.raises(SystemExit, match="^error: .*is fused with .*cnn.keras.*which is missing"):
        main(["evaluate", data, "--model", model, "--references", "3"])
    shutil.move(cnn + ".away", cnn)
    # --fuse none: back to the model alone, a single-embedding calibration.
    assert main([*calibrate, "--fuse", "none"]) == 0
    assert "fuse" not in json.loads(open(model + ".json").read())
    assert not cohort.load_calibration(model).fused


def test_shipped_pair_loads_on_every_backend():
    """The shipped default: the HOG metric fused with the CNN, from the one path, gives on
    this backend the embeddings both models recorded when they were saved."""
    from apps.signature_verification.model import FusedModel
    from apps.signature_verification.training import check_inputs, load_model

    model, meta = load_model(SHIPPED)
    assert isinstance(model, FusedModel) and meta["rule"] == "calibrated"
    calibration = cohort.load_calibration(SHIPPED)
    assert calibration.parts == tuple(meta["fuse"]["parts"]) == (3780, 64)
    expected = np.concatenate(
        [json.loads(open(path + ".json").read())["check_embeddings"] for path in (SHIPPED, SHIPPED_CNN)],
        axis=1,
    )
    embeddings = model.embed(check_inputs((64, 128)))
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    score = protocol.score_matrix(embeddings[:1], embeddings, "calibrated", calibration)
    assert np.isfinite(score).all()
