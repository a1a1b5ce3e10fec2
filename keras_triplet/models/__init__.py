"""`TripletModel`: a Keras model that trains an embedding network with a metric loss.

Reading order: `triplet_model.py` (the model; its `compute_loss` is the hook through
which Keras' own train / test steps reach the loss, on every backend) → `step.py` (the
loss and the logged statistics of one batch, pure functions) → `memory.py` (the
cross-batch memory's FIFO queue) → `distributed.py` (data parallelism: the global batch,
the mining switch, `data_parallel` for `torch.distributed`) → `similarity.py` (index,
lookup, calibrate, match, saved with the model: what TF Similarity's `SimilarityModel`
users know).
"""

from keras_triplet.models.distributed import data_parallel
from keras_triplet.models.memory import CrossBatchMemory
from keras_triplet.models.similarity import Calibration, Lookups, Neighbor
from keras_triplet.models.step import STATISTICS, in_batch_recall_at_1
from keras_triplet.models.triplet_model import TripletModel

__all__ = [
    "TripletModel",
    "CrossBatchMemory",
    "STATISTICS",
    "data_parallel",
    "in_batch_recall_at_1",
    "Calibration",
    "Lookups",
    "Neighbor",
]
