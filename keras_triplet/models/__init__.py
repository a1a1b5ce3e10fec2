"""`TripletModel`: a Keras model that trains an embedding network with a metric loss.

The train/test steps are written once per backend (`_tensorflow.py`, `_jax.py`,
`_torch.py`); `triplet_model._backend_steps()` picks the one for `keras.backend.backend()`.
"""

from keras_triplet.models.memory import CrossBatchMemory
from keras_triplet.models.triplet_model import STATISTICS, TripletModel, in_batch_recall_at_1

__all__ = ["TripletModel", "CrossBatchMemory", "STATISTICS", "in_batch_recall_at_1"]
