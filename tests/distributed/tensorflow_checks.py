"""`tf.distribute.MirroredStrategy` on 2 logical CPUs against one device, and the one-line
errors of bad set-ups (see `_common.py`)."""

import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

REPLICAS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)],
)

import _common  # noqa: E402

x, y = _common.data()
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
results = {}
for name, loss_kwargs, memory_size, mining in _common.CASES:
    if mining == "global":
        reference = _common.model(loss_kwargs, memory_size)
    else:
        reference = _common.model(loss_kwargs, memory_size, loss=_common.sliced_loss(loss_kwargs, REPLICAS))
    reference = _common.train(reference, x, y)
    with strategy.scope():
        parallel = _common.model(loss_kwargs, memory_size, mining)
    results[name] = _common.compare(reference, _common.train(parallel, x, y))
with strategy.scope():  # the models of the bad set-ups are built under the strategy
    results["errors"] = _common.bad_setup_errors(x, y)
results["example_map@r"] = _common.run_example("tensorflow", strategy=strategy)
_common.emit(results)
