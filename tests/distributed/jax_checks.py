"""`keras.distribution.DataParallel` on 4 virtual JAX CPU devices against one device;
`ModelParallel` on a 2×2 mesh; 2 JAX processes on localhost (`jax_multiprocess.py`,
started first: they run beside the rest); the one-line errors of bad set-ups (see
`_common.py`)."""

import json
import os
import socket
import subprocess
import sys

REPLICAS = 4
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={REPLICAS}"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def start_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = os.path.join(HERE, "jax_multiprocess.py")
    return [
        subprocess.Popen(
            [sys.executable, script, str(i), port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]


processes = start_processes()

import _common  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

assert len(jax.devices()) == REPLICAS, jax.devices()
x, y = _common.data()
results, references = {}, {}
for name, loss_kwargs, memory_size, mining in _common.CASES:
    evaluation = name == "batch-hard"
    keras.distribution.set_distribution(None)
    if mining == "global":
        reference = _common.model(loss_kwargs, memory_size)
    else:
        reference = _common.model(loss_kwargs, memory_size, loss=_common.sliced_loss(loss_kwargs, REPLICAS))
    references[name] = reference = _common.train(reference, x, y, evaluation=evaluation)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    parallel = _common.train(_common.model(loss_kwargs, memory_size, mining), x, y, evaluation=evaluation)
    results[name] = _common.compare(reference, parallel)

# ModelParallel: a 2 (batch) × 2 (model) mesh; the Dense kernels split over `model`.
mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"], devices=jax.devices())
layout_map = keras.distribution.LayoutMap(mesh)
layout_map[".*dense.*kernel"] = (None, "model")
keras.distribution.set_distribution(
    keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
)
model = _common.model({"miner": "semi-hard"})
results["model-parallel"] = _common.compare(references["semi-hard"], _common.train(model, x, y))
kernel = model.embedder.layers[0].kernel.value
results["model-parallel"]["kernel_sharding"] = str(kernel.sharding.spec)

# Bad set-ups: the one-line errors, before JAX's own (4 devices, DataParallel).
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
results["errors"] = _common.bad_setup_errors(x, y)
keras.distribution.set_distribution(None)
results["example_map@r"] = _common.run_example("jax")

# The 2 processes: one device's weights on the same global batches.
ranks = []
for process in processes:
    out, err = process.communicate(timeout=400)
    lines = [line for line in out.splitlines() if line.startswith("RESULTS ")]
    assert process.returncode == 0 and lines, out[-2000:] + err[-3000:]
    ranks.append(json.loads(lines[-1][len("RESULTS ") :]))
logs, weights = ranks[0]["logs"], np.array(ranks[0]["weights"])
results["multi-process"] = _common.compare(references["semi-hard"], (logs, weights, None, {}))
results["multi-process"]["ranks_equal"] = ranks[0]["weights"] == ranks[1]["weights"]
_common.emit(results)
