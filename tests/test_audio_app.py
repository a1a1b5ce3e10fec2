"""apps/audio_similarity: features, cache, bad-file report, CLI end to end, shipped model.

Runs on the current backend (KERAS_BACKEND). The tiny built-in data set and its
features are made once per session (module fixtures). The end-to-end test trains a
small model through the command line's `main(argv)` and checks that on clips of
classes it never saw it beats the MFCC baseline; the shipped model must beat it by far
on freshly generated clips; and scoring against shuffled labels must lose.
"""

import io
import json
import os
import shutil
import wave

import keras
import librosa  # noqa: E402, F401 - the audio extra, part of the dev install: missing fails here, by name
import numpy as np
import pytest
import soundfile  # noqa: E402

from apps._common import SkipReport  # noqa: E402
from apps.audio_similarity import __main__ as cli  # noqa: E402
from apps.audio_similarity import features as F  # noqa: E402
from apps.audio_similarity import synth  # noqa: E402
from apps.audio_similarity.augment import Augmenter  # noqa: E402
from apps.audio_similarity.data import BadAudio, load_audio, scan_folder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL = os.path.join(ROOT, "saved_models", "audio_similarity.keras")
NOTEBOOK = os.path.join(ROOT, "notebooks", "audio_similarity.ipynb")
SR = 16000


def tone(seconds=0.5, freq=440.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny built-in data set: 4 sources (6 training, 2 held-out classes), 6 clips each."""
    root = tmp_path_factory.mktemp("audio_data")
    manifest = synth.make_dataset(root, num_sources=4, clips_per_class=6, progress=False)
    return root, manifest


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """Enough classes to learn from: 12 sources (20 training, 4 held-out classes), 8
    clips each, and a fresh held-out folder of 20 other clips per held-out class."""
    root = tmp_path_factory.mktemp("audio_learnable")
    manifest = synth.make_dataset(root, num_sources=12, clips_per_class=8, progress=False)
    held = [(s, v, name) for _, s, v, name, h in synth.class_list(12) if h]
    assert [name for *_, name in held] == manifest["heldout_classes"]
    write_clips(root / "fresh", held, range(100, 120))
    return root


def write_clips(folder, classes, clips):
    """`folder/<class>/<clip>.wav` for every `(source, variant, name)` of `classes`."""
    for s, v, name in classes:
        os.makedirs(folder / name, exist_ok=True)
        for i in clips:
            soundfile.write(folder / name / f"{i:03d}.wav", synth.synthesize(s, v, i), SR, subtype="PCM_16")


def fresh_heldout_set(clips=range(100, 106)):
    """Unseen clips of the 12 held-out classes of the built-in data, as a `FeatureSet`
    (synthesised in memory: no files)."""
    held = [(s, v, name) for _, s, v, name, h in synth.class_list() if h]
    feats, labels = [], []
    for k, (s, v, _) in enumerate(held):
        for i in clips:
            feats.append(F.log_mel(synth.synthesize(s, v, i)))
            labels.append(k)
    return F.FeatureSet(
        feats,
        np.array(labels),
        [name for *_, name in held],
        [f"{name}/{i}" for *_, name in held for i in clips],
        SkipReport(),
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("audio_cache"))


# ------------------------------------------------------------------------ data & features


def test_synth_is_seeded_and_split(tiny):
    root, manifest = tiny
    assert manifest["num_classes"] == 8 and manifest["num_clips"] == 48
    assert manifest["heldout_classes"] == ["03a_vibrato_decay", "03b_vibrato_swell"]
    a, b = synth.synthesize(1, 0, 3, seed=0), synth.synthesize(1, 0, 3, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synth.synthesize(1, 0, 4, seed=0))
    full = synth.class_list()  # the default set: 48 classes, 12 held out, all families
    held = [name for *_, name, h in full if h]
    assert len(full) == 48 and len(held) == 12
    assert {n.split("_")[1] for n in held} == set(synth.FAMILIES)
    paths, names = scan_folder(os.path.join(root, "train"))
    assert len(paths) == 36 and len(set(names)) == 6
    # A second call with the same parameters leaves the data set alone.
    assert synth.make_dataset(root, num_sources=4, clips_per_class=6, progress=False) == manifest


def test_log_mel_defaults_and_peak_band():
    x = F.log_mel(tone(1.0, freq=1000.0))
    assert x.shape == (101, 64) and x.dtype == np.float32
    s = F.FeatureSettings()
    assert (s.win_length, s.hop_length, s.n_mels) == (400, 160, 64)

    centres = librosa.mel_frequencies(n_mels=66, fmin=s.fmin, fmax=s.sample_rate / 2)[1:-1]
    peak = centres[int(np.argmax(x[50]))]
    assert 850 < peak < 1150
    assert x.max() - x.min() > 40  # a tone stands far above the empty bands


def test_load_audio_mixes_down_and_resamples(tmp_path):
    stereo = np.stack([tone(0.5, 300, sr=22050), tone(0.5, 300, sr=22050)], axis=1)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 22050)
    y = load_audio(path, sample_rate=SR)
    assert y.ndim == 1 and abs(len(y) - SR // 2) <= 2
    with pytest.raises(BadAudio, match="too short"):
        soundfile.write(tmp_path / "short.wav", tone(0.05), SR)
        load_audio(tmp_path / "short.wav")


def test_feature_cache_reuse_and_resume(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    paths, names = scan_folder(os.path.join(root, "heldout"))
    cache = str(tmp_path / "cache")
    # An interrupted first run: extraction dies at the 5th file.
    real, calls = F.log_mel, []

    def flaky(y, settings=F.FeatureSettings()):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(y, settings)

    monkeypatch.setattr(F, "log_mel", flaky)
    with pytest.raises(KeyboardInterrupt):
        F.extract_features(paths, names, cache_dir=cache, progress=False)
    monkeypatch.setattr(F, "log_mel", real)
    resumed = F.extract_features(paths, names, cache_dir=cache, progress=False)
    assert resumed.computed == len(paths) - 4  # the 4 finished entries were kept
    leftovers = [f for _, _, fs in os.walk(cache) for f in fs if ".tmp" in f]
    assert leftovers == []

    def boom(*a, **k):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(F, "log_mel", boom)
    again = F.extract_features(paths, names, cache_dir=cache, progress=False)
    assert again.computed == 0 and len(again) == len(paths)
    for a, b in zip(resumed.features, again.features):
        np.testing.assert_array_equal(a, b)
    # Keyed by content: a renamed copy is still a hit; other settings are a miss.
    moved = tmp_path / "moved.wav"
    shutil.copyfile(paths[0], moved)
    assert F.extract_features([str(moved)], ["x"], cache_dir=cache, progress=False).computed == 0
    monkeypatch.setattr(F, "log_mel", real)
    other = F.FeatureSettings(n_mels=32)
    fs32 = F.extract_features(paths[:2], names[:2], other, cache_dir=cache, progress=False)
    assert fs32.computed == 2 and fs32.features[0].shape[1] == 32


def test_windows_and_augmenter():
    x = np.arange(30 * 4, dtype=np.float32).reshape(30, 4)
    assert F.fit_window(x, 10).shape == (10, 4)
    np.testing.assert_array_equal(F.fit_window(x, 10, offset=3), x[3:13])
    padded = F.fit_window(x[:6], 10)
    assert padded.shape == (10, 4) and np.all(padded[:2] == x[:6].min())
    w = F.eval_windows(x, 10)
    assert w.shape[1:] == (10, 4)
    np.testing.assert_array_equal(w[-1], x[-10:])  # the last window ends with the clip
    aug = Augmenter(frames=16)
    a = aug(np.random.default_rng(0).normal(-40, 5, (40, 8)), np.random.default_rng(1))
    b = aug(np.random.default_rng(0).normal(-40, 5, (40, 8)), np.random.default_rng(1))
    assert a.shape == (16, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(a))


def _bad_folder(root, tiny_root):
    """Good files of two classes plus one file of each kind of bad input."""
    good = os.path.join(tiny_root, "heldout")
    for cls in sorted(os.listdir(good)):
        shutil.copytree(os.path.join(good, cls), os.path.join(root, cls))
    bad = os.path.join(root, sorted(os.listdir(good))[0])
    open(os.path.join(bad, "empty.wav"), "wb").close()
    with open(os.path.join(bad, "corrupt.wav"), "wb") as f:
        f.write(np.random.default_rng(0).bytes(3000))
    with open(os.path.join(bad, "notes.mp3"), "w") as f:
        f.write("this is a text file, not audio\n" * 20)
    with open(os.path.join(bad, "truncated.wav"), "wb") as f:
        buf = io.BytesIO()
        soundfile.write(buf, tone(1.0), SR, format="WAV")
        f.write(buf.getvalue()[:30])  # cut inside the header
    soundfile.write(os.path.join(bad, "silent.wav"), np.zeros(SR, np.float32), SR)
    soundfile.write(os.path.join(bad, "short.flac"), tone(0.03), SR)
    with wave.open(os.path.join(bad, "no_samples.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR)
    return {
        "empty.wav": "empty",
        "corrupt.wav": "corrupt",
        "notes.mp3": "corrupt",
        "truncated.wav": "corrupt",
        "silent.wav": "silent",
        "short.flac": "too short",
        "no_samples.wav": "no audio samples",
    }


# ---------------------------------------------------------------------- command line


def test_cli_help(capsys):
    for command in ("train", "evaluate", "index", "query", "demo"):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        assert "--backend" in capsys.readouterr().out
    other = next(b for b in ("tensorflow", "jax", "torch") if b != keras.backend.backend())
    with pytest.raises(SystemExit, match=f"^error: --backend {other} but Keras is already loaded"):
        cli.main(["evaluate", "DATA", "--model", "m.keras", "--backend", other])


def test_cli_end_to_end(tiny, learnable, cache_dir, tmp_path, capsys, monkeypatch):
    """train (interrupted, resumed) -> evaluate (--json, --baseline mfcc) on unseen
    classes, where the model must beat the baseline -> index (with bad files) -> query."""
    from apps.audio_similarity import training

    root, manifest = tiny
    model = str(tmp_path / "model.keras")
    small = ["--cache-dir", cache_dir, "--quiet"]
    # 2 x 60 steps of 8 x 4 clips: enough to learn the temporal contrasts that the MFCC
    # statistics cannot see. Measured on the fresh clips, Recall@1 / MAP@R: trained 0.86 /
    # 0.51 (JAX), 0.73 / 0.39 (TensorFlow), 0.83 / 0.38 (PyTorch), the same in repeated
    # runs (the augmentation is seeded per example, whatever the parallel loading); the
    # same model untrained (learning rate 0) 0.56 / 0.23; the MFCC baseline 0.46 / 0.27.
    # The EER (trained 0.19-0.30, untrained 0.40, baseline 0.29) moves too much with the
    # backend to be asserted here.
    train = [
        "train",
        str(learnable / "train"),
        "--out",
        model,
        "--epochs",
        "2",
        "--steps-per-epoch",
        "60",
        "-P",
        "8",
        "-K",
        "4",
        "--frames",
        "48",
        "--lr",
        "5e-3",
        "--width",
        "4",
        "--dim",
        "16",
        "--verbose",
        "0",
        # The recipe the numbers above were measured with, pinned whatever the defaults
        # (--loss triplet also logs the mining statistics asserted below).
        "--loss",
        "triplet",
        "--augment",
        "basic",
        *small,
    ]
    real_write = training.write_json

    def interrupt_after_first_epoch(path, obj):
        real_write(path, obj)
        if path.endswith(".partial.json") and obj["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_json", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        cli.main(train)
    monkeypatch.setattr(training, "write_json", real_write)
    assert os.path.exists(str(tmp_path / "model.partial.keras"))
    capsys.readouterr()
    assert cli.main(train) == 0
    assert "resuming from" in capsys.readouterr().err
    for suffix in (".keras", ".keras.json", ".history.json", ".curves.png", ".skipped.tsv"):
        assert os.path.exists(str(tmp_path / "model") + suffix), suffix
    assert not os.path.exists(str(tmp_path / "model.partial.keras"))
    history = json.load(open(tmp_path / "model.history.json"))
    assert len(history["loss"]) == 2 and "active_fraction" in history
    capsys.readouterr()

    assert (
        cli.main(
            [
                "evaluate",
                str(learnable / "fresh"),
                "--model",
                model,
                "--baseline",
                "mfcc",
                "--json",
                "--report",
                str(tmp_path / "evaluate.skipped.tsv"),  # not the checkout's runs/
                *small,
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)  # stdout holds exactly one JSON object
    assert result["num_files"] == 80 and result["num_classes"] == 4
    scores = {
        k: (round(result[k], 3), round(result["baseline_" + k], 3)) for k in ("recall@1", "map@r", "eer")
    }
    assert result["recall@1"] >= 0.65 and result["recall@1"] >= result["baseline_recall@1"] + 0.2, scores
    assert result["map@r"] >= result["baseline_map@r"] + 0.05, scores

    data = tmp_path / "mixed"
    expected = _bad_folder(str(data), str(root))
    index = str(tmp_path / "sounds.npz")
    report = str(tmp_path / "skipped.tsv")
    assert cli.main(["index", str(data), "--model", model, "--out", index, "--report", report, *small]) == 0
    captured = capsys.readouterr()
    assert "used 12 file(s), skipped 7" in captured.err
    rows = dict((os.path.basename(f), r) for f, r in SkipReport.read(report))
    assert set(rows) == set(expected)
    for name, reason in expected.items():
        assert reason in rows[name], (name, rows[name])

    query = sorted((data / sorted(os.listdir(data))[1]).iterdir())[0]
    assert cli.main(["query", str(query), "--index", index, "--top", "3", "--json", "--cache-dir", ""]) == 0
    answer = json.loads(capsys.readouterr().out)
    ranks = answer["neighbors"]
    assert [n["rank"] for n in ranks] == [1, 2, 3]
    assert ranks[0]["file"] == str(query.resolve()) and ranks[0]["distance"] < 1e-4
    assert all(n["label"] == query.parent.name for n in ranks[:1])
    assert [n["distance"] for n in ranks] == sorted(n["distance"] for n in ranks)
    # A bad query file is reported, not a crash.
    empty = str(data / sorted(os.listdir(data))[0] / "empty.wav")
    assert cli.main(["query", empty, "--index", index, "--cache-dir", cache_dir]) == 2
    assert "empty file" in capsys.readouterr().out


# ------------------------------------------------------------------ shipped artefacts


@pytest.fixture(scope="module")
def shipped():
    """The shipped model (with its feature settings and window length)."""
    from apps.audio_similarity.model import load_model

    assert os.path.exists(SAVED_MODEL), "saved_models/audio_similarity.keras is missing"
    return load_model(SAVED_MODEL)


def test_saved_model_loads_and_reproduces_reference(shipped):
    """It loads on this backend and gives the embeddings recorded when it was trained
    (on TensorFlow): the same network on every backend."""
    model, _, _ = shipped
    assert os.path.getsize(SAVED_MODEL) < 4 * 2**20
    meta = json.load(open(SAVED_MODEL + ".json"))
    check = meta["self_check"]
    from apps.audio_similarity.model import self_check_input

    x = self_check_input(*check["shape"])
    emb = model.embed(x, batch_size=4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, np.asarray(check["embeddings"]), atol=2e-4)


def test_saved_model_beats_mfcc_on_fresh_clips(shipped):
    """What the shipped model is worth: on clips of the 12 held-out classes that did not
    exist when it was trained, it ranks far above the MFCC baseline (measured: Recall@1
    1.00 against 0.40, MAP@R 0.92 against 0.29, EER 0.02 against 0.12)."""
    from apps.audio_similarity.evaluation import evaluate_features

    model, _, frames = shipped
    result, _ = evaluate_features(model, frames, fresh_heldout_set(), baseline="mfcc")
    scores = {
        k: (round(result[k], 3), round(result["baseline_" + k], 3)) for k in ("recall@1", "map@r", "eer")
    }
    assert result["recall@1"] >= 0.9 and result["recall@1"] >= result["baseline_recall@1"] + 0.3, scores
    assert result["map@r"] >= 0.75 and result["map@r"] >= result["baseline_map@r"] + 0.3, scores
    assert result["eer"] <= 0.06 and result["eer"] <= result["baseline_eer"] - 0.05, scores


def test_evaluation_is_label_sensitive(shipped):
    """Scoring the same embeddings against shuffled labels loses (an evaluation that
    ignored its labels would not)."""
    from apps.audio_similarity.evaluation import score_embeddings

    model, _, frames = shipped
    fs = fresh_heldout_set(range(100, 104))
    emb = F.embed_clips(model, fs.features, frames)
    right = score_embeddings(emb, fs.labels)
    shuffled = score_embeddings(emb, np.random.default_rng(0).permutation(fs.labels))
    assert right["recall@1"] >= 0.9 and shuffled["recall@1"] <= 0.4, (right, shuffled)
    assert right["map@r"] - shuffled["map@r"] >= 0.5, (right, shuffled)
    assert shuffled["eer"] - right["eer"] >= 0.25, (right, shuffled)


def test_notebook_is_valid():
    if not os.path.exists(NOTEBOOK):
        pytest.fail(f"{NOTEBOOK} is missing")
    nb = json.load(open(NOTEBOOK, encoding="utf-8"))
    assert nb["nbformat"] == 4
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            compile(
                "\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))),
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
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    os.environ.setdefault("AUDIO_SIMILARITY_ROOT", ROOT)
    client.execute()
