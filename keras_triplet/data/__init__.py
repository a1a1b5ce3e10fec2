"""Class-balanced P×K batches for metric learning.

- `PKSampler(labels, classes_per_batch, samples_per_class, seed=0)`: chooses the
  indices (NumPy) and builds endless `tf.data` pipelines with `as_dataset(x)` (arrays)
  or `as_dataset(items, load_fn=...)` (items loaded one by one, in parallel); the
  datasets feed `model.fit` on TensorFlow, JAX and PyTorch.
- `PKPyDataset(x, labels, classes_per_batch, samples_per_class, seed=0)`: the same
  batches as a `keras.utils.PyDataset`, for users without TensorFlow.

Importing this package does not import TensorFlow.
"""

from keras_triplet.data.pydataset import PKPyDataset
from keras_triplet.data.sampler import PKSampler

__all__ = ["PKSampler", "PKPyDataset"]
