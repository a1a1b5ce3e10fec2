"""`tf.distribute.MirroredStrategy` on 2 logical CPUs against one device; 2 workers on
localhost under `MultiWorkerMirroredStrategy` (`tensorflow_multiworker.py`, started first:
they run beside the rest); the one-line errors of bad set-ups (see `_common.py`)."""

import json
import os
import socket
import subprocess
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def start_workers():
    """The 2 worker processes, or the reason they cannot start (no free local ports)."""
    sockets = []
    try:
        for _ in range(2):
            sockets.append(socket.socket())
        for s in sockets:  # both bound at once: two different free ports
            s.bind(("127.0.0.1", 0))
        ports = ",".join(str(s.getsockname()[1]) for s in sockets)
    except OSError as error:
        return f"cannot bind a local port: {error}"
    finally:
        for s in sockets:
            s.close()
    script = os.path.join(HERE, "tensorflow_multiworker.py")
    # TensorFlow's logs go to files: a full pipe would stall a worker until the end.
    workers = []
    for i in range(2):
        log = tempfile.TemporaryFile("w+")
        process = subprocess.Popen(
            [sys.executable, script, str(i), ports], stdout=subprocess.PIPE, stderr=log, text=True
        )
        workers.append((process, log))
    return workers


workers = start_workers()

import tensorflow as tf  # noqa: E402

REPLICAS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)],
)

import _common  # noqa: E402
import numpy as np  # noqa: E402

x, y = _common.data()
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
results, references = {}, {}
for name, loss_kwargs, memory_size, mining in _common.CASES:
    if mining == "global":
        reference = _common.model(loss_kwargs, memory_size)
    else:
        reference = _common.model(loss_kwargs, memory_size, loss=_common.sliced_loss(loss_kwargs, REPLICAS))
    reference = references[name] = _common.train(reference, x, y)
    with strategy.scope():
        parallel = _common.model(loss_kwargs, memory_size, mining)
    results[name] = _common.compare(reference, _common.train(parallel, x, y))
with strategy.scope():  # the models of the bad set-ups are built under the strategy
    results["errors"] = _common.bad_setup_errors(x, y)
results["example_map@r"] = _common.run_example("tensorflow", strategy=strategy)

# The 2 workers: one device's weights on the same global batches.
if isinstance(workers, str):
    results["multi-worker"] = {"skipped": workers}
else:
    ranks = []
    for worker, log in workers:
        out, _ = worker.communicate(timeout=400)
        log.seek(0)
        err = log.read()
        lines = [line for line in out.splitlines() if line.startswith("RESULTS ")]
        assert worker.returncode == 0 and lines, out[-2000:] + err[-3000:]
        ranks.append(json.loads(lines[-1][len("RESULTS ") :]))
    logs, weights = ranks[0]["logs"], np.array(ranks[0]["weights"])
    results["multi-worker"] = _common.compare(references["semi-hard"], (logs, weights, None, {}))
    results["multi-worker"]["ranks_equal"] = ranks[0]["weights"] == ranks[1]["weights"]
_common.emit(results)
