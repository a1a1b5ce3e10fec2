"""Data-parallel `TripletModel` training on PyTorch: `torchrun`, global-batch mining.

    KERAS_BACKEND=torch torchrun --nproc_per_node=2 examples/distributed/train_torch.py
    # several hosts: torchrun --nnodes=2 --node_rank=0|1 --master_addr=host0 --nproc_per_node=...

Keras 3.15's PyTorch `fit` has no data-parallel mode, so every process runs `model.fit`
on its shard of each global P×K batch (`PKSampler`'s `num_shards` / `shard_index`: whole
classes per rank), and `keras_triplet.models.data_parallel(model)` makes that one
training: rank 0's weights everywhere, labels and embeddings gathered across ranks
before mining (each rank's rows keep their gradient), gradients averaged over the
ranks (as DDP does). The weights after each step are one process's on the global
batches. Gloo on CPU, NCCL on GPUs.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_triplet  # noqa: E402


def main(epochs=5, steps_per_epoch=None, mining="global", seed=0):
    if not dist.is_initialized():  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    # Global batches of P = 8 digits × K = 8 images; rank r gets digits [r·8/world, (r+1)·8/world).
    data = keras_triplet.PKPyDataset(
        x, y, classes_per_batch=8, samples_per_class=8, seed=seed, num_shards=world, shard_index=rank
    )
    keras.utils.set_random_seed(seed)
    embedder = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(32)]
    )
    model = keras_triplet.TripletModel(embedder, mining=mining)
    model.compile(optimizer="adam", loss=keras_triplet.losses.TripletLoss(margin=0.2, miner="semi-hard"))
    keras_triplet.models.data_parallel(model)
    model.fit(
        data, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=2 if rank == 0 else 0
    )
    retrieval = keras_triplet.metrics.retrieval_metrics(model.embed(x), y, ks=(1,))
    if rank == 0:
        print(f"{world} ranks, mining={mining}: MAP@R {retrieval['map@r']:.3f}")
    return retrieval


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mining", default="global", choices=("global", "per_replica"))
    args = parser.parse_args()
    main(epochs=args.epochs, mining=args.mining)
    dist.destroy_process_group()
