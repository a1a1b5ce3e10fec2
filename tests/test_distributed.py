"""Data-parallel training (`keras_triplet/models/distributed.py`) against one device.

The main test runs `tests/distributed/<backend>_checks.py` in a subprocess (the devices
must be set up before the framework starts): JAX's `keras.distribution.DataParallel` on
4 virtual CPU devices, TensorFlow's `MirroredStrategy` on 2 logical CPUs, or 2
`torch.distributed` gloo processes. Each trains the same `TripletModel` on one device and
data-parallel on the same global batches; the first step's loss and statistics and the
weights after 3 steps must agree to 1e-5. On JAX also `ModelParallel` (2×2 mesh) and 2
processes on localhost (`jax.distributed`); on TensorFlow also 2 workers on localhost
(`MultiWorkerMirroredStrategy`). Each script also collects the one-line errors of bad
set-ups. The other tests run in this process.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_triplet import TripletModel, losses
from keras_triplet.models import data_parallel, distributed, step

BACKEND = keras.backend.backend()
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = os.path.join(HERE, "distributed", f"{BACKEND}_checks.py")
    out = subprocess.run(
        [sys.executable, script], cwd=REPO, env=env, capture_output=True, text=True, timeout=500
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULTS ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS ") :])


CASES = ["semi-hard", "batch-hard", "batch-all+memory", "semi-hard/per-replica", "contrastive+memory"]


@pytest.mark.parametrize("case", CASES)
def test_data_parallel_training_equals_one_device(results, case):
    """First-step loss, logged statistics, weights after 3 SGD steps and the memory queue;
    a per-replica case against one device mining each slice alone."""
    r = results[case]
    assert r["loss_diff"] <= TOLERANCE, r
    assert r["weight_diff"] <= TOLERANCE, r
    assert r["weight_change"] > 1e-2, r  # the steps moved the weights: the check can fail
    assert r["memory_equal"], r
    if not case.endswith("per-replica"):  # the per-replica reference is a plain Keras loss
        triplet_margin = [] if case.startswith("contrastive") else ["active_fraction"]
        assert r["stat_names"] == triplet_margin + [
            "embedding_norm",
            "hard_fraction",
            "negative_distance",
            "positive_distance",
        ], r
        assert r["stat_diff"] <= TOLERANCE, r
    assert r["evaluation_diff"] <= TOLERANCE, r
    if BACKEND == "torch":
        assert r["ranks_equal"], r


def test_per_replica_mining_differs_from_global(results):
    """The switch changes the loss (each slice has fewer negatives)."""
    assert abs(results["semi-hard"]["first_loss"] - results["semi-hard/per-replica"]["first_loss"]) > 1e-3


def test_embed_and_retrieval_evaluation_under_data_parallelism(results):
    if BACKEND != "jax":
        pytest.skip("checked under keras.distribution (JAX); other backends embed per process")
    r = results["batch-hard"]
    assert "embed" in r["evaluation_names"] and "val_map@r" in r["evaluation_names"], r


def test_example_script_runs(results):
    """`examples/distributed/train_<backend>.py`, 2 steps on the virtual devices."""
    assert 0.0 < results["example_map@r"] <= 1.0


def test_model_parallel_equals_one_device(results):
    """JAX `keras.distribution.ModelParallel`, a 2 (batch) × 2 (model) mesh with the Dense
    kernels split over `model`: the first loss and the weights after 3 steps."""
    if BACKEND != "jax":
        pytest.skip("keras.distribution (JAX)")
    r = results["model-parallel"]
    assert r["kernel_sharding"] == "P(None, 'model')", r
    assert r["loss_diff"] <= TOLERANCE and r["stat_diff"] <= TOLERANCE, r
    assert r["weight_diff"] <= TOLERANCE and r["weight_change"] > 1e-2, r


def test_several_processes_equal_one_device(results):
    """JAX: 2 processes on localhost (`jax.distributed.initialize`, gloo CPU collectives),
    each feeding its half of every global batch. TensorFlow: 2 workers on localhost under
    `MultiWorkerMirroredStrategy` (`TF_CONFIG`, one CPU replica each), semi-hard."""
    if BACKEND == "torch":
        pytest.skip(
            "torch.distributed's ranks are processes already: test_data_parallel_training_equals_one_device"
        )
    r = results["multi-process" if BACKEND == "jax" else "multi-worker"]
    if "skipped" in r:
        pytest.skip(f"the workers could not start: {r['skipped']}")
    assert r["loss_diff"] <= TOLERANCE and r["stat_diff"] <= TOLERANCE, r
    assert r["weight_diff"] <= TOLERANCE and r["weight_change"] > 1e-2, r
    assert r["ranks_equal"], r
    if BACKEND == "tensorflow":  # the statistics are logged through the workaround's [1] logs
        assert r["stat_names"] == [
            "active_fraction",
            "embedding_norm",
            "hard_fraction",
            "negative_distance",
            "positive_distance",
        ], r


SPLIT_ERRORS = {
    "last_batch": "ValueError: The last batch holds 27 rows (91 rows in batches of 32) and does not split evenly over {R} replicas",
    "batch_size": "ValueError: The global batch of 31 does not split evenly over {R} replicas",
    "dataset_last_batch": "ValueError: A batch of the tf.data.Dataset does not split evenly over {R} replicas (the last, partial batch?): batch with drop_remainder=True",
    "evaluate_last_batch": "ValueError: The last batch holds 27 rows",
    "pk_dataset": "ValueError: A P×K batch of 12 = 3 classes × 4 cannot be sharded over {R} replicas",
    "pk_hint": "ValueError: A P×K batch of 12 = 3 classes × 4 cannot be sharded over {R} replicas",
    "pk_step": "ValueError: A P×K batch of 12 = 3 classes × 4 cannot be sharded over {R} replicas",
}


def test_bad_set_ups_raise_one_line_errors(results):
    """Batches that do not split over the replicas (the last, partial one included), and
    P×K batches whose slices would cut classes under per-replica mining: our one-line
    ValueError, raised before the framework's own."""
    if BACKEND == "torch":
        pytest.skip("each rank feeds its own slice: test_torch_errors")
    errors, replicas = results["errors"], {"jax": 4, "tensorflow": 2}[BACKEND]
    assert set(errors) <= set(SPLIT_ERRORS) and len(errors) >= 6, errors
    for name, message in errors.items():
        assert message.startswith(SPLIT_ERRORS[name].format(R=replicas)), (name, message)
        assert "\n" not in message, (name, message)


def test_torch_errors(results):
    if BACKEND != "torch":
        pytest.skip("torch.distributed only")
    assert results["no_process_group"].startswith("torch.distributed's process group is not initialised")
    assert results["uneven"].startswith("The global batch does not split evenly over the 2 ranks")


# ---------------------------------------------------------------------------- in process


def test_mining_must_be_global_or_per_replica():
    embedder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="mining must be 'global'"):
        TripletModel(embedder, mining="local")
    model = TripletModel(embedder, mining="per_replica")
    assert model.get_config()["mining"] == "per_replica"
    assert TripletModel.from_config(model.get_config()).mining == "per_replica"


def test_one_device_per_replica_is_global():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(4), 4)
    loss_fn = losses.TripletLoss(margin=0.2, miner="batch-all")
    assert distributed.replicas() == distributed.Replicas(1, False)
    a = step.batch_loss_and_statistics(loss_fn, y, x, training=True)
    b = step.batch_loss_and_statistics(loss_fn, y, x, training=True, mining="per_replica")
    assert float(a[0]) == float(b[0])


def test_batch_split_errors():
    distributed.check_batch_split(32, 4, samples_per_class=4)
    distributed.check_batch_split(None, 4)
    with pytest.raises(ValueError, match="does not split evenly over 4 replicas"):
        distributed.check_batch_split(30, 4)
    with pytest.raises(ValueError, match="cannot be sharded over 4 replicas"):
        distributed.check_batch_split(32, 4, samples_per_class=16)


def test_data_parallel_is_for_torch_only():
    model = TripletModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    if BACKEND == "torch":
        pytest.skip("the torch case is checked in the subprocess")
    with pytest.raises(ValueError, match="is for the PyTorch backend"):
        data_parallel(model)


def test_fit_data_checks():
    """`check_fit_data` on in-memory arrays: every batch, the last one included."""
    x = np.zeros((30, 3), "float32")
    assert distributed.check_fit_data(x, 8, 1) is x  # one replica: nothing to check
    assert distributed.check_fit_data(x[:24], 8, 4) is not None
    with pytest.raises(ValueError, match=r"^The last batch holds 6 rows \(30 rows in batches of 8\)"):
        distributed.check_fit_data(x, 8, 4)
    distributed.check_fit_data(x, 8, 4, steps=3)  # the epoch stops before the partial batch
    with pytest.raises(ValueError, match=r"slice of 6 rows must hold whole classes \(a multiple of K=4\)"):
        distributed.check_fit_data((x[:24], x[:24]), 12, 2, samples_per_class=4)
    generator = (batch for batch in [])
    assert distributed.check_fit_data(generator, None, 4) is generator  # sizes unknown


def test_data_parallel_needs_a_process_group():
    if BACKEND != "torch":
        pytest.skip("torch.distributed only")
    model = TripletModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    with pytest.raises(RuntimeError) as error:
        data_parallel(model)
    assert str(error.value) == (
        "torch.distributed's process group is not initialised: launch with torchrun and call "
        "torch.distributed.init_process_group('gloo' or 'nccl') before "
        "keras_triplet.models.data_parallel(model)."
    )
