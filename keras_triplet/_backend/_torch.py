"""PyTorch row primitives: int64 indices end to end, no index rewriting."""

import numpy as np
import torch

INDEX_DTYPE = "int64"

# Eager PyTorch materialises every elementwise step's array: the pair losses run in row
# blocks here (`losses.reductions.by_row_blocks`).
FUSES_ELEMENTWISE_STEPS = False
# The largest `[B, M, R]` a direct search compares at once where steps are not fused
# (`miners.search.DirectNegatives(broadcast=True)`): 1 MB of float32, B = 256 at M ≤ 4.
# Eager PyTorch takes each larger array fresh from the system (glibc gives freed large
# blocks back), and the page faults of a dozen such arrays per step cost more than the
# column loop's dispatches.
BROADCAST_ENTRIES = 2**18


def host_value(x):
    """The Python number held by the scalar tensor or variable `x` when the step runs
    eagerly on the host (CPU), else None. Reading it there costs a few microseconds,
    where the tensor arithmetic it replaces costs an eager dispatch per operation; on
    an accelerator it would wait for the device, and under `torch.compile` it would
    break the graph."""
    value = getattr(x, "value", x)  # a Keras variable holds its tensor in `value`
    if not isinstance(value, torch.Tensor) or value.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return value.item()


def fori_loop(lower, upper, body, state):
    """`keras.ops.fori_loop` as a plain loop. Keras' version first flattens the state to
    look for symbolic tensors, and on PyTorch that flattening (torch's pytree) leaves a
    reference cycle holding the state: its `[B, R]` arrays then live until Python's
    cyclic garbage collector runs, not until the step ends."""
    for i in range(lower, upper):
        state = body(i, state)
    return state


# Up to this many entries (B = 256), NumPy sorts the rows (`argsort_rows`) whatever
# PyTorch's thread count; above it, only when PyTorch runs on one thread.
NUMPY_SORT_ENTRIES = 2**16


def argsort_rows(x):
    # Stability is not needed: callers compare values, never positions of ties.
    if _numpy_sorts(x):
        # NumPy's vectorised sort (x86-simd-sort) orders short float rows several times
        # faster than PyTorch's CPU sort on one thread; PyTorch's sorts rows on all its
        # threads, which wins for large matrices. The indices carry no gradient: the rows
        # go through NumPy without a copy and the indices come back without one. NaN
        # sorts last in both.
        return torch.from_numpy(np.argsort(x.detach().numpy(), axis=1))
    return torch.argsort(x, dim=1)


def _numpy_sorts(x):
    """Whether `argsort_rows` hands `x` to NumPy: CPU float rows, eager, and small or on
    one thread."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
        and (x.numel() <= NUMPY_SORT_ENTRIES or torch.get_num_threads() == 1)
    )


def search_rows(sorted_rows, thresholds, inclusive):
    # One batched binary search (left: the count of entries < t; right: ≤ t) where the
    # generic search runs log2(R) passes of several eager operations each.
    return torch.searchsorted(sorted_rows.contiguous(), thresholds.contiguous(), right=bool(inclusive))


def take_along_rows(x, index):
    if index.dtype != torch.int64:
        index = index.long()
    return torch.gather(x, 1, index)


def compact_columns(mask):
    """`[B, M]` column indices covering every True of each row of a `[B, R]` mask, where
    `M` is the largest row count, or None when compacting would not pay (or shapes must
    stay static, under `torch.compile`). With P×K batches an anchor has K − 1 positives
    among B columns: searching at the positives alone is B / (K − 1) times less work."""
    if torch.compiler.is_compiling() or mask.ndim != 2 or mask.shape[1] < 64:
        return None
    width = max(int(mask.sum(dim=1).max()), 1) if mask.shape[0] else 1
    if 4 * width > mask.shape[1]:
        return None
    return torch.topk(mask.to(torch.float32), width, dim=1, sorted=False).indices


def compact_rows(mask):
    """The int64 positions of the True entries of a `[B]` mask, in order, or None under
    `torch.compile` (shapes must stay static). Eager PyTorch can size an array by the
    data: a loss that needs only the marked rows (N-pairs: one tuple per class, `P` of
    `B` rows) computes on `[P, P]` instead of masking a `[B, B]` matrix."""
    if torch.compiler.is_compiling():
        return None
    return torch.nonzero(mask).squeeze(1)


def count_true(mask):
    """The number of True entries of a boolean array (a 0-d int64 tensor). A full
    `count_nonzero` has its own kernel; summing a bool array first copies it to int64
    (eight bytes an entry), and `keras.ops.count_nonzero` transposes its 0-d result,
    which PyTorch warns about."""
    return torch.count_nonzero(torch.as_tensor(mask))


def scatter_rows(values, index, width):
    """The `[B, width]` array holding `values[a, j]` at column `index[a, j]`, 0 elsewhere."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype, device=values.device).scatter(
        1, index, values
    )


class _MarginCrossEntropy(torch.autograd.Function):
    """`−log softmax(ℓ')[i, y_i]` per row, `ℓ'` the logits with `ℓ[i, y_i]` replaced by
    `target[i]`, with a hand-written gradient: `softmax(ℓ')` with the own entries zeroed
    (for the logits) and `softmax(ℓ')[i, y_i] − 1` (for the target). Through autograd the
    same loss (a scatter, then `cross_entropy`) costs a zero-filled `[B, C]` array in
    `nll_loss`'s gradient and a copy in the scatter's: here the backward is one `exp`
    and one in-place scaling of the saved log-softmax's size."""

    @staticmethod
    def forward(ctx, logits, labels, target):
        rows = torch.arange(logits.shape[0], device=logits.device)
        replaced = logits.index_put((rows, labels), target.to(logits.dtype))
        log_softmax = torch.log_softmax(replaced, dim=1)
        ctx.save_for_backward(log_softmax, labels)
        return -log_softmax[rows, labels]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        log_softmax, labels = ctx.saved_tensors
        rows = torch.arange(log_softmax.shape[0], device=log_softmax.device)
        grad_logits = torch.exp(log_softmax)
        grad_target = (grad_logits[rows, labels] - 1.0) * grad
        grad_logits.index_put_((rows, labels), torch.zeros((), dtype=grad_logits.dtype))
        grad_logits.mul_(grad.unsqueeze(1))
        return grad_logits, None, grad_target


def margin_cross_entropy(logits, labels, target):
    """`[B]`: `−log softmax(ℓ')[i, labels[i]]`, where `ℓ'` is the `[B, C]` logits with
    each row's own entry replaced by `target[i]` (labels must lie in `[0, C)`)."""
    return _MarginCrossEntropy.apply(logits, torch.as_tensor(labels).long(), target)
