"""One of 2 JAX processes on localhost CPU (`jax.distributed.initialize`, gloo
collectives): `keras.distribution.DataParallel` over both processes' devices, each
process feeding its half of every global batch (see `jax_checks.py`, which starts both)."""

import os
import sys

PROCESSES = 2
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

# CPU collectives across processes (jax 0.10): gloo, over the coordinator's TCP store.
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=PROCESSES, process_id=process_id)

import _common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

assert jax.process_count() == PROCESSES and len(jax.devices()) == PROCESSES, jax.devices()
# Each process feeds its own rows: Keras must not shard the data again.
keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
)
x, y = _common.data()
share = _common.GLOBAL_BATCH // PROCESSES
rows = np.concatenate(
    [np.arange(s, s + share) + process_id * share for s in range(0, len(x), _common.GLOBAL_BATCH)]
)
logs, weights, _, _ = _common.train(_common.model({"miner": "semi-hard"}), x[rows], y[rows], batch_size=share)
_common.emit({"logs": logs, "weights": weights.tolist()})
jax.distributed.shutdown()
