"""PyTorch row primitives: int64 indices end to end, no index rewriting."""

import torch

INDEX_DTYPE = "int64"


def argsort_rows(x):
    # Stability is not needed: callers compare values, never positions of ties.
    return torch.argsort(x, dim=1)


def take_along_rows(x, index):
    if index.dtype != torch.int64:
        index = index.long()
    return torch.gather(x, 1, index)


def compact_columns(mask):
    """`[B, M]` column indices covering every True of each row of a `[B, R]` mask, where
    `M` is the largest row count, or None when compacting would not pay (or shapes must
    stay static, under `torch.compile`). Eager PyTorch can size arrays by the data."""
    if torch.compiler.is_compiling() or mask.ndim != 2 or mask.shape[1] < 64:
        return None
    width = max(int(mask.sum(dim=1).max()), 1) if mask.shape[0] else 1
    if 4 * width > mask.shape[1]:
        return None
    return torch.topk(mask.to(torch.float32), width, dim=1, sorted=False).indices


def scatter_rows(values, index, width):
    """The `[B, width]` array holding `values[a, j]` at column `index[a, j]`, 0 elsewhere."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype, device=values.device).scatter(1, index, values)


# Questions about each anchor's negatives at `[B, M]` thresholds (see `_generic.py`).
# Here without `[B, M, R]` arrays, which eager PyTorch would materialise one by one: sort
# each row's M thresholds, find each negative's rank among them (`searchsorted`), and
# count (or sum, or take the minimum) per rank: O(B·R log M) time, O(B·R) memory.
DIRECT_COST_PER_THRESHOLD = False  # any M costs about the same: no cap needed


def _ranks(negatives, thresholds, below_inclusive):
    """`(rank, inverse)`: per negative, the first of the row's sorted thresholds it lies
    below (`<`, or `≤` if inclusive; M where none, as for +inf), and the position of each
    threshold in sorted order (to bring per-threshold results back)."""
    ordered, order = torch.sort(thresholds, dim=1)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous()
    inverse = torch.empty_like(order).scatter_(1, order, positions)
    # v < t_j  ⇔  j ≥ #{t ≤ v};   v ≤ t_j  ⇔  j ≥ #{t < v}
    rank = torch.searchsorted(ordered.contiguous(), negatives.contiguous(), right=not below_inclusive)
    return rank, inverse


def _per_rank(rank, width, weights=None):
    """`[B, width + 1]` counts (or sums of `weights`) of the negatives of each rank."""
    rows = rank.shape[0]
    flat = (rank + torch.arange(rows, device=rank.device).unsqueeze(1) * (width + 1)).reshape(-1)
    if weights is None:
        return torch.bincount(flat, minlength=rows * (width + 1)).view(rows, width + 1)
    total = torch.zeros(rows * (width + 1), dtype=weights.dtype, device=weights.device)
    return total.index_add(0, flat, weights.reshape(-1)).view(rows, width + 1)


def _below(negatives, thresholds, inclusive, weights=None):
    rank, inverse = _ranks(negatives, thresholds, inclusive)
    width = thresholds.shape[1]
    # Negatives of rank r lie below sorted thresholds r, r + 1, …: cumulative per rank.
    cumulative = torch.cumsum(_per_rank(rank, width, weights)[:, :width], dim=1)
    return torch.gather(cumulative, 1, inverse)


def count_negatives_below(negatives, thresholds, inclusive=False):
    return _below(negatives, thresholds, inclusive)


def negative_sum(negatives, distances, stop, stop_inclusive=False, start=None):
    total = _below(negatives, stop, stop_inclusive, weights=distances)
    if start is not None:  # minus those at or below `start` (the caller zeroes empty bands)
        total = total - _below(negatives, start, True, weights=distances)
    return total


_NONE = torch.iinfo(torch.int64).max


def closest_negative_above(negative_distances, thresholds):
    # v > t_j  ⇔  j < #{t < v}: a negative of rank r is above sorted thresholds 0 … r − 1.
    negatives = negative_distances.detach()
    rank, inverse = _ranks(negatives, thresholds, True)
    width = thresholds.shape[1]
    # One int64 key per negative, ordered as its distance, carrying its column: the
    # float's bits made monotonic (flipped for negative floats), then the column.
    bits = negatives.to(torch.float32).contiguous().view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    columns = torch.arange(negatives.shape[1], device=negatives.device)
    key = (bits.to(torch.int64) << 32) + columns
    key = key.masked_fill(torch.isinf(negatives), _NONE)  # not a negative
    smallest = torch.full((negatives.shape[0], width + 1), _NONE, dtype=torch.int64, device=negatives.device)
    smallest = smallest.scatter_reduce(1, rank, key, "amin")
    # The smallest key among ranks > j: a minimum over suffixes.
    above = torch.flip(torch.cummin(torch.flip(smallest, [1]), dim=1).values, [1])[:, 1:]
    found = torch.gather(above != _NONE, 1, inverse)
    column = torch.gather(torch.where(above == _NONE, 0, above & 0xFFFFFFFF), 1, inverse)
    return torch.where(found, torch.gather(negative_distances, 1, column), 0.0), found
