"""keras-triplet: online-mined triplet and metric-learning losses for Keras 3.

Runs unchanged on TensorFlow, JAX and PyTorch. The core (distances, miners, losses) is
imported eagerly; heavier parts (models, data, metrics, index, plots, compat) load on
first use, so `import keras_triplet` stays cheap and works without TensorFlow.
"""

import importlib

from keras_triplet import distances, losses, miners

__version__ = "0.1.0"

_LAZY_MODULES = ("compat", "data", "metrics", "models", "index", "plots")
_LAZY_NAMES = {
    "TripletModel": "keras_triplet.models",
    "PKSampler": "keras_triplet.data",
    "PKPyDataset": "keras_triplet.data",
}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_triplet.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'keras_triplet' has no attribute {name!r}")


__all__ = ["distances", "losses", "miners", "__version__", *_LAZY_MODULES, *_LAZY_NAMES]
