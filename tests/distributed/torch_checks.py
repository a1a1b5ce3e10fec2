"""2 `torch.distributed` processes (gloo) against one process (see `_common.py`).

The parent trains the one-process references, then spawns 2 ranks; each fits its half of
every global batch after `keras_triplet.models.data_parallel(model)`.
"""

import os
import socket
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402

import _common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from keras_triplet.models import data_parallel  # noqa: E402

RANKS = 2


def shard(x, y, rank):
    """Rank `rank`'s consecutive slice of every global batch (what a sharded loader gives)."""
    share = _common.GLOBAL_BATCH // RANKS
    rows = np.concatenate(
        [np.arange(s, s + share) + rank * share for s in range(0, len(x), _common.GLOBAL_BATCH)]
    )
    return x[rows], y[rows]


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    x, y = shard(*_common.data(), rank)
    results = {}
    for name, loss_kwargs, memory_size, mining in _common.CASES:
        model = data_parallel(_common.model(loss_kwargs, memory_size, mining))
        logs, weights, memory, end = _common.train(model, x, y, batch_size=_common.GLOBAL_BATCH // RANKS)
        results[name] = (logs, weights.tolist(), memory, end)
    try:  # slices of 16 and 15 rows
        model = data_parallel(_common.model({"miner": "batch-all"}))
        model.fit(x[: 16 - rank], y[: 16 - rank], batch_size=16, epochs=1, verbose=0)
        results["uneven"] = "no error"
    except ValueError as error:
        results["uneven"] = str(error)
    results["example_map@r"] = _common.run_example("torch")
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    torch.set_num_threads(1)
    x, y = _common.data()
    results = {}
    try:
        data_parallel(_common.model({"miner": "batch-all"}))
        results["no_process_group"] = "no error"
    except RuntimeError as error:
        results["no_process_group"] = str(error)
    references = {}
    for name, loss_kwargs, memory_size, mining in _common.CASES:
        loss = None if mining == "global" else _common.sliced_loss(loss_kwargs, RANKS)
        references[name] = _common.train(_common.model(loss_kwargs, memory_size, loss=loss), x, y)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(worker, args=(free_port(), out_dir), nprocs=RANKS, join=True)
        ranks = []
        for rank in range(RANKS):
            with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
                ranks.append(json.load(f))
    for name in references:
        logs, weights, memory, end = ranks[0][name]
        results[name] = _common.compare(references[name], (logs, np.array(weights), memory, end))
        results[name]["ranks_equal"] = all(r[name][1] == ranks[0][name][1] for r in ranks)
    results["uneven"] = ranks[0]["uneven"]
    results["example_map@r"] = ranks[0]["example_map@r"]
    _common.emit(results)
