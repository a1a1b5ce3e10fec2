"""The search of each anchor's negatives at its positive pairs: two searches, one choice.

Semi-hard and batch-all mining and the mining statistics ask the same few questions of
every positive pair `(a, p)`, about the negatives `n` of the anchor `a`:

* `count_within(offset, inclusive)`: how many have `d(a, n) < d(a, p) + offset` (`≤`);
* `band(stop_offset, stop_inclusive, start_offset)`: how many, and the sum of their
  distances (differentiable), lie in `(d(a, p) + start_offset, d(a, p) + stop_offset)`;
* `closest_beyond(or_farthest)`: the closest one with `d(a, n) > d(a, p)`, and whether
  there is one (semi-hard); optionally the farthest negative where there is none.

Reading order:

1. `choice.py`: `with_negatives(distances, negative_mask, positive_mask, fn)` builds one
   search object per step and evaluates `fn` with it: the direct search for P×K batches
   (at most `DIRECT_MAX_POSITIVES` positives per anchor), the sorted search otherwise.
2. `anchor_negatives.py`: `AnchorNegatives`, what both searches share (the masks, each
   anchor's number of negatives, the query layout, `count_within` computed once).
3. `direct_negatives.py`: `DirectNegatives`, each anchor's few positives compared, one
   at a time, with all its negatives: M passes over `[B, R]`; no sort (or, in steps that
   are not fused, for small batches, all M at once: `[B, M, R]`, capped).
4. `sorted_negatives.py`: `SortedNegatives`, each anchor's negatives sorted once and
   binary-searched: O(B·R log R) time, O(B·R) memory, any labels.
5. `blocked_negatives.py`: `BlockedSortedNegatives`, the sorted search of a compiled
   step's large static matrix by blocks of rows, its gradients written out by blocks too:
   the choice's fallback in a few blocks' memory. Its loop over blocks and its
   hand-written-gradient helper also run `DirectNegatives` by blocks for such matrices.

Both answer with exact `<` / `≤` comparisons and give the same selections. Row gathers,
sorts and compaction come from `keras_triplet._backend`.
"""

from keras_triplet.miners.search.anchor_negatives import AnchorNegatives
from keras_triplet.miners.search.blocked_negatives import BlockedSortedNegatives
from keras_triplet.miners.search.choice import (
    DIRECT_MAX_POSITIVES,
    DIRECT_WIDTHS,
    SEARCHES,
    with_negatives,
)
from keras_triplet.miners.search.direct_negatives import DirectNegatives
from keras_triplet.miners.search.sorted_negatives import SortedNegatives

__all__ = [
    "AnchorNegatives",
    "DirectNegatives",
    "SortedNegatives",
    "BlockedSortedNegatives",
    "with_negatives",
    "SEARCHES",
    "DIRECT_MAX_POSITIVES",
    "DIRECT_WIDTHS",
]
