"""The learned HOG metric (`train`'s default network) and the held-out generator.

`train` without `--network` trains `model.build_hog_model`: a residual MLP on
scikit-image HOG descriptors whose correction starts at zero, so before training its
embeddings are the HOG baseline's (`--init none`); on small data it fine-tunes the shipped
one (`--init auto`); `evaluate`, `enroll` and `verify` take it like the CNN (its `embed`
takes images). `generate --generator transfer` writes a differently
parameterised population, `--generator varied` a training population whose writers draw
their own configurations short of it (tiny data here: seconds per backend).
"""

import json

import numpy as np
import pytest

from apps.signature_verification import synthetic
from apps.signature_verification.features import hog_descriptors, hog_size


def test_hog_metric_starts_as_hog():
    from apps.signature_verification.model import build_hog_model
    from apps.signature_verification.preprocessing import preprocess_batch

    x = preprocess_batch([s.image for s in synthetic.generate_signatures(2, 2, 1, seed=3)], (64, 128))
    d = hog_descriptors(x)
    assert d.shape == (6, hog_size((64, 128))) == (6, 3780)
    model = build_hog_model(d.shape[1], hidden=8)
    np.testing.assert_allclose(model.embed(d), d, atol=1e-5)


def test_transfer_generator_differs_and_is_deterministic(tmp_path):
    a = synthetic.generate_writer(0, 2, 2, seed=5)
    b = synthetic.generate_writer(0, 2, 2, seed=5, generator="transfer")
    c = synthetic.generate_writer(0, 2, 2, seed=5, generator="transfer")
    assert all(np.array_equal(x.image, y.image) for x, y in zip(b, c))
    # Another resolution: larger scans of the same writer.
    assert all(y.image.size > x.image.size for x, y in zip(a, b))
    with pytest.raises(ValueError, match="generator must be one of"):
        synthetic.generate_writer(0, 1, 1, generator="nope")


def test_varied_generator_stops_short_of_transfer():
    # Each writer draws its own configuration: deterministic, unlike the default's images,
    # and from ranges that leave out every per-writer value of the held-out "transfer".
    a = synthetic.generate_writer(1, 1, 1, seed=5, generator="varied")
    b = synthetic.generate_writer(1, 1, 1, seed=5, generator="varied")
    c = synthetic.generate_writer(1, 1, 1, seed=5)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not any(x.image.shape == y.image.shape and np.array_equal(x.image, y.image) for x, y in zip(a, c))
    transfer = synthetic.GENERATORS["transfer"]
    for key, (lo, hi) in synthetic.GENERATORS["varied"]["per_writer"].items():
        assert not lo <= transfer[key] <= hi, key


@pytest.fixture(scope="module")
def transfer_data(tmp_path_factory):
    from apps.signature_verification.__main__ import main

    data = str(tmp_path_factory.mktemp("transfer") / "data")
    args = ["generate", data, "--writers", "6", "--genuine", "6", "--forgeries", "4", "--seed", "2"]
    assert main([*args, "--generator", "transfer"]) == 0
    return data


def _train(data, out, *extra, epochs=1):
    from apps.signature_verification.__main__ import main

    # One short run: tiny batches, few epochs (tests time the commands, not the learning).
    return main(
        ["train", data, "--out", out, "--epochs", str(epochs), "--classes-per-batch", "2"]
        + ["--samples-per-class", "2", "--val-fraction", "0.34", "--test-fraction", "0.34"]
        + ["--references", "3", "--verbose", "0", *extra]
    )


def test_cli_hog_metric_from_hog(transfer_data, tmp_path, capsys):
    """`--init none`: a new HOG metric (the default network), which starts as HOG itself;
    its side file says so; the model as it started (HOG itself) competes with the epochs;
    evaluate / enroll / verify take it."""
    from apps.signature_verification.__main__ import main
    from apps.signature_verification.training import load_model

    out = str(tmp_path / "hog.keras")
    capsys.readouterr()
    # A small hidden layer: what is checked is the command, not the capacity.
    assert _train(transfer_data, out, "--init", "none", "--hidden", "8", epochs=2) == 0
    printed = capsys.readouterr().out
    assert "a new learned HOG metric" in printed and "trained 2 epochs" in printed, printed
    meta = json.loads(open(out + ".json").read())
    assert meta["network"] == "hog" and meta["features"] == "hog" and meta["init"] is None
    assert meta["settings"]["embedding_dim"] == 3780 and meta["settings"]["margin"] == 0.2
    assert meta["settings"]["hidden"] == 8
    assert 0 <= meta["training"]["best_epoch"] <= 2 and meta["threshold"] > 0
    model, _ = load_model(out)
    # Saved with the trained weights: the embeddings `train` recorded come back.
    from apps.signature_verification.training import check_inputs

    np.testing.assert_allclose(model.embed(check_inputs((64, 128))), meta["check_embeddings"], atol=1e-4)
    x = np.zeros((1, 64, 128, 1), np.float32)
    x[0, 20:40, 30:90] = 1.0
    assert model.embed(x).shape == (1, 3780)

    assert main(["evaluate", transfer_data, "--model", out, "--references", "1,3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["references"] for r in result["sweep"]] == [1, 3] and result["eer_skilled"] is not None
    profile = str(tmp_path / "w.json")
    writer = meta["split"]["test"][0]
    assert main(["enroll", transfer_data, "--writer", writer, "--model", out, "--out", profile]) == 0
    forged = f"{transfer_data}/full_forg/forgeries_{writer}_1.png"
    capsys.readouterr()
    assert main(["verify", forged, "--profile", profile, "--json"]) == 0
    decision = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert decision["accepted"] is (decision["distance"] <= decision["threshold"])

    # --init MODEL fine-tunes a HOG metric (its network: --network signet is refused).
    tuned = str(tmp_path / "tuned.keras")
    assert _train(transfer_data, tuned, "--init", out) == 0
    tuned_meta = json.loads(open(tuned + ".json").read())
    assert tuned_meta["network"] == "hog" and tuned_meta["settings"]["hidden"] == 8
    with pytest.raises(SystemExit, match="^error: --network signet: .* is a hog model"):
        _train(transfer_data, str(tmp_path / "x.keras"), "--init", out, "--network", "signet")
    with pytest.raises(SystemExit, match="^error: --hidden sets the network trained from scratch"):
        _train(transfer_data, str(tmp_path / "x.keras"), "--init", out, "--hidden", "64")
    with pytest.raises(SystemExit, match="^error: --width set the SigNet CNN"):
        _train(transfer_data, str(tmp_path / "x.keras"), "--network", "hog", "--width", "0.5")


def test_cli_default_train_fine_tunes_the_shipped_hog_metric(transfer_data, tmp_path, capsys):
    """`train` with no --network and no --init on small data (fewer than 100 writers)
    fine-tunes the shipped, pretrained HOG metric, and says so."""
    from apps._common import sha256
    from apps.signature_verification.training import SHIPPED_HOG_MODEL

    out = str(tmp_path / "auto.keras")
    capsys.readouterr()
    assert _train(transfer_data, out) == 0
    printed = capsys.readouterr().out
    assert "fine-tuning the shipped HOG metric" in printed and "signature_hog_metric.keras" in printed, (
        printed
    )
    assert "fine-tuned 1 epochs" in printed, printed
    meta = json.loads(open(out + ".json").read())
    shipped = json.loads(open(SHIPPED_HOG_MODEL + ".json").read())
    assert meta["network"] == "hog" and meta["features"] == "hog"
    assert meta["init"] == {"model": SHIPPED_HOG_MODEL, "sha256": sha256(SHIPPED_HOG_MODEL)}
    assert meta["settings"]["hidden"] == shipped["settings"]["hidden"]
    # The shipped pair's fused calibration: kept when the metric comes back unchanged (or
    # does better on the validation writers calibrated than fine-tuned), the CNN named
    # relative to the new model's folder; else rule min and no cohort.
    from apps.signature_verification import cohort

    if meta["rule"] == "calibrated":
        assert meta["training"]["best_epoch"] == 0 and "cohort calibration kept" in printed, printed
        assert meta["fuse"]["parts"] == [3780, 64] and cohort.load_calibration(out).parts == (3780, 64)
        from apps.signature_verification.training import SHIPPED_MODEL, fuse_partner_path

        assert fuse_partner_path(out, meta) == SHIPPED_MODEL
    else:
        assert "fuse" not in meta and cohort.load_calibration(out) is None
    # The shipped metric loads on this backend with the embeddings recorded when it was saved.
    from apps.signature_verification.training import check_inputs, load_model

    model, _ = load_model(
        SHIPPED_HOG_MODEL, fused=False
    )  # the metric alone (test_signature_fusion: the pair)
    np.testing.assert_allclose(model.embed(check_inputs((64, 128))), shipped["check_embeddings"], atol=1e-4)
