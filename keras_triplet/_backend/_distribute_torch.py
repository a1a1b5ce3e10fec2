"""Data parallelism under `torch.distributed` (one process per device, `torchrun`).

Why it is per backend: Keras 3.15's PyTorch `fit` has no data-parallel mode, so each
process runs its own `fit` on its shard of the global batch; only `torch.distributed`
reaches the other processes. `keras_triplet.models.data_parallel(model)` turns this on
(`activate`); until then this module behaves as one process.

How the gradient is kept right (measured against one process,
`tests/test_distributed.py`), following `torch.nn.parallel.DistributedDataParallel`'s
convention, so the arithmetic is the one PyTorch users know:

* `all_gather` is differentiable: forward, every rank's rows in rank order; backward,
  the *sum over ranks* of the upstream gradients (an all-reduce), restricted to this
  rank's own rows. Every rank computes the same global loss `L`, so this rank's rows
  receive `R · ∂L/∂e_own`;
* a hook on every trainable parameter *averages* its gradient over the ranks (as DDP
  does), so the update is `(1/R) Σ_r R · ∂L/∂e_r · ∂e_r/∂θ = ∂L/∂θ`: one process's.
"""

import torch
import torch.distributed as dist

_ACTIVE = [False]  # set by `activate`: this process trains data-parallel


def check_process_group():
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "torch.distributed's process group is not initialised: launch with torchrun and "
            "call torch.distributed.init_process_group('gloo' or 'nccl') before "
            "keras_triplet.models.data_parallel(model)."
        )


def activate(model):
    """Makes every rank start from rank 0's weights and average its gradients (hooks)."""
    check_process_group()
    world = dist.get_world_size()
    with torch.no_grad():
        for variable in model.weights:  # optimizer-free state too: the memory, the embedder's
            dist.broadcast(variable.value.data, src=0)
    for variable in model.trainable_weights:
        parameter = variable.value
        if getattr(parameter, "_keras_triplet_hooked", False):
            continue
        parameter.register_hook(lambda grad: _average(grad, world))
        parameter._keras_triplet_hooked = True
    _ACTIVE[0] = True


def _average(grad, world):
    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / world


def process_count():
    """1: under `data_parallel` each rank's `fit` already receives its own slice (what
    the slices must hold is checked by the gather, `_AllGather`)."""
    return 1


def strategy_replica_count(model):
    """1: no strategy splits the batches `fit` receives (see `process_count`)."""
    return 1


def replica_count():
    """The number of ranks once `activate` ran, else 1."""
    if not _ACTIVE[0]:
        return 1
    check_process_group()
    return dist.get_world_size()


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.contiguous()
        world, rank = dist.get_world_size(), dist.get_rank()
        # A rank's slice size first (one tiny collective): unequal slices would make
        # `all_gather` hang or fail with a shape error far from the cause.
        sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
        sizes = [int(s) for s in sizes]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"The global batch does not split evenly over the {world} ranks (slices of "
                f"{sizes}): give every rank a batch of the same size (global batch a multiple "
                f"of {world}; PKSampler(..., num_shards={world}, shard_index=rank))."
            )
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # the sum over ranks of ∂L/∂(global rows)
        start, stop = ctx.rows
        return grad[start:stop]


def all_gather(x):
    """The ranks' `x` concatenated along axis 0 in rank order (differentiable, see above)."""
    return _AllGather.apply(x)


def loss_scale(count):
    """1: the gradient hooks average over the ranks (DDP's convention)."""
    return 1.0


def replica_mean(x):
    """`x`'s mean over the ranks as a value, `x`'s own gradient: what a rank logs is the
    mean of all ranks' values, and its backward stays local (the hooks average it)."""
    mean = x.detach().clone()
    dist.all_reduce(mean)
    mean = mean / dist.get_world_size()
    return x + (mean - x.detach())


def step_logs(logs):
    """A step's logs, as they are (a Keras 3.15 workaround under `tf.distribute` only)."""
    return logs
