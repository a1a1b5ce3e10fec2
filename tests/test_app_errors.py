"""Both apps end on bad input with one line `error: ...` on stderr and exit status 2, never
a traceback: missing folders and files (checked before Keras is imported), corrupt or
truncated indexes and models, impossible sizes. And `evaluate` on few writers says how
little its rates mean.
"""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from apps.audio_similarity.__main__ import main as audio
from apps.signature_verification.__main__ import main as signature

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIO_MODEL = os.path.join(ROOT, "saved_models", "audio_similarity.keras")
SIGNATURE_MODEL = os.path.join(ROOT, "saved_models", "signature_verification.keras")


def one_line_error(capsys, main, argv, *expected):
    """Runs `main(argv)`; it must exit with status 2 after one stderr line `error: ...`
    that contains each of `expected`."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert e.value.code == 2, (e.value.code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{missing}", "--out", "{tmp}/m.keras"],
        ["evaluate", "{missing}", "--model", AUDIO_MODEL],
        ["index", "{missing}", "--model", AUDIO_MODEL, "--out", "{tmp}/i.npz"],
    ],
    ids=lambda argv: argv[0],
)
def test_audio_missing_data_folder(capsys, tmp_path, argv):
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path) for a in argv]
    one_line_error(capsys, audio, argv, "data folder", "nope", "does not exist", "DATA/<class>/<file>")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{missing}", "--out", "{tmp}/m.keras"],
        ["evaluate", "{missing}", "--model", SIGNATURE_MODEL],
    ],
    ids=lambda argv: argv[0],
)
def test_signature_missing_data_folder(capsys, tmp_path, argv):
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path) for a in argv]
    one_line_error(capsys, signature, argv, "data folder", "does not exist")


def test_missing_model_index_profile_and_image(capsys, tmp_path):
    data = str(tmp_path)
    missing = str(tmp_path / "missing.keras")
    one_line_error(
        capsys, audio, ["evaluate", data, "--model", missing], "model file", "does not exist", "train"
    )
    one_line_error(
        capsys, audio, ["query", "x.wav", "--index", str(tmp_path / "i.npz")], "index", "does not exist"
    )
    one_line_error(capsys, signature, ["evaluate", data, "--model", missing], "model file", "does not exist")
    one_line_error(
        capsys,
        signature,
        ["verify", "q.png", "--profile", str(tmp_path / "alice.profile.json")],
        "profile",
        "does not exist",
        "enroll",
    )
    profile = tmp_path / "bad.profile.json"
    profile.write_text("{not json")
    one_line_error(capsys, signature, ["verify", data, "--profile", str(profile)], "image", "is a folder")
    (tmp_path / "q.png").write_bytes(b"")
    one_line_error(
        capsys, signature, ["verify", str(tmp_path / "q.png"), "--profile", str(profile)], "not a profile"
    )


def test_generate_needs_writers(capsys, tmp_path):
    for n in ("0", "-3"):
        one_line_error(
            capsys, signature, ["generate", str(tmp_path), "--writers", n], "--writers", "at least 1"
        )
    assert os.listdir(tmp_path) == []


def test_inputs_are_checked_before_keras_is_imported():
    """A typo costs no backend start-up: the checks run before Keras is imported."""
    code = """if True:
        import sys
        from apps.audio_similarity.__main__ import main as audio
        from apps.signature_verification.__main__ import main as signature
        for main, argv in (
            (audio, ["evaluate", "nope", "--model", "m.keras"]),
            (audio, ["query", "a.wav", "--index", "nope.npz"]),
            (signature, ["evaluate", "nope", "--model", "m.keras"]),
            (signature, ["verify", "a.png", "--profile", "nope.json"]),
            (signature, ["generate", "out", "--writers", "0"]),
        ):
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == 2, e.code
        print("keras" in sys.modules, "tensorflow" in sys.modules)
    """
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"], done.stdout
    assert done.stderr.count("error: ") == 5 and "Traceback" not in done.stderr


def _real_index(path):
    from keras_triplet.index import EmbeddingIndex

    index = EmbeddingIndex()
    index.add(np.eye(4, dtype="float32"), labels=np.array(["a", "b", "c", "d"]))
    index.save(path)
    return path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle-looking"])
def test_corrupt_index_is_one_line(capsys, tmp_path, damage):
    path = str(tmp_path / "sounds.npz")
    if damage == "garbage":
        open(path, "wb").write(os.urandom(2000))
    elif damage == "pickle-looking":
        open(path, "wb").write(b"\x80\x04\x95" + os.urandom(500))  # NumPy guesses "pickled data"
    else:
        data = open(_real_index(path), "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    line = one_line_error(
        capsys, audio, ["query", "q.wav", "--index", path], "sounds.npz", "truncated, corrupted", "rebuild it"
    )
    assert "unpickl" not in line.lower()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong zip"])
def test_corrupt_model_file_is_one_line(capsys, tmp_path, damage):
    path = tmp_path / "model.keras"
    if damage == "garbage":
        path.write_bytes(os.urandom(3000))
    elif damage == "truncated":
        data = open(AUDIO_MODEL, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a model")
    for main in (audio, signature):
        line = one_line_error(capsys, main, ["evaluate", str(tmp_path), "--model", str(path)], "model.keras")
        assert "corrupt" in line and "not found" not in line.lower()


def test_evaluate_on_few_writers_gives_intervals_and_a_warning(capsys, tmp_path):
    data = str(tmp_path / "few")
    assert (
        signature(["generate", data, "--writers", "6", "--genuine", "7", "--forgeries", "3", "--seed", "2"])
        == 0
    )
    capsys.readouterr()
    assert signature(["evaluate", data, "--model", SIGNATURE_MODEL]) == 0
    captured = capsys.readouterr()
    assert "warning: only 3 test writers" in captured.err
    skilled = next(line for line in captured.out.splitlines() if "skilled forgeries:" in line)
    assert "(95% CI " in skilled, captured.out
