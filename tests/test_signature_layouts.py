"""`evaluate`, `enroll` and `verify` with the shipped model on every supported layout
(CEDAR, generic, BHSig260; tiny generated data), and `evaluate`'s `--references` sweep and
per-writer EER."""

import json
import os

import pytest
from test_signature_app import SAVED_MODEL

from apps.signature_verification import loaders

# The same 8 generated writers in each layout, and how each layout names writer 1.
WRITERS, GENUINE, FORGERIES, SEED = 8, 7, 4, 21
FIRST_WRITER = {"cedar": "1", "generic": "writer_001", "bhsig260": "B-1"}


def _json(text):
    return json.loads([line for line in text.strip().splitlines() if line.startswith("{")][-1])


def _generate(path, layout):
    from apps.signature_verification.__main__ import main

    args = ["generate", path, "--writers", str(WRITERS), "--genuine", str(GENUINE)]
    assert main([*args, "--forgeries", str(FORGERIES), "--seed", str(SEED), "--layout", layout]) == 0
    return path


@pytest.mark.parametrize("layout", ["cedar", "generic", "bhsig260"])
def test_shipped_model_on_every_layout(layout, tmp_path, capsys):
    from apps.signature_verification.__main__ import main

    data = _generate(str(tmp_path / "data"), layout)
    dataset = loaders.load_dataset(data)
    assert dataset.layout == layout and len(dataset.writers) == WRITERS and not dataset.skipped
    writer = FIRST_WRITER[layout]
    assert len(dataset.genuine(writer)) == GENUINE and len(dataset.forged(writer)) == FORGERIES
    if layout == "bhsig260":  # writers 1 and 2: the same number in two scripts, two people
        assert dataset.writers[:2] == ["B-1", "B-2"] and "H-1" in dataset.writers
    capsys.readouterr()

    assert main(["evaluate", data, "--model", SAVED_MODEL, "--references", "3", "--json"]) == 0
    result = _json(capsys.readouterr().out)
    assert result["test_writers"] == WRITERS // 2 and result["references"] == 3
    assert result["num_genuine"] == WRITERS // 2 * (GENUINE - 3)
    assert result["num_skilled"] == WRITERS // 2 * FORGERIES
    assert result["eer_random"] <= 0.1 and result["auc_random"] >= 0.95, result
    assert result["per_writer_eer_skilled"]["num_writers"] == WRITERS // 2

    # Enrol writer 1 from the data folder with its first 5 genuine signatures, then verify
    # its 7th, one of its skilled forgeries and another writer's signature. The images are
    # the same in every layout, so are the decisions.
    profile = str(tmp_path / "profile.json")
    enrol = [
        "enroll",
        data,
        "--writer",
        writer,
        "--references",
        "5",
        "--model",
        SAVED_MODEL,
        "--out",
        profile,
    ]
    assert main(enrol) == 0
    stored = json.loads(open(profile).read())
    assert stored["writer"] == writer and len(stored["references"]) == 5
    capsys.readouterr()
    genuine, forged = dataset.genuine(writer), dataset.forged(writer)
    other = dataset.genuine(dataset.writers[-1])[0]
    for sample, accepted in ((genuine[-1], True), (forged[0], False), (other, False)):
        assert main(["verify", sample.path, "--profile", profile, "--json"]) == 0
        decision = _json(capsys.readouterr().out)
        assert decision["accepted"] is accepted, (os.path.basename(sample.path), decision)

    # Enrolling from the writer's own folder: generic `writer_001/` (its genuine/ subfolder)
    # and BHSig260 `Bengali/1/` (forgeries skipped by name); CEDAR's `full_org/` holds
    # every writer, so it needs --writer.
    folder = os.path.dirname(genuine[0].path)
    if layout == "cedar":
        with pytest.raises(SystemExit, match="holds the signatures of 8 writers.*--writer"):
            main(["enroll", folder, "--model", SAVED_MODEL, "--out", profile])
    else:
        assert main(["enroll", folder, "--model", SAVED_MODEL, "--out", profile]) == 0
        stored = json.loads(open(profile).read())
        assert stored["files"] == [os.path.basename(s.path) for s in genuine]
    with pytest.raises(SystemExit, match="no writer 'nobody'"):
        main(["enroll", data, "--writer", "nobody", "--model", SAVED_MODEL, "--out", profile])


def test_evaluate_references_sweep_and_per_writer_eer(tmp_path, capsys):
    """`--references 1,3,5`: one row per number, each with its own writers' scores; a number
    no writer has enough genuine signatures for is skipped with a warning."""
    from apps.signature_verification.__main__ import main

    data = _generate(str(tmp_path / "data"), "cedar")
    capsys.readouterr()
    assert main(["evaluate", data, "--model", SAVED_MODEL, "--references", "1,3,5", "--json"]) == 0
    result = _json(capsys.readouterr().out)
    sweep = result["sweep"]
    assert [r["references"] for r in sweep] == [1, 3, 5] and result["references"] == 1
    for r in sweep:
        n = r["references"]
        assert r["num_genuine"] == WRITERS // 2 * (GENUINE - n), r
        w = r["per_writer_eer_skilled"]
        assert 0.0 <= w["median"] <= w["worst"] <= 1.0 and 0.0 <= w["mean"] <= w["worst"], w
        assert r["per_writer_eer_random"]["num_writers"] == WRITERS // 2
    # The first row is the top-level result.
    assert {k: v for k, v in sweep[0].items() if k != "plots"} == {
        k: v for k, v in result.items() if k not in ("sweep", "plots")
    }

    assert main(["evaluate", data, "--model", SAVED_MODEL, "--references", "3,7"]) == 0
    captured = capsys.readouterr()
    assert "--references 7 skipped" in captured.err
    assert "references | writers | EER skilled" in captured.out
    assert "per-writer EER skilled: mean" in captured.out, captured.out
    rows = [line for line in captured.out.splitlines() if line.strip().startswith("3 |")]
    assert len(rows) == 1, captured.out
    with pytest.raises(SystemExit):
        main(["evaluate", data, "--model", SAVED_MODEL, "--references", "3,x"])


def test_evaluate_baselines(tmp_path, capsys):
    """`--baseline pixels|hog` scores non-learned embeddings with the same protocol: on
    the model's writers and settings when `--model` is given too."""
    import numpy as np

    from apps.signature_verification.__main__ import main
    from apps.signature_verification.evaluation import baseline_embeddings

    x = np.random.default_rng(0).random((3, 64, 128, 1)).astype("float32")
    for kind, dim in (("pixels", 64 * 128), ("hog", 7 * 15 * 36)):
        e = baseline_embeddings(x, kind)
        assert e.shape == (3, dim)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)

    data = _generate(str(tmp_path / "data"), "cedar")
    capsys.readouterr()
    results = {}
    for name, args in (
        ("model", ["--model", SAVED_MODEL]),
        ("hog", ["--model", SAVED_MODEL, "--baseline", "hog"]),
        ("pixels", ["--baseline", "pixels"]),
    ):
        assert main(["evaluate", data, *args, "--references", "3", "--json"]) == 0
        results[name] = _json(capsys.readouterr().out)
    assert results["hog"]["baseline"] == "hog" and results["model"]["baseline"] is None
    for key in ("test_writers", "num_genuine", "num_skilled", "num_random", "rule", "references"):
        assert results["hog"][key] == results["model"][key] == results["pixels"][key], key
    assert results["hog"]["eer_skilled"] != results["model"]["eer_skilled"]
    assert main(["evaluate", data, "--baseline", "hog"]) == 0
    assert capsys.readouterr().out.startswith("baseline: hog (no learning)")
    with pytest.raises(SystemExit, match="needs --model"):
        main(["evaluate", data])
