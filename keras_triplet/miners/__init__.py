"""Triplet miners: Keras layers that select triplets from a distance matrix.

See `TripletMiner` for what a miner returns, and docs/semantics.md for exactly which
triplets each miner selects.

Reading order of what `TripletLoss(miner="semi-hard")` computes:

1. `losses/triplet.py`: the loss builds one search of the negatives
   (`search.with_negatives`) and sums the hinge over the miner's selection;
2. `miners/semi_hard.py`: the choice per positive pair, one question asked of the search
   (`closest_beyond`), on the base class `NegativeSearchMiner` of `miners/base.py`;
3. `miners/search/`: the searches that answer it (its own docstring gives their reading
   order): `choice.py`, then `direct_negatives.py` (P×K batches) or
   `sorted_negatives.py` (any labels), on `anchor_negatives.py`;
4. `keras_triplet/_backend/`: the row gather, sort and compaction, per backend.

Pair miners (for the pair losses: contrastive, multi-similarity, ...) share the base
`PairMiner` of `pair_miner.py`: they return boolean masks of the positive and negative
pairs they keep.

Beside them: `labels.py` (the positive and negative masks, computed once),
`masked_extremes.py` (each row's masked argmin / argmax, and one entry per row: batch-hard
and the semi-hard fallback), `statistics.py` (the mining statistics, on the same search).
"""

from keras_triplet.miners.base import NegativeSearchMiner, TripletMiner
from keras_triplet.miners.batch_all import BatchAllMiner
from keras_triplet.miners.batch_hard import BatchHardMiner
from keras_triplet.miners.labels import pair_masks
from keras_triplet.miners.multi_similarity import MultiSimilarityMiner
from keras_triplet.miners.pair_margin import PairMarginMiner
from keras_triplet.miners.pair_miner import PairMiner
from keras_triplet.miners.semi_hard import SemiHardMiner
from keras_triplet.miners.statistics import triplet_statistics

_BY_NAME = {"semi-hard": SemiHardMiner, "batch-hard": BatchHardMiner, "batch-all": BatchAllMiner}
_ALIASES = {"semihard": "semi-hard", "hard": "batch-hard", "all": "batch-all"}


def get(identifier, margin=1.0, distance="euclidean", p=None):
    """A miner from a name (`"semi-hard"`, `"batch-hard"`, `"batch-all"`) or a miner instance.

    A named batch-all miner takes `margin`, so that it selects exactly the triplets whose
    hinge loss at that margin is non-zero.
    """
    if isinstance(identifier, TripletMiner):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower().replace("_", "-")
        key = _ALIASES.get(key, key)
        if key in _BY_NAME:
            kwargs = {"margin": margin} if key == "batch-all" else {}
            return _BY_NAME[key](distance=distance, p=p, **kwargs)
    raise ValueError(
        f"Unknown miner {identifier!r}; expected 'semi-hard', 'batch-hard', 'batch-all' or a "
        "keras_triplet.miners.TripletMiner instance."
    )


__all__ = [
    "TripletMiner",
    "NegativeSearchMiner",
    "BatchAllMiner",
    "BatchHardMiner",
    "SemiHardMiner",
    "triplet_statistics",
    "PairMiner",
    "pair_masks",
    "get",
    "MultiSimilarityMiner",
    "PairMarginMiner",
]
