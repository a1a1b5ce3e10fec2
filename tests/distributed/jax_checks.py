"""`keras.distribution.DataParallel` on 4 virtual JAX CPU devices against one device
(see `_common.py`)."""

import os
import sys

REPLICAS = 4
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={REPLICAS}"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402

assert len(jax.devices()) == REPLICAS, jax.devices()
x, y = _common.data()
results = {}
for name, loss_kwargs, memory_size, mining in _common.CASES:
    evaluation = name == "batch-hard"
    keras.distribution.set_distribution(None)
    if mining == "global":
        reference = _common.model(loss_kwargs, memory_size)
    else:
        reference = _common.model(loss_kwargs, memory_size, loss=_common.sliced_loss(loss_kwargs, REPLICAS))
    reference = _common.train(reference, x, y, evaluation=evaluation)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    parallel = _common.train(_common.model(loss_kwargs, memory_size, mining), x, y, evaluation=evaluation)
    results[name] = _common.compare(reference, parallel)
results["example_map@r"] = _common.run_example("jax")
_common.emit(results)
