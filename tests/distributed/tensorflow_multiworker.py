"""One of 2 TensorFlow workers on localhost CPU under `MultiWorkerMirroredStrategy`
(`TF_CONFIG` from the ports given), one replica each: `fit` on the global batches, which
tf.data shards over the workers (see `tensorflow_checks.py`, which starts both)."""

import json
import os
import sys

WORKERS = 2
worker, ports = int(sys.argv[1]), sys.argv[2].split(",")
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["TF_CONFIG"] = json.dumps(
    {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": worker},
    }
)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow op

import _common  # noqa: E402

assert strategy.num_replicas_in_sync == WORKERS, strategy.num_replicas_in_sync
x, y = _common.data()
with strategy.scope():
    model = _common.model({"miner": "semi-hard"})
logs, weights, _, _ = _common.train(model, x, y)
_common.emit({"logs": logs, "weights": weights.tolist()})
