"""Tests of apps/signature_verification: loaders, preprocessing, generator, protocol, CLI,
the shipped model and the notebook. Runs on the current KERAS_BACKEND."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from apps.signature_verification import loaders, preprocessing, protocol, synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL = os.path.join(ROOT, "saved_models", "signature_verification.keras")
NOTEBOOK = os.path.join(ROOT, "notebooks", "signature_verification.ipynb")


def _png(path, value=200, size=(20, 40)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = np.full(size, value, np.uint8)
    a[5:15, 10:30] = 20
    Image.fromarray(a).save(path)


# --------------------------------------------------------------------------- loaders


def test_cedar_loader(tmp_path):
    root = tmp_path / "signatures"
    for w in (1, 2, 10):
        for n in (1, 2, 11):
            _png(str(root / "full_org" / f"original_{w}_{n}.png"))
        _png(str(root / "full_forg" / f"forgeries_{w}_1.png"))
    (root / "full_org" / "Thumbs.db").write_bytes(b"junk")
    (root / "full_forg" / "Thumbs.db").write_bytes(b"junk")
    (root / "full_org" / "notes.txt").write_text("hello")
    for where in (root, tmp_path):  # the folder itself or its parent
        ds = loaders.load_dataset(str(where))
        assert ds.layout == "cedar"
        assert ds.writers == ["1", "2", "10"]
        assert len(ds.genuine("10")) == 3 and len(ds.forged("10")) == 1
        assert [s.number for s in ds.genuine("2")] == [1, 2, 11]
        skipped = sorted(os.path.basename(p) for p, _ in ds.skipped)
        assert skipped == ["Thumbs.db", "Thumbs.db", "notes.txt"]


def test_bhsig260_loader(tmp_path):
    for script, lang in (("B", "Bengali"), ("H", "Hindi")):
        for w in (1, 2):
            for n in (1, 2, 3):
                _png(str(tmp_path / lang / str(w) / f"{script}-S-{w}-G-{n:02d}.tif"))
            for n in (1, 2):
                _png(str(tmp_path / lang / str(w) / f"{script}-S-{w}-F-{n:02d}.tif"))
    (tmp_path / "Bengali" / "1" / "Thumbs.db").write_bytes(b"junk")
    ds = loaders.load_dataset(str(tmp_path))
    assert ds.layout == "bhsig260"
    assert ds.writers == ["B-1", "B-2", "H-1", "H-2"]
    assert len(ds.genuine("H-2")) == 3 and len(ds.forged("H-2")) == 2
    assert [os.path.basename(p) for p, _ in ds.skipped] == ["Thumbs.db"]


def test_generic_loader(tmp_path):
    for w in ("alice", "bob"):
        for n in range(3):
            _png(str(tmp_path / w / "genuine" / f"{n}.png"))
        _png(str(tmp_path / w / "forged" / "f.jpg"))
    _png(str(tmp_path / "carol" / "genuine" / "0.png"))  # a writer without forgeries
    (tmp_path / "alice" / "genuine" / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "README.txt").write_text("hi")
    ds = loaders.load_dataset(str(tmp_path))
    assert ds.layout == "generic"
    assert ds.writers == ["alice", "bob", "carol"]
    assert len(ds.genuine("alice")) == 3 and len(ds.forged("bob")) == 1 and ds.forged("carol") == []
    assert {os.path.basename(p) for p, _ in ds.skipped} == {"Thumbs.db", "README.txt"}


def test_unknown_layout_and_unreadable_files(tmp_path):
    (tmp_path / "x.txt").write_text("no signatures here")
    with pytest.raises(FileNotFoundError, match="no known signature layout"):
        loaders.load_dataset(str(tmp_path))
    good = str(tmp_path / "good.png")
    _png(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    blank = str(tmp_path / "blank.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(blank)
    images, kept, skipped = preprocessing.load_images(
        [good, str(bad), str(tmp_path / "x.txt"), blank], (16, 32)
    )
    assert images.shape == (1, 16, 32, 1) and kept.tolist() == [0]
    assert [os.path.basename(p) for p, _ in skipped] == ["broken.png", "x.txt", "blank.png"]
    assert all(reason for _, reason in skipped)


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic():
    a = synthetic.generate_signatures(3, 2, 2, seed=7)
    b = synthetic.generate_signatures(3, 2, 2, seed=7)
    assert len(a) == 12
    assert all(x.image.dtype == np.uint8 and np.array_equal(x.image, y.image) for x, y in zip(a, b))
    # Writer w does not depend on how many writers are generated.
    w2 = synthetic.generate_writer(2, 2, 2, seed=7)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a[8:], w2))
    c = synthetic.generate_signatures(1, 2, 2, seed=8)
    assert not np.array_equal(a[0].image, c[0].image)
    assert [(s.genuine, s.index) for s in a[:4]] == [(True, 1), (True, 2), (False, 1), (False, 2)]


def test_generator_writes_layouts(tmp_path):
    n = synthetic.generate_dataset(str(tmp_path / "c"), 2, 2, 1, seed=0, layout="cedar")
    assert n == 6
    assert sorted(os.listdir(tmp_path / "c" / "full_org")) == [
        "original_1_1.png",
        "original_1_2.png",
        "original_2_1.png",
        "original_2_2.png",
    ]
    ds = loaders.load_dataset(str(tmp_path / "c"))
    assert ds.writers == ["1", "2"] and len(ds.forged("2")) == 1
    synthetic.generate_dataset(str(tmp_path / "g"), 2, 2, 1, seed=0, layout="generic")
    ds = loaders.load_dataset(str(tmp_path / "g"))
    assert ds.layout == "generic" and len(ds.samples) == 6


# --------------------------------------------------------------------------- preprocessing


def test_preprocessing_on_generated_images():
    data = synthetic.generate_signatures(2, 2, 1, seed=3)
    x = preprocessing.preprocess_batch([s.image for s in data], size=(48, 96))
    assert x.shape == (6, 48, 96, 1) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    for img in x[..., 0]:
        rows, cols = np.nonzero(img > 0.1)
        # Cropped and resized to fill the height or the width (aspect ratio kept) ...
        assert rows.max() - rows.min() >= 40 or cols.max() - cols.min() >= 88
        # ... paper removed (background exactly 0) ...
        assert np.mean(img == 0.0) > 0.6
        # ... and centred.
        assert abs((rows.min() + rows.max()) / 2 - 23.5) < 4 and abs((cols.min() + cols.max()) / 2 - 47.5) < 6


def test_preprocessing_is_invariant_to_position_and_input_type():
    image = synthetic.generate_signatures(1, 1, 0, seed=4)[0].image
    big = np.full((image.shape[0] + 60, image.shape[1] + 90), int(np.median(image)), np.uint8)
    big[40 : 40 + image.shape[0], 70 : 70 + image.shape[1]] = image
    a = preprocessing.preprocess(image, (32, 64))
    b = preprocessing.preprocess(big, (32, 64))
    assert np.abs(a - b).mean() < 0.02
    rgb = np.repeat(image[..., None], 3, axis=-1)
    np.testing.assert_allclose(preprocessing.preprocess(rgb, (32, 64)), a, atol=0.02)
    np.testing.assert_allclose(preprocessing.preprocess(image / 255.0, (32, 64)), a, atol=1e-5)
    with pytest.raises(ValueError, match="2-D grayscale"):
        preprocessing.preprocess(np.zeros((2, 3, 4, 5)))


# --------------------------------------------------------------------------- protocol


def test_protocol_split_scores_and_metrics():
    writers = [str(i) for i in range(20)]
    split = protocol.writer_split(writers, 0.2, 0.3, seed=1)
    assert len(split["val"]) == 4 and len(split["test"]) == 6 and len(split["train"]) == 10
    assert not set(split["val"]) & set(split["test"]) and not set(split["train"]) & set(split["test"])
    assert split == protocol.writer_split(writers[::-1], 0.2, 0.3, seed=1)

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8))
    emb, w, g = [], [], []
    for k in range(4):
        for i in range(8):  # 6 genuine near the centre, 2 forgeries farther away
            genuine = i < 6
            emb.append(centers[k] + rng.normal(0, 0.05 if genuine else 0.5, 8))
            w.append(str(k))
            g.append(genuine)
    emb = np.array(emb)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    s = protocol.verification_scores(emb, w, g, references=3)
    assert len(s["genuine"]) == 4 * 3 and len(s["skilled"]) == 4 * 2 and len(s["random"]) == 4 * 18
    t = protocol.choose_threshold(s)
    m = protocol.summarize(s, t)
    assert m["eer_skilled"] == 0.0 and m["eer_random"] == 0.0 and m["auc_skilled"] == 1.0
    assert m["frr"] == 0.0 and m["far"] == 0.0
    with pytest.raises(ValueError, match="references"):
        protocol.verification_scores(emb, w, g, references=6)


def test_per_writer_eer():
    """Writer a: separable (EER 0); writer b: one forgery below its farthest genuine query
    out of 2 genuine and 2 forgeries (EER 0.5 at the crossing); writer c: no forgery (left
    out of the skilled figure)."""
    scores = {
        "writers": ["a", "b", "c"],
        "genuine": np.array([0.1, 0.2, 0.1, 0.5, 0.3]),
        "genuine_writer": np.array(["a", "a", "b", "b", "c"]),
        "skilled": np.array([0.8, 0.9, 0.4, 0.9]),
        "skilled_writer": np.array(["a", "a", "b", "b"]),
        "random": np.array([0.7, 0.7, 0.7]),
        "random_writer": np.array(["a", "b", "c"]),
    }
    eers = {w: protocol.per_writer_eer({**scores, "writers": [w]})["mean"] for w in ("a", "b")}
    assert eers == {"a": 0.0, "b": 0.5}
    s = protocol.per_writer_eer(scores, "skilled")
    assert s == {"mean": 0.25, "median": 0.25, "worst": 0.5, "num_writers": 2}
    assert protocol.per_writer_eer(scores, "random")["num_writers"] == 3
    assert protocol.per_writer_eer({**scores, "writers": ["c"]})["mean"] is None


def test_protocol_rules():
    refs = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    q = np.array([[1.0, 0.0], [0.6, 0.8]])
    d = np.sqrt(((q[:, None] - refs[None]) ** 2).sum(-1))
    spread = np.mean([np.sqrt(2.0), 2.0, np.sqrt(2.0)])
    np.testing.assert_allclose(protocol.score_matrix(q, refs, "mean"), d.mean(1))
    np.testing.assert_allclose(protocol.score_matrix(q, refs, "min"), d.min(1))
    np.testing.assert_allclose(protocol.score_matrix(q, refs, "mean-norm"), d.mean(1) / spread)
    np.testing.assert_allclose(protocol.score_matrix(q, refs, "min-norm"), d.min(1) / spread)
    assert protocol.reference_spread(refs[:1]) == 1.0  # one reference: no normalisation
    assert protocol.reference_spread(refs[[0, 0]]) > 0  # identical references: floored
    with pytest.raises(ValueError, match="rule"):
        protocol.score_matrix(q, refs, "median")


def test_verification_scores_in_blocks_equal_one_writer_at_a_time(monkeypatch):
    # Distances to several writers' references come from one matrix product per block of
    # writers; a block of 2 writers (of 5) must give each writer's `score_matrix` scores.
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6))
    w = np.repeat([str(i) for i in range(1, 6)], 8)
    g = np.tile([True] * 5 + [False] * 3, 5)
    monkeypatch.setattr(protocol, "_BLOCK_ELEMENTS", 2 * 40 * 3)
    from apps.signature_verification.cohort import fit_calibration

    calibration = fit_calibration(emb, w, g, references=3, cohort_writers=2)  # rule "calibrated"
    for rule in protocol.RULES:
        s = protocol.verification_scores(emb, w, g, references=3, rule=rule, calibration=calibration)
        refs = protocol.reference_indices(w, g, 3)
        for writer, ref in refs.items():
            expected = protocol.score_matrix(emb, emb[ref], rule, calibration)
            np.testing.assert_allclose(
                s["skilled"][s["skilled_writer"] == writer], expected[(w == writer) & ~g]
            )


# --------------------------------------------------------------------------- command line


def _last_json(text):
    return json.loads([line for line in text.strip().splitlines() if line.startswith("{")][-1])


def test_cli_help(capsys):
    from apps.signature_verification.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "train", "evaluate", "enroll", "verify", "demo"):
        assert command in out
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0 and "--backend" in capsys.readouterr().out


def test_cli_backend_must_match_a_loaded_keras(tmp_path, capsys):
    """`--backend` sets KERAS_BACKEND before Keras is imported; once Keras is loaded with
    another backend it cannot, and says so in one line."""
    import keras

    from apps.signature_verification.__main__ import main

    other = next(b for b in ("tensorflow", "jax", "torch") if b != keras.backend.backend())
    with pytest.raises(SystemExit, match=f"^error: --backend {other} but Keras is already loaded"):
        main(["generate", str(tmp_path / "x"), "--writers", "1", "--backend", other])
    assert (
        main(
            [
                "generate",
                str(tmp_path / "x"),
                "--writers",
                "1",
                "--genuine",
                "1",
                "--forgeries",
                "0",
                "--backend",
                keras.backend.backend(),
            ]
        )
        == 0
    )


def test_cli_bad_data_is_one_line(tmp_path):
    """A folder in no known layout, or whose images cannot be read, ends `evaluate`,
    `train` and `calibrate` with one `error:` line, not a traceback from Keras."""
    from apps.signature_verification.__main__ import main

    model = os.path.join(ROOT, "saved_models", "signature_hog_metric.keras")
    (tmp_path / "none" / "w1").mkdir(parents=True)
    (tmp_path / "none" / "w1" / "a.png").write_text("junk")
    for kind in ("genuine", "forged"):
        for writer in ("w1", "w2"):
            (tmp_path / "junk" / writer / kind).mkdir(parents=True)
            (tmp_path / "junk" / writer / kind / "a.png").write_text("junk")
    for argv, message in (
        (["evaluate", str(tmp_path / "none"), "--model", model], "no known signature layout"),
        (["train", str(tmp_path / "none"), "--out", str(tmp_path / "m.keras")], "no known signature layout"),
        (["evaluate", str(tmp_path / "junk"), "--model", model], "could be read"),
        (["calibrate", str(tmp_path / "junk"), "--model", str(tmp_path / "copy.keras")], "could be read"),
    ):
        if argv[0] == "calibrate":
            shutil.copy(model, tmp_path / "copy.keras")
            shutil.copy(model + ".json", tmp_path / "copy.keras.json")
            cnn = os.path.join(ROOT, "saved_models", "signature_verification.keras")
            shutil.copy(cnn, tmp_path / "signature_verification.keras")  # its partner (the shipped pair)
        with pytest.raises(SystemExit, match=f"^error: .*{message}"):
            main(argv)


def test_cli_train_evaluate_enroll_verify(tmp_path, capsys):
    from apps.signature_verification.__main__ import main

    data = str(tmp_path / "data")
    assert (
        main(["generate", data, "--writers", "6", "--genuine", "6", "--forgeries", "4", "--seed", "1"]) == 0
    )
    (tmp_path / "data" / "full_org" / "Thumbs.db").write_bytes(b"junk")
    model = str(tmp_path / "model.keras")
    assert (
        main(
            [
                "train",
                data,
                "--out",
                model,
                "--epochs",
                "1",
                "--size",
                "32",
                "64",
                "--width",
                "0.25",
                "--embedding-dim",
                "16",
                "--classes-per-batch",
                "2",
                "--samples-per-class",
                "2",
                "--val-fraction",
                "0.34",
                "--test-fraction",
                "0.34",
                "--references",
                "3",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    # Network options on few writers: a new network, not the shipped one fine-tuned.
    assert "training a new network from scratch" in capsys.readouterr().out
    meta = json.loads((tmp_path / "model.keras.json").read_text())
    assert meta["image_size"] == [32, 64] and meta["threshold"] > 0
    assert len(meta["split"]["train"]) == 2 and len(meta["split"]["test"]) == 2
    capsys.readouterr()

    assert main(["evaluate", data, "--model", model, "--json"]) == 0
    captured = capsys.readouterr()
    result = _last_json(captured.out)
    for key in ("eer_skilled", "eer_random", "auc_skilled", "far", "frr", "threshold"):
        assert key in result
    assert result["test_writers"] == 2  # what it is worth: test_cli_shipped_model_on_unseen_writers
    assert result["threshold"] == pytest.approx(meta["threshold"], rel=1e-4)  # same val writers
    assert "Thumbs.db" in captured.err

    writer = meta["split"]["test"][0]
    writer_dir = tmp_path / f"writer_{writer}"
    writer_dir.mkdir()
    for n in (1, 2, 3):
        shutil.copy(os.path.join(data, "full_org", f"original_{writer}_{n}.png"), writer_dir)
    (writer_dir / "Thumbs.db").write_bytes(b"junk")
    profile = str(tmp_path / "profile.json")
    assert main(["enroll", str(writer_dir), "--model", model, "--out", profile]) == 0
    stored = json.loads(open(profile).read())
    assert len(stored["references"]) == 3 and len(stored["references"][0]) == 16
    capsys.readouterr()

    # The decision is `distance <= threshold`: check it on both sides of one distance.
    forged = os.path.join(data, "full_forg", f"forgeries_{writer}_1.png")
    assert main(["verify", forged, "--profile", profile, "--json"]) == 0
    decision = _last_json(capsys.readouterr().out)
    distance = decision["distance"]
    assert 0.0 <= distance <= 2.0 and decision["threshold"] == pytest.approx(meta["threshold"])
    assert decision["accepted"] is (distance <= meta["threshold"])
    for threshold, accepted in ((distance * 1.001 + 1e-6, True), (distance * 0.999 - 1e-6, False)):
        assert main(["verify", forged, "--profile", profile, "--json", "--threshold", str(threshold)]) == 0
        decision = _last_json(capsys.readouterr().out)
        assert decision["accepted"] is accepted and decision["distance"] == pytest.approx(distance)
    assert main(["verify", forged, "--profile", profile, "--threshold", str(distance * 0.999 - 1e-6)]) == 0
    assert capsys.readouterr().out.startswith("REJECT (forgery)")


def test_cli_shipped_model_on_unseen_writers(tmp_path, capsys):
    """The command line's evaluate, enroll and verify with the shipped model on writers
    generated now: the metrics must be those of a model that works (an evaluation that
    scored against the wrong writers would give EERs near 50 %)."""
    from apps.signature_verification.__main__ import main

    data = str(tmp_path / "unseen")
    assert (
        main(["generate", data, "--writers", "30", "--genuine", "8", "--forgeries", "6", "--seed", "11"]) == 0
    )
    capsys.readouterr()
    assert main(["evaluate", data, "--model", SAVED_MODEL, "--json"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["test_writers"] == 15 and result["split"].startswith("all writers unseen")
    assert result["eer_skilled"] <= 0.2 and result["eer_random"] <= 0.05, result
    assert result["auc_skilled"] >= 0.9 and result["auc_random"] >= 0.99, result

    writer = "30"
    writer_dir = tmp_path / f"writer_{writer}"
    writer_dir.mkdir()
    for n in range(1, 6):
        shutil.copy(os.path.join(data, "full_org", f"original_{writer}_{n}.png"), writer_dir)
    profile = str(tmp_path / "profile.json")
    assert main(["enroll", str(writer_dir), "--model", SAVED_MODEL, "--out", profile]) == 0
    capsys.readouterr()
    verdicts = {}
    for name, path in (
        ("genuine", ("full_org", f"original_{writer}_8.png")),
        ("other writer", ("full_org", "original_1_1.png")),
    ):
        assert main(["verify", os.path.join(data, *path), "--profile", profile, "--json"]) == 0
        verdicts[name] = _last_json(capsys.readouterr().out)
    assert verdicts["genuine"]["accepted"] is True, verdicts
    assert verdicts["other writer"]["accepted"] is False, verdicts


# --------------------------------------------------------------------------- shipped artefacts


def test_saved_model_loads_and_embeds():
    """It loads on this backend and gives the embeddings recorded when it was trained
    (on JAX): the same network on every backend."""
    from apps.signature_verification.training import check_inputs, load_model

    model, meta = load_model(SAVED_MODEL)
    assert os.path.getsize(SAVED_MODEL) < 5_000_000
    assert meta["threshold"] > 0 and len(meta["image_size"]) == 2
    x = check_inputs(tuple(meta["image_size"]))
    emb = model.embed(x)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, np.asarray(meta["check_embeddings"]), atol=1e-4)


@pytest.fixture(scope="module")
def unseen_writers():
    """40 writers generated now (8 genuine signatures, 8 skilled forgeries each): the
    shipped model's embeddings and the raw pixels, with writer ids and genuine flags."""
    from apps.signature_verification.training import load_model

    model, meta = load_model(SAVED_MODEL)
    data = synthetic.generate_signatures(40, 8, 8, seed=12)
    x = preprocessing.preprocess_batch([s.image for s in data], tuple(meta["image_size"]))
    raw = x.reshape(len(x), -1)
    return {
        "model": model.embed(x, batch_size=128),
        "raw": raw / np.linalg.norm(raw, axis=1, keepdims=True),
        "writers": np.array([s.writer for s in data]),
        "genuine": np.array([s.genuine for s in data]),
    }


def mean_scores(embeddings, writers, genuine, draws=4):
    """The protocol's EERs and AUC (3 references, rule `min`), averaged over `draws`
    random choices of the references: on 40 writers one choice moves the skilled EER by
    about 3 points, more than the gap being measured."""
    from apps.signature_verification.evaluation import score_writers

    runs = [
        score_writers(embeddings, writers, genuine, references=3, rule="min", seed=k)[0] for k in range(draws)
    ]
    return {k: float(np.mean([r[k] for r in runs])) for k in ("eer_skilled", "auc_skilled", "eer_random")}


def test_saved_model_beats_raw_pixels(unseen_writers):
    """What the shipped model is worth: on writers that did not exist when it was
    trained, it separates genuine signatures from skilled forgeries better than raw
    pixels. Measured on this set (the same on every backend): skilled EER 9.6 % against
    18.7 %, AUC 0.966 against 0.893; random-forgery EER 1.3 % against 2.3 % (HOG, for
    reference: 5.8 %, 0.988, 0 %). The 13.8-15.9 % quoted here before is what the model
    gives when the raw-pixel normalisation rescales the images in place before it embeds
    them (14.2 % on this set)."""
    u = unseen_writers
    model = mean_scores(u["model"], u["writers"], u["genuine"])
    raw = mean_scores(u["raw"], u["writers"], u["genuine"])
    scores = {k: (round(model[k], 3), round(raw[k], 3)) for k in model}
    assert model["eer_skilled"] <= 0.13 and model["eer_skilled"] <= raw["eer_skilled"] - 0.05, scores
    assert model["auc_skilled"] >= raw["auc_skilled"] + 0.04, scores
    assert model["eer_random"] <= 0.05, scores


def test_evaluation_is_label_sensitive(unseen_writers):
    """Scoring the same embeddings against shuffled writer ids loses (an evaluation that
    ignored whose signature is whose would not)."""
    u = unseen_writers
    perm = np.random.default_rng(0).permutation(len(u["writers"]))
    right = mean_scores(u["model"], u["writers"], u["genuine"], draws=1)
    shuffled = mean_scores(u["model"], u["writers"][perm], u["genuine"][perm], draws=1)
    assert right["eer_random"] <= 0.05 and shuffled["eer_random"] >= 0.3, (right, shuffled)
    assert shuffled["eer_skilled"] - right["eer_skilled"] >= 0.2, (right, shuffled)


def test_notebook_is_valid_and_compiles():
    nb = json.loads(open(NOTEBOOK).read())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for cell in code:
        source = "".join(cell["source"])
        compile(
            "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))),
            "<cell>",
            "exec",
        )


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="the notebook executes once per suite run, on the TensorFlow pass",
)
def test_notebook_executes(tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
