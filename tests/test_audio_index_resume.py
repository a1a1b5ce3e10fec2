"""apps/audio_similarity `index` at scale: chunks, and resuming after `kill -9`.

An indexing subprocess (the shipped model, two files per chunk) is killed with SIGKILL as
soon as it has finished a chunk; run again, `index` takes the finished chunks as they
are, and the index it writes equals one built in a single uninterrupted run. Runs on the
current backend.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from apps.audio_similarity import __main__ as cli
from apps.audio_similarity import search, synth
from keras_triplet.index import EmbeddingIndex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL = os.path.join(ROOT, "saved_models", "audio_similarity.keras")
CLIPS = 12


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("index_resume")
    classes = [(s, v, name) for _, s, v, name, _ in synth.class_list(4)][:3]
    for s, v, name in classes:
        os.makedirs(root / name)
        for i in range(CLIPS // len(classes)):
            soundfile.write(root / name / f"{i}.wav", synth.synthesize(s, v, i), 16000)
    return root


def finished_parts(folder):
    try:
        return [n for n in os.listdir(folder) if n.endswith(".npz") and not n.startswith(".")]
    except FileNotFoundError:
        return []


def test_index_resumes_after_kill_9(collection, tmp_path, capsys):
    out = str(tmp_path / "clips.npz")
    args = ["index", str(collection), "--model", SAVED_MODEL, "--out", out, "--chunk", "2", "--quiet"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "apps.audio_similarity", *args], env=env, cwd=ROOT)
    parts = search.parts_dir(out)
    deadline = time.monotonic() + 300
    while not finished_parts(parts):
        assert process.poll() is None, "the indexing process ended before a chunk was finished"
        assert time.monotonic() < deadline, "no chunk finished in 300 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    done = len(finished_parts(parts))
    assert 1 <= done < CLIPS // 2 and not os.path.exists(out)

    assert cli.main(args) == 0
    err = capsys.readouterr().err
    resumed = int(err.split(" file(s) from the finished chunks")[0].rsplit(" ", 1)[-1])
    assert resumed >= done  # those chunks were not redone (and any finished after the count)
    assert f"used {CLIPS} file(s), skipped 0" in err
    assert not os.path.exists(parts)  # merged, then removed

    fresh = str(tmp_path / "fresh.npz")
    assert (
        cli.main(
            ["index", str(collection), "--model", SAVED_MODEL, "--out", fresh, "--quiet", "--cache-dir", ""]
        )
        == 0
    )
    a, b = EmbeddingIndex.load(out), EmbeddingIndex.load(fresh)
    assert a.ids.tolist() == b.ids.tolist() and a.labels.tolist() == b.labels.tolist()
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_a_changed_file_redoes_its_chunk_only(collection, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "clips.npz")
    args = ["index", str(collection), "--model", SAVED_MODEL, "--out", out, "--chunk", "4", "--quiet"]
    args += ["--cache-dir", str(tmp_path / "cache")]

    def crash(*a, **k):  # every chunk is finished, the merged index is not written
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(search, "save_index", crash)
        with pytest.raises(KeyboardInterrupt):
            cli.main(args)
    assert len(finished_parts(search.parts_dir(out))) == CLIPS // 4
    capsys.readouterr()
    touched = collection / sorted(os.listdir(collection))[0] / "0.wav"
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    # The chunk holding the touched file is embedded again (its spectrograms come from
    # the cache: the content did not change); the two others are taken as they are.
    assert (
        "8 file(s) from the finished chunks of an interrupted run, 0 extracted, 4 from the feature cache"
        in err
    )
    assert len(EmbeddingIndex.load(out)) == CLIPS
