"""Drop-in replacements for tensorflow-addons' metric-learning losses, on every Keras 3 backend.

tensorflow-addons does not work with Keras 3. Change the import and keep the numbers:

    # import tensorflow_addons as tfa
    # loss = tfa.losses.TripletSemiHardLoss(margin=1.0)
    from keras_triplet.compat import tfa
    loss = tfa.TripletSemiHardLoss(margin=1.0)

tensorflow-addons 0.23's whole metric-learning set, with its signatures and defaults:

| module           | classes and functions                                                 |
|------------------|-----------------------------------------------------------------------|
| `triplet.py`     | `TripletSemiHardLoss`, `triplet_semihard_loss`, `TripletHardLoss`, `triplet_hard_loss` |
| `contrastive.py` | `ContrastiveLoss`, `contrastive_loss` (0/1 pair labels, pair distances) |
| `lifted.py`      | `LiftedStructLoss`, `lifted_struct_loss`                              |
| `npairs.py`      | `NpairsLoss`, `npairs_loss`, `NpairsMultilabelLoss`, `npairs_multilabel_loss` |

The values match tensorflow-addons 0.23, corner cases included (checked against the
real package's outputs in tests/fixtures/), and every function returns its input's dtype
(float16 in, float16 out; computed in float32 inside), as tensorflow-addons does. The
classes follow Keras 3: their output has the loss's `dtype` (float32 by default). **The
deliberate differences**: where tensorflow-addons gives NaN on a batch with nothing to
learn from (semi-hard and lifted losses without positive pairs, the lifted loss on one
class, a multilabel sample without labels), ours gives 0, so one unlucky batch cannot
poison a training run; NaN or infinite inputs still give NaN. Memory is O(B²) where
tensorflow-addons tiled `[B², B]` (lifted).
"""

from keras_triplet.compat.tfa.contrastive import ContrastiveLoss, contrastive_loss
from keras_triplet.compat.tfa.lifted import LiftedStructLoss, lifted_struct_loss
from keras_triplet.compat.tfa.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)
from keras_triplet.compat.tfa.triplet import (
    TripletHardLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_semihard_loss,
)

__all__ = [
    "TripletSemiHardLoss",
    "TripletHardLoss",
    "triplet_semihard_loss",
    "triplet_hard_loss",
    "ContrastiveLoss",
    "contrastive_loss",
    "LiftedStructLoss",
    "lifted_struct_loss",
    "NpairsLoss",
    "npairs_loss",
    "NpairsMultilabelLoss",
    "npairs_multilabel_loss",
]
