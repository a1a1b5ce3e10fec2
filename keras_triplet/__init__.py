"""keras-triplet: online-mined triplet and metric-learning losses for Keras 3.

Runs unchanged on TensorFlow, JAX and PyTorch. The core (distances, miners, losses,
compat, models) is imported eagerly, so that `keras.saving.load_model` finds every
registered class after `import keras_triplet`; the parts with heavier dependencies
(data, metrics, index, plots) load on first use, so the import stays cheap and works
without TensorFlow.
"""

import importlib

from keras_triplet import compat, distances, losses, miners, models
from keras_triplet.compat import tfa as _tfa  # registers the tensorflow-addons losses
from keras_triplet.models import TripletModel

__version__ = "0.1.0"

_LAZY_MODULES = ("data", "metrics", "index", "plots")
_LAZY_NAMES = {
    "PKSampler": "keras_triplet.data",
    "PKPyDataset": "keras_triplet.data",
}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_triplet.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'keras_triplet' has no attribute {name!r}")


__all__ = [
    "compat",
    "distances",
    "losses",
    "miners",
    "models",
    "TripletModel",
    "__version__",
    *_LAZY_MODULES,
    *_LAZY_NAMES,
    "_tfa",
]
