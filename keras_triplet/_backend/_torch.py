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


def memoized_result(metric, compute):
    """`compute()`, the result of the Keras metric `metric`, computed again only when the
    metric's state has changed since the last call. Keras reads every metric's result
    after every eager step, and a tracker updated every N-th step (the mining
    statistics) would pay its few eager operations each time. A change is any in-place
    write to a state tensor (`assign`, `update_state`, `reset_state`: PyTorch bumps the
    tensor's `_version`) or another tensor in its place (a `StatelessScope`)."""
    if torch.compiler.is_compiling():
        return compute()
    state = [getattr(v, "value", v) for v in metric.variables]
    key = [(t, t._version) for t in state]
    cached = metric.__dict__.get("_memoized_result")
    if cached is not None and len(cached[0]) == len(key):
        if all(a is b and u == v for (a, u), (b, v) in zip(cached[0], key)):
            return cached[1]
    result = compute()
    # Past Keras' attribute tracking: a cache, not state to save or restore.
    object.__setattr__(metric, "_memoized_result", (key, result))
    return result


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
        rows = x.detach().numpy()
        if x.dtype == torch.float32 and 0 < x.numel() <= PACKED_SORT_ENTRIES:
            smallest = rows.min()  # NaN if any entry is NaN
            if not np.isnan(smallest):
                return _argsort_packed(rows, signed=smallest < 0)
        return torch.from_numpy(np.argsort(rows, axis=1))
    return torch.argsort(x, dim=1)


# Up to this many entries (B = 512), `argsort_rows` sorts float32 rows as packed int64
# keys: its int64 temporaries, a few times the matrix, stay small.
PACKED_SORT_ENTRIES = 2**18


def _argsort_packed(rows, signed):
    """`np.argsort(rows, axis=1)` of a NaN-free float32 `[B, R]` array (ties by column)
    through one sort of int64 keys, `(order-preserving bits of the value) << 32 | column`:
    NumPy's vectorised sort of plain int64 numbers is faster than its float32 argsort
    (which moves an index beside each value), and the column comes back in the low bits.
    `signed`: whether some entry is below 0 (distances never are)."""
    keys = rows.view(np.int32).astype(np.int64)
    # A float's bits read as a (sign-extended) int order the floats ≥ 0, −0 first (its
    # bits are the smallest int32: equal to +0, below every other one). Flipping a
    # negative float's magnitude bits orders the negatives below them.
    if signed:
        keys ^= (keys >> 31) & 0x7FFFFFFF
    keys <<= 32
    keys |= np.arange(rows.shape[1], dtype=np.int64)
    keys.sort(axis=1)
    keys &= 0xFFFFFFFF
    return torch.from_numpy(keys)


def _numpy_sorts(x):
    """Whether `argsort_rows` hands `x` to NumPy: CPU float rows, eager, and small or on
    one thread."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
        and (x.numel() <= NUMPY_SORT_ENTRIES or torch.get_num_threads() == 1)
    )


def search_rows(sorted_rows, thresholds, inclusive, limit=None):
    # One batched binary search (left: the count of entries < t; right: ≤ t) where the
    # generic search runs log2(R) passes of several eager operations each; clamped to
    # `limit` in place (int64 throughout, where `keras.ops.minimum` casts both to int32).
    found = torch.searchsorted(sorted_rows.contiguous(), thresholds.contiguous(), right=bool(inclusive))
    return found if limit is None else torch.minimum(found, limit.long(), out=found)


def sort_masked_rows(x, mask, filler):
    # The values alone: `pick_sorted` and `sum_sorted_runs` write each answer's gradient
    # into one `[B, R]` array. Through autodiff, every sum would walk back through the
    # prefix sums' reversed cumsum, the sort's gather (a `[B, R]` zero fill and
    # `scatter_add`) and the mask's `where`, each a pass over `[B, R]` run op by op.
    masked = torch.where(mask, x.detach(), torch.as_tensor(filler, dtype=x.dtype).detach())
    order = argsort_rows(masked)
    return torch.gather(masked, 1, order), order


def pick_sorted(values, order, index, count, distances):
    """`values[a, index[a, j]]` (`[B, M]`, `values` from `sort_masked_rows`), differentiable in
    `distances` (`[B, R]`): the gradient of a pick goes to the column it was read from,
    `order[a, index]`, where it is a negative (sorted position below `count[a]`), and
    nowhere at a filler."""
    return _SortedPick.apply(distances, torch.gather(values, 1, index), order, index, count)


def sum_sorted_runs(total, order, start, stop, distances):
    """`total` (`[B, M]`: sums of each row's sorted negatives at positions `[start, stop)`,
    computed without gradient; `start` None: from 0), differentiable in `distances`: each
    sum's gradient goes to every column of its run (`order[a, k]`, `start ≤ k < stop`)."""
    return _SortedRunSums.apply(distances, total, order, start, stop)


class _SortedPick(torch.autograd.Function):
    @staticmethod
    def forward(ctx, distances, picked, order, index, count):
        ctx.save_for_backward(order, index, count)
        ctx.shape = distances.shape
        return picked.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        order, index, count = ctx.saved_tensors
        # `where`, not a product: a NaN upstream stays where it belongs, nowhere else.
        weight = torch.where(index < count.unsqueeze(1), grad, 0.0)
        columns = torch.gather(order, 1, index)
        gradient = grad.new_zeros(ctx.shape).scatter_add_(1, columns, weight)
        return gradient, None, None, None, None


class _SortedRunSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, distances, total, order, start, stop):
        ctx.save_for_backward(order, stop, start if start is not None else stop)
        ctx.from_first = start is None
        return total.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        order, stop, start = ctx.saved_tensors
        rows, width = order.shape
        # Sorted position k gets Σ grad over the runs with start ≤ k < stop: a prefix sum
        # taken from the end of the row (as autodiff's reversed cumsum of the prefix sums
        # does), so that positions past every run get exactly 0. Reversed coordinates
        # (k ↔ R − 1 − k) make it a plain cumsum: `+grad` at R − stop, `−grad` at
        # R − start, in a row one longer (R − 0 = R: a run that ends or starts at 0
        # adds nothing).
        steps = grad.new_zeros(rows, width + 1)
        steps.scatter_add_(1, width - stop, grad)
        if not ctx.from_first:
            steps.scatter_add_(1, width - start, -grad)
        reversed_gradient = torch.cumsum(steps[:, :width], dim=1)
        gradient = torch.empty_like(reversed_gradient).scatter_(1, order.flip(1), reversed_gradient)
        return gradient, None, None, None, None


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
    rows, references = mask.shape
    if not rows:
        return torch.zeros(0, 1, dtype=torch.int64, device=mask.device)
    if mask.device.type == "cpu":
        # Every row with the same number of Trues (P×K batches): NumPy's `flatnonzero`
        # lists them in row-major order in one pass over the mask, cheaper on CPU than
        # PyTorch's `nonzero` and the row counts that `topk` would need.
        flat = np.flatnonzero(mask.numpy())
        width = flat.size // rows
        if width and flat.size == rows * width:
            columns = flat.reshape(rows, width) - np.arange(0, rows * references, references)[:, None]
            if columns.min() >= 0 and columns.max() < references:  # each row's own
                return None if 4 * width > references else torch.from_numpy(columns)
    found = torch.nonzero(mask)  # `[N, 2]` (row, column), in row-major order
    counts = torch.bincount(found[:, 0], minlength=rows)
    width = max(int(counts.max()), 1)
    if 4 * width > mask.shape[1]:
        return None
    if found.shape[0] == rows * width:
        # Every row has `width` Trues (P×K batches): their columns, in order, are the
        # answer. One pass over the mask, where the general case below casts it to
        # float32 and runs a `topk` over it.
        return found[:, 1].view(rows, width)
    return torch.topk(mask.to(torch.float32), width, dim=1, sorted=False).indices


def compact_rows(mask):
    """The int64 positions of the True entries of a `[B]` mask, in order, or None under
    `torch.compile` (shapes must stay static). Eager PyTorch can size an array by the
    data: a loss that needs only the marked rows (N-pairs: one tuple per class, `P` of
    `B` rows) computes on `[P, P]` instead of masking a `[B, B]` matrix."""
    if torch.compiler.is_compiling():
        return None
    return torch.nonzero(mask).squeeze(1)


def add_where(total, mask, values):
    """`total + where(mask, values, 0)`, added into `total` in place when autograd does
    not track it (a hand-written backward pass's accumulator, which its caller owns):
    a fresh `[B, R]` sum per column costs its page faults on the CPU."""
    if total.requires_grad:
        return total + torch.where(mask, values, 0.0)
    return total.add_(torch.where(mask, values, 0.0))


def count_true(mask, axis=None):
    """The number of True entries of a boolean array (a 0-d int64 tensor), or of each
    slice along `axis` (int32: a row's count fits).

    PyTorch sums a bool array by first copying it to a wider integer type (int64 for
    `keras.ops.sum` and `count_nonzero`, int32 when asked): a fresh array four or eight
    times the mask's size, whose page faults dominate from `[4096, 4096]` on. On the
    CPU, outside `torch.compile`, NumPy adds the mask's bytes along the axis into int32
    without that copy (a tenth of the time at `[4096, 4096]`), and counts the whole
    array (`np.count_nonzero`, int64: B² may pass 2^31) several times faster than
    `torch.count_nonzero`; `keras.ops.count_nonzero` also transposes its 0-d result,
    which PyTorch warns about."""
    mask = torch.as_tensor(mask)
    on_host = mask.device.type == "cpu" and not torch.compiler.is_compiling()
    if axis is None:
        if on_host:
            return torch.tensor(np.count_nonzero(mask.numpy()), dtype=torch.int64)
        return torch.count_nonzero(mask)
    if on_host and mask.dtype == torch.bool:
        counts = np.add.reduce(mask.numpy().view(np.uint8), axis=axis, dtype=np.int32)
        return torch.from_numpy(np.asarray(counts))
    return torch.sum(mask, dim=axis, dtype=torch.int32)


def scatter_rows(values, index, width):
    """The `[B, width]` array holding `values[a, j]` at column `index[a, j]`, 0 elsewhere:
    scattered into fresh zeros in place (an out-of-place `scatter` copies them first)."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype, device=values.device).scatter_(
        1, index, values
    )


def without_diagonal(mask):
    # One strided write of the B diagonal entries, where the comparison of two `arange`s
    # and a `logical_and` are two passes over a fresh `[B, R]` array.
    return mask.clone().fill_diagonal_(False)


# `distances.safe_sqrt`'s floor: the same matrix and gradient as `distances._self_euclidean`.
_SQRT_FLOOR = 1e-30


def self_euclidean(x):
    """`distances.pairwise_distances(x)` (Euclidean, `x` against itself) with the same
    values and hand-written gradient as `distances._self_euclidean`, its steps written
    in place: eager PyTorch runs each of that function's `keras.ops` calls as its own
    pass over a fresh `[B, B]` array (the diagonal's mask alone is an `arange`, a
    comparison and a `logical_and`), where here the product's output is clamped,
    rooted and masked where it lies, and the diagonal is zeroed by one strided write."""
    return _SelfEuclidean.apply(x)


class _SelfEuclidean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        # The product exactly as `distances._squared_euclidean` forms it: the same bits.
        squared_norms = torch.sum(torch.square(x), dim=1, keepdim=True)
        ones = torch.ones_like(squared_norms)
        left = torch.cat([-2.0 * x, squared_norms, ones], dim=1)
        right = torch.cat([x, ones, squared_norms], dim=1)
        distances = torch.matmul(left, right.T)
        # `where(squared > 0 and off the diagonal, sqrt(max(squared, floor)), 0)`; NaN is
        # not > 0, so it gives 0 there as well.
        zero = torch.gt(distances, 0).logical_not_()
        distances.clamp_min_(_SQRT_FLOOR).sqrt_().masked_fill_(zero, 0.0).fill_diagonal_(0.0)
        ctx.save_for_backward(x, distances)
        return distances

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        # `distances._self_euclidean`'s gradient, the same operations in the same order.
        x, distances = ctx.saved_tensors
        h = torch.where(distances > _SQRT_FLOOR**0.5, grad / distances, 0.0)
        weight = torch.sum(h, dim=1, keepdim=True) + torch.sum(h, dim=0).unsqueeze(1)
        return x * weight - torch.matmul(h, x) - torch.matmul(h.T, x)


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
