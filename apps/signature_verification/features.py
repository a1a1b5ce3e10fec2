"""Hand-crafted descriptors of preprocessed signatures: the histograms of oriented gradients.

HOG (Dalal & Triggs, 2005; here scikit-image's `skimage.feature.hog`, not a copy of it):
the image is cut into 8×8-pixel cells, each cell holds a 9-bin histogram of its gradient
orientations weighted by their magnitude, and every 2×2 block of cells is normalised
(L2-Hys). On 64×128 images that is 7 × 15 blocks × 36 values = 3 780 numbers per
signature, which describe where the strokes are and which way they run, with the
local contrast (pen pressure, ink) normalised away.

They serve twice: as the non-learned baseline of `evaluate --baseline hog` (the
L2-normalised descriptor itself), and as the input of the learned HOG metric
(`model.build_hog_model`, `train --network hog`), which learns a correction of that
descriptor from the training writers.

Example:

>>> import numpy as np
>>> images = np.zeros((2, 64, 128, 1), np.float32); images[:, 20:40, 30:90] = 1.0
>>> d = hog_descriptors(images)
>>> d.shape, d.dtype.name, round(float(np.linalg.norm(d[0])), 4)
((2, 3780), 'float32', 1.0)
"""

import numpy as np

# The descriptor's settings (also recorded in a HOG model's side file).
HOG_SETTINGS = {"orientations": 9, "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}

# `train`'s networks and the learned HOG metric's training defaults (`model.build_hog_model`;
# here, not in `training`, so that the command line's --help needs no Keras).
NETWORKS = ("hog", "signet")
DEFAULT_NETWORK = "hog"
HOG_HIDDEN = 256
HOG_DROPOUT = 0.5
HOG_LEARNING_RATE = 3e-4
HOG_MARGIN = 0.2
HOG_EPOCHS = 15


def hog_size(image_size, settings=None):
    """The length of the HOG descriptor of `(height, width)` images."""
    s = settings or HOG_SETTINGS
    cells = [int(image_size[i]) // int(s["pixels_per_cell"][i]) for i in range(2)]
    blocks = [max(0, c - int(b) + 1) for c, b in zip(cells, s["cells_per_block"])]
    return (
        blocks[0]
        * blocks[1]
        * int(s["cells_per_block"][0])
        * int(s["cells_per_block"][1])
        * int(s["orientations"])
    )


def hog_descriptors(images, settings=None):
    """L2-normalised HOG descriptors `float32 [N, D]` of preprocessed images `[N, H, W, 1]`
    (see the module docstring; `settings`: `HOG_SETTINGS` by default)."""
    from skimage.feature import hog

    s = settings or HOG_SETTINGS
    images = np.asarray(images, np.float32)
    if len(images) == 0:
        return np.zeros((0, hog_size(images.shape[1:3], s)), np.float32)
    x = np.stack(
        [
            hog(
                im[..., 0],
                orientations=int(s["orientations"]),
                pixels_per_cell=tuple(s["pixels_per_cell"]),
                cells_per_block=tuple(s["cells_per_block"]),
            )
            for im in images
        ]
    ).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
