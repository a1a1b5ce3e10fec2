"""PyTorch row primitives: int64 indices end to end, no index rewriting."""

import torch

INDEX_DTYPE = "int64"

# Eager PyTorch materialises every `[B, M, R]` intermediate of a broadcast comparison.
# (Ranking each negative among the sorted thresholds instead, with `searchsorted`, was
# measured against the sorted search in benchmarks/mining.py and did not win: ARCHITECTURE.md.)
FUSES_BROADCAST_COMPARISONS = False


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
    stay static, under `torch.compile`). With P×K batches an anchor has K − 1 positives
    among B columns: searching at the positives alone is B / (K − 1) times less work."""
    if torch.compiler.is_compiling() or mask.ndim != 2 or mask.shape[1] < 64:
        return None
    width = max(int(mask.sum(dim=1).max()), 1) if mask.shape[0] else 1
    if 4 * width > mask.shape[1]:
        return None
    return torch.topk(mask.to(torch.float32), width, dim=1, sorted=False).indices


def scatter_rows(values, index, width):
    """The `[B, width]` array holding `values[a, j]` at column `index[a, j]`, 0 elsewhere."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype, device=values.device).scatter(
        1, index, values
    )
