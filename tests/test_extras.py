"""Each extra of pyproject.toml brings what its features import.

First a fresh virtual environment (no system site-packages) gets the package and JAX
alone, `pip install "keras_triplet-*.whl[jax]"` (JAX: the smallest backend to install).
For every extra, a copy of it (an environment of its own: nothing is shared) gets
`pip install "keras_triplet-*.whl[jax,extra]"` and runs the extra's features on tiny
data: the plotting functions, the quick start's data split, the faiss index, the apps'
feature extraction, preprocessing and figures. A feature that imports a package its
extra does not list fails here with `ModuleNotFoundError`. The apps are not part of the
wheel; the checks import them from this checkout, after the installed `keras_triplet`.

Slow (a few minutes of pip installs, two environments at a time), so it runs in one of
CI's three passes only: the JAX pass. pip may use its cache and local wheel folders.
"""

import concurrent.futures
import os
import shutil
import subprocess
import sys
import textwrap
import time

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="installs every extra in a fresh virtual environment (minutes): run once, in the JAX pass",
)

_PRELUDE = """
import os, sys, tempfile
import numpy as np
import keras_triplet
assert not keras_triplet.__file__.startswith(ROOT), keras_triplet.__file__  # the installed one
sys.path.append(ROOT)  # the apps, from the checkout (after the installed keras_triplet)
out = tempfile.mkdtemp()
rng = np.random.default_rng(0)
"""

CHECKS = {
    "plots": """
        from keras_triplet import plots
        x = rng.normal(size=(40, 6)); y = np.arange(40) % 4
        d, same = keras_triplet.metrics.pair_distances(x, y)
        plots.distance_histograms(x, y, path=os.path.join(out, "h.png"))
        plots.roc_curve_plot(d, same, log_far=True, path=os.path.join(out, "roc.png"))
        plots.det_curve_plot(d, same, path=os.path.join(out, "det.png"))
        plots.embedding_projection(x, y, method="pca", path=os.path.join(out, "pca.png"))
        plots.embedding_projection(x, y, method="tsne", tsne_kwargs={"max_iter": 250})
        plots.neighbors_grid(np.zeros((2, 8, 8)), np.ones((2, 3, 8, 8)))
    """,
    "quickstart": """
        from apps import digits_quickstart
        x_train, x_test, y_train, y_test = digits_quickstart.load_split()
        assert x_train.shape[1] == 64 and len(x_test) == 599
        print(keras_triplet.metrics.retrieval_metrics(x_test, y_test)["map@r"])
    """,
    "index": """
        from keras_triplet.index import EmbeddingIndex
        index = EmbeddingIndex(backend="faiss")
        index.add(rng.normal(size=(20, 4)).astype("float32"), labels=np.arange(20) % 2)
        d, ids, labels = index.search(rng.normal(size=(3, 4)).astype("float32"), 5)
        assert d.shape == (3, 5)
    """,
    "audio": """
        import soundfile
        from apps.audio_similarity import features, plots, synth  # noqa: F401
        sr = 16000
        path = os.path.join(out, "a", "tone.wav")
        os.makedirs(os.path.dirname(path))
        soundfile.write(path, np.sin(np.arange(sr) * 0.05).astype("float32"), 44100)  # resampled
        settings = features.FeatureSettings()
        fs = features.extract_features([path], ["a"], settings, cache_dir=None, progress=True)
        assert len(fs) == 1, fs.report.rows
        plots.plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}, os.path.join(out, "c.png"))
        from keras_triplet import plots as kplots
        kplots.embedding_projection(rng.normal(size=(30, 4)), np.arange(30) % 3, method="tsne")
    """,
    "signature": """
        from apps.signature_verification import plots, preprocessing, synthetic  # noqa: F401
        from PIL import Image
        img = np.full((80, 200), 255, np.uint8); img[30:50, 40:160] = 0
        path = os.path.join(out, "s.png")
        Image.fromarray(img).save(path)
        x = preprocessing.load_image(path)
        assert x.ndim >= 2 and np.isfinite(x).all()
        from keras_triplet import plots as kplots
        d = rng.random(40); same = np.arange(40) % 2 == 0
        kplots.det_curve_plot(d, same); kplots.roc_curve_plot(d, same, log_far=True)
    """,
}


def _wheel(tmp):
    """Builds the package's wheel once, from a copy of what it is made of (a build in the
    checkout would leave build/ and *.egg-info behind)."""
    src = os.path.join(tmp, "src")
    shutil.copytree(
        os.path.join(ROOT, "keras_triplet"),
        os.path.join(src, "keras_triplet"),
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), src)
    dist = os.path.join(tmp, "dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src])
    (wheel,) = os.listdir(dist)
    return os.path.join(dist, wheel)


def _run(cmd, env=None, **kwargs):
    # Nothing of this process's environment may leak in: PYTHONPATH (a checkout with an
    # .egg-info reads as "already installed" to pip), a virtual environment, a backend.
    env = {
        k: v
        for k, v in (env or os.environ).items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KERAS_BACKEND")
    }
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kwargs)
    if done.returncode:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}"
        )
    return done


def _pip_install(python, requirement):
    # --no-compile: byte-compiling SciPy, scikit-learn, matplotlib... would double the time.
    _run([python, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check", requirement])


def _base_venv(tmp, wheel):
    """A fresh environment with the package and JAX alone (`wheel[jax]`): the starting
    point of every extra's environment, so JAX is unpacked once, not once per extra."""
    venv = os.path.join(tmp, "venv-base")
    # From the base interpreter: this process may itself run in a virtual environment.
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv])
    _pip_install(os.path.join(venv, "bin", "python"), f"{wheel}[jax]")
    return venv


def _install_and_check(tmp, wheel, base, extra):
    """Copies the base environment (its interpreter is a link to the base Python and it
    finds its packages relative to itself, so the copy is an environment of its own),
    installs `wheel[jax,extra]` into it and runs the extra's check."""
    start = time.perf_counter()
    venv = os.path.join(tmp, f"venv-{extra}")
    shutil.copytree(base, venv, symlinks=True)
    python = os.path.join(venv, "bin", "python")
    _pip_install(python, f"{wheel}[jax,{extra}]")
    script = "import os; os.environ['KERAS_BACKEND'] = 'jax'\n" + f"ROOT = {ROOT!r}\n"
    script += _PRELUDE + textwrap.dedent(CHECKS[extra])
    _run([python, "-c", script], cwd=tmp, env=dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1"))
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def installs(tmp_path_factory):
    """`{extra: seconds or the exception}`, two environments at a time."""
    tmp = str(tmp_path_factory.mktemp("extras"))
    start = time.perf_counter()
    wheel = _wheel(tmp)
    base = _base_venv(tmp, wheel)
    results = {"wheel and base environment": time.perf_counter() - start}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {extra: pool.submit(_install_and_check, tmp, wheel, base, extra) for extra in CHECKS}
        for extra, future in futures.items():
            try:
                results[extra] = future.result()
            except Exception as e:  # reported by the extra's own test
                results[extra] = e
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def test_every_extra_is_checked():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f)["project"]["optional-dependencies"])
    backends_and_tools = {"tensorflow", "jax", "torch", "dev"}
    assert extras - backends_and_tools == set(CHECKS)


@pytest.mark.parametrize("extra", sorted(CHECKS))
def test_extra_alone_runs_its_features(installs, extra):
    result = installs[extra]
    if isinstance(result, Exception):
        raise result
    print(
        f"{extra}: {result:.0f} s (the wheel and the base environment: {installs['wheel and base environment']:.0f} s)"
    )
