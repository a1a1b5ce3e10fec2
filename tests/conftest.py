"""Shared test configuration and helpers.

The suite runs once per Keras backend (``KERAS_BACKEND=tensorflow|jax|torch``); no test
loops over backends. ``tests/reference.py`` is the independent NumPy reference.
"""

import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import reference`

# JAX's persistent compilation cache, one fresh folder per suite run (removed at exit by
# the process that made it): tests that build the same network or loss again, in another
# test, an xdist worker or a subprocess (which inherit the environment), load its compiled
# executable instead of compiling it again (the key is the program and its options: a
# changed program compiles). Every compilation is cached, however short: most of a test's
# are well under JAX's default threshold of one second. Set here, before Keras imports
# JAX; a folder of the user's own (JAX_COMPILATION_CACHE_DIR) is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="keras-triplet-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import keras  # noqa: E402

# The scripts in tests/distributed/ run in their own subprocesses (test_distributed.py):
# each sets up its devices before the framework starts, so pytest must not import them
# (as --doctest-modules would). Ignored from here: a conftest.py of their own would
# shadow this module for the tests' `from conftest import ...`.
collect_ignore_glob = ["distributed/*.py"]

# Deterministic, modest property-based testing: CI must not depend on luck.
# No shrinking in CI: a failure reports its (non-minimal) example and a reproduce blob at
# once instead of spending minutes of eager-mode calls minimising it. Use
# HYPOTHESIS_PROFILE=dev locally for minimal counterexamples.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKEND = keras.backend.backend()

# The golden-fixture tests compare a sample of their cases by default, all of them with
# KERAS_TRIPLET_FULL_FIXTURES=1 (`fixture_sample`).
FULL_FIXTURES = os.environ.get("KERAS_TRIPLET_FULL_FIXTURES", "") not in ("", "0")


def fixture_sample(cases, every=1, jax_every=None, key=None):
    """Every `every`-th of the golden-fixture `cases` (all of them with
    KERAS_TRIPLET_FULL_FIXTURES=1); on JAX every `jax_every`-th, since there each case
    compiles a function of its own shapes and constants.

    The sample must still meet every input batch and every `key(case)` (e.g. each loss
    and parameter set): choose a stride for the fixture file's order that does; an
    assertion says when it does not.
    """
    cases = list(cases)
    if FULL_FIXTURES:
        return cases
    step = jax_every if (BACKEND == "jax" and jax_every) else every
    sample = cases[::step]
    for what, fn in (("input", lambda c: c["input"]), ("key", key)):
        if fn is not None:
            missing = {fn(c) for c in cases} - {fn(c) for c in sample}
            assert not missing, f"a stride of {step} never meets {what} {sorted(missing)}"
    return sample


def to_numpy(x):
    """A backend tensor (or nested dict of them) as NumPy float64 / the native dtype."""
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    x = keras.ops.convert_to_numpy(x)
    return np.asarray(x)


def value_and_grad(fn, x, dtype=None):
    """``fn(x)`` and its gradient with respect to ``x`` on the current backend.

    ``fn`` takes a backend tensor and returns a scalar tensor; ``x`` is a NumPy array whose
    dtype is kept, unless ``dtype`` ("float16", "bfloat16", ...) is given: then ``fn`` is
    fed ``x`` cast to that dtype, and the value and gradient come back as float32. Returns
    ``(value, grad)`` as NumPy arrays; a gradient the backend reports as disconnected
    (None) is returned as zeros. Test-only code: this is the one place that branches on
    the backend.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if dtype is None:
            xt = tf.convert_to_tensor(x)
            out = lambda t: t.numpy()  # noqa: E731
        else:
            xt = tf.cast(tf.convert_to_tensor(np.asarray(x, np.float32)), dtype)
            out = lambda t: tf.cast(t, "float32").numpy()  # noqa: E731
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
        grad = tape.gradient(value, xt)
        grad = (
            np.zeros(x.shape, dtype=np.float64 if dtype is None else np.float32)
            if grad is None
            else out(grad)
        )
        return np.asarray(out(value)), np.asarray(grad)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        if dtype is None:
            value, grad = jax.value_and_grad(fn)(jnp.asarray(x))
            return np.asarray(value), np.asarray(grad)
        xt = jnp.asarray(np.asarray(x, np.float32)).astype(dtype)
        value, grad = jax.value_and_grad(lambda t: fn(t).astype(jnp.float32))(xt)
        return np.asarray(value), np.asarray(grad.astype(jnp.float32))
    if backend == "torch":
        import torch

        if dtype is None:
            xt = torch.tensor(np.asarray(x))
        else:
            xt = torch.tensor(np.asarray(x, np.float32)).to(getattr(torch, dtype))
        xt.requires_grad_(True)
        value = fn(xt)
        grad = None
        if value.requires_grad:
            (grad,) = torch.autograd.grad(value, xt, allow_unused=True)
        grad = torch.zeros_like(xt) if grad is None else grad
        if dtype is not None:
            value, grad = value.float(), grad.float()
        return value.detach().cpu().numpy(), grad.detach().cpu().numpy()
    raise RuntimeError(f"unsupported backend {backend!r}")


# --------------------------------------------------------------------------- saving
# A loss's `.keras` round trip, the same for every loss file (test_saving*.py,
# test_losses_pairs.py): a plain Keras model compiled with it, one step, saved, loaded.
SAVE_X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
SAVE_Y = np.array([0, 0, 1, 1, 2, 2, 3, 3])


def assert_config_round_trip(obj):
    """A loss or miner of the kit round-trips through `get_config` / `from_config` and
    Keras' generic serialization, by its registered name; returns the restored object."""
    config = obj.get_config()
    assert type(obj).from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"].startswith("keras_triplet>"), serialized["registered_name"]
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(obj) and restored.get_config() == config
    return restored


def assert_saved_and_loaded(loss, tmp_path):
    """A model compiled with `loss`, after one step, saved to `.keras` and loaded (safe
    mode): the same predictions, the same loss class, configuration and value, and the
    same miner when the loss has one."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss)
    model.train_on_batch(SAVE_X, SAVE_Y)  # a real step, so the compiled loss is used once
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    emb = model.predict(SAVE_X, verbose=0)
    np.testing.assert_allclose(to_numpy(loaded.predict(SAVE_X, verbose=0)), to_numpy(emb), rtol=1e-6)
    restored = loaded.loss
    assert type(restored) is type(loss), f"loaded loss is {type(restored)}"
    assert restored.get_config() == loss.get_config()
    assert float(to_numpy(restored(SAVE_Y, emb))) == pytest.approx(
        float(to_numpy(loss(SAVE_Y, emb))), rel=1e-6, abs=1e-7
    )
    miner = getattr(loss, "miner", None)
    if miner is not None:
        assert type(restored.miner) is type(miner)
        assert restored.miner.get_config() == miner.get_config()


def compiled(fn):
    """``fn`` compiled as a training step would be: ``jax.jit`` on JAX,
    ``tf.function(jit_compile=True)`` on TensorFlow; PyTorch stays eager. Takes and
    returns what ``fn`` does (backend tensors in, a nest of tensors out)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def cast_input(x, dtype):
    """A NumPy array ``x`` as an input of ``dtype`` ("float16", "bfloat16", ...).

    Returns a backend tensor: NumPy cannot hold bfloat16 portably.
    """
    return keras.ops.cast(keras.ops.convert_to_tensor(np.asarray(x, dtype=np.float32)), dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_batch(seed, labels, dim=4, scale=1.0):
    """Embeddings for `labels` from a seeded normal distribution (float32-representable)."""
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(len(labels), dim)) * scale
    return x.astype(np.float32).astype(np.float64)


def make_optimizer_steps_no_ops(setattr):
    """Replaces every Keras optimizer step by one that changes nothing, on every backend.

    `setattr` is `monkeypatch.setattr` (undone after the test). Covers the three ways a
    step reaches an optimizer: `apply` (TensorFlow and PyTorch trainers), `apply_gradients`
    (user code) and `stateless_apply` (the JAX trainer), also through the mixed-precision
    `LossScaleOptimizer`. Used to prove that the learning tests notice when training
    learns nothing.
    """

    def apply(self, grads, trainable_variables=None):
        return None

    def apply_gradients(self, grads_and_vars):
        return self.iterations

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        return list(trainable_variables), list(optimizer_variables)

    for cls in (keras.optimizers.Optimizer, keras.optimizers.LossScaleOptimizer):
        setattr(cls, "apply", apply)
        setattr(cls, "apply_gradients", apply_gradients)
        setattr(cls, "stateless_apply", stateless_apply)


@pytest.fixture
def no_optimizer_steps(monkeypatch):
    """Every Keras optimizer step is a no-op for the duration of the test."""
    make_optimizer_steps_no_ops(monkeypatch.setattr)


# ------------------------------------------------------------------ parallel runs

# `make test` runs each pass on pytest-xdist workers with `--dist loadfile
# --no-loadscope-reorder`: each worker takes whole test files, in collection order. These
# files hold few tests but long ones on some backend (pip installs, subprocesses,
# notebooks, training runs): collected last, one of them would keep a worker busy long
# after the other ran out of work. Under xdist they are collected first, roughly the
# longest first (a file missing here only runs later; a name here that no longer exists
# is ignored).
LONG_FILES = (
    "tests/test_extras.py",
    "tests/test_audio_app.py",
    "tests/test_signature_app.py",
    "tests/test_learning.py",
    "tests/test_signature_training.py",
    "tests/test_readme.py",
    "tests/test_distributed.py",
    "tests/test_benchmarks.py",
    "tests/test_metrics.py",
    "tests/test_sampler.py",
    "tests/test_signature_hog_metric.py",
    "tests/test_cross_backend.py",
    "tests/test_audio_index_resume.py",
    "tests/test_serve_audio.py",
    "tests/test_app_errors.py",
)

# ------------------------------------------------------------------ doctest count

_DOCTESTS = set()


def pytest_collection_modifyitems(session, config, items):
    """Remembers the docstring examples collected by --doctest-modules (pyproject.toml);
    under pytest-xdist, puts the `LONG_FILES` first."""
    _DOCTESTS.update(item.nodeid for item in items if isinstance(item, pytest.DoctestItem))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # set in xdist's workers, which collect
        rank = {path: i for i, path in enumerate(LONG_FILES)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FILES)))


def pytest_sessionfinish(session, exitstatus):
    """Under pytest-xdist the workers collect, not the controller that prints the summary:
    each worker hands its doctest names over (`workeroutput`, read in
    `pytest_testnodedown`)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["doctests"] = sorted(_DOCTESTS)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown where xdist is absent
def pytest_testnodedown(node, error):
    """The controller gathers the doctest names its xdist workers collected."""
    _DOCTESTS.update(getattr(node, "workeroutput", {}).get("doctests", ()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line with the doctest count, so that the run shows the examples ran."""
    if not _DOCTESTS:
        return
    counts = {
        outcome: sum(
            1
            for r in terminalreporter.stats.get(outcome, ())
            if getattr(r, "nodeid", None) in _DOCTESTS and getattr(r, "when", "call") == "call"
        )
        for outcome in ("passed", "failed", "skipped")
    }
    terminalreporter.write_line(
        f"doctests (docstring examples of keras_triplet): {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['skipped']} skipped, of {len(_DOCTESTS)} collected"
    )
