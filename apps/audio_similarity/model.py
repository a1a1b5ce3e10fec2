"""The embedding network: a compact CNN over log-mel windows, and its training wrapper.

`build_embedder` maps a `[frames, n_mels, 1]` log-mel window (dB) to a `[D]` vector:

    Rescaling (fixed standardisation: (x - mean) / std of the training features)
    4 × [Conv 3×3 (no bias) → BatchNorm → ReLU → MaxPool 2×2]   widths w, 2w, 4w, 8w
    Conv 3×3 → BatchNorm → ReLU                                  (sees the whole window)
    [GlobalAveragePooling ‖ GlobalMaxPooling] → Dense(D)

`build_model` wraps it in `keras_triplet.TripletModel(embedder, normalize=True)`, which
L2-normalises the embeddings. Only standard Keras layers are used, so the saved
`.keras` file loads on TensorFlow, JAX and PyTorch with
`keras.saving.load_model(path)` (after `import keras_triplet`); `load_model` also reads
the feature settings from the side file `MODEL.keras.json`.
"""

import keras
import numpy as np

from apps._common import fail, load_keras_model, read_side_file, side_path
from apps.audio_similarity.features import FeatureSettings

DEFAULT_WIDTH = 16
DEFAULT_DIM = 64


def build_embedder(
    frames=96, n_mels=64, embedding_dim=DEFAULT_DIM, width=DEFAULT_WIDTH, mean=0.0, std=1.0, seed=0
):
    """The CNN embedder (a functional `keras.Model` named "audio_embedder").

    Example:

    >>> net = build_embedder(frames=32, n_mels=16, embedding_dim=8, width=4)
    >>> net.output_shape
    (None, 8)
    """
    layers = keras.layers
    init = lambda i: keras.initializers.HeUniform(seed=seed + i)  # noqa: E731
    inputs = keras.Input((frames, n_mels, 1), name="log_mel")
    x = layers.Rescaling(1.0 / float(std), offset=-float(mean) / float(std), name="standardize")(inputs)
    for i, mult in enumerate((1, 2, 4, 8)):
        x = layers.Conv2D(
            width * mult, 3, padding="same", use_bias=False, kernel_initializer=init(i), name=f"conv{i + 1}"
        )(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{i + 1}")(x)
    x = layers.Conv2D(
        width * 8, 3, padding="same", use_bias=False, kernel_initializer=init(10), name="conv5"
    )(x)
    x = layers.BatchNormalization(name="bn5")(x)
    x = layers.Activation("relu", name="relu5")(x)
    pooled = layers.Concatenate(name="pool_avg_max")(
        [layers.GlobalAveragePooling2D(name="avg")(x), layers.GlobalMaxPooling2D(name="max")(x)]
    )
    outputs = layers.Dense(
        embedding_dim, kernel_initializer=keras.initializers.GlorotUniform(seed), name="projection"
    )(pooled)
    return keras.Model(inputs, outputs, name="audio_embedder")


def build_model(**kwargs):
    """`TripletModel(build_embedder(**kwargs), normalize=True)`."""
    from keras_triplet import TripletModel

    return TripletModel(build_embedder(**kwargs), normalize=True, name="audio_similarity")


def load_model(model_path):
    """`(model, settings, frames)`: the model and the feature settings it was trained on.

    The settings come from the side file `MODEL.keras.json` written by `train`; without
    it, the defaults with the model's own input shape.
    """
    import keras_triplet  # noqa: F401 - registers TripletModel (and the losses)

    model = load_keras_model(model_path, hint="Train one with `train DATA --out MODEL.keras`.")
    _, frames, n_mels, _ = model.embedder.input_shape
    meta = read_side_file(model_path)
    settings = FeatureSettings.from_dict(meta.get("features", {"n_mels": n_mels}))
    if settings.n_mels != n_mels:
        fail(f"{side_path(model_path)} says {settings.n_mels} mel bands but the model takes {n_mels}.")
    return model, settings, int(frames)


def self_check_input(n, frames, n_mels):
    """A fixed, platform-independent input `[n, frames, n_mels, 1]` (dB-like values).

    `train` records the model's embeddings of it in the side file; loading the model on
    any backend must reproduce them (tests/test_audio_app.py checks the shipped model).
    """
    t = np.arange(frames, dtype=np.float64)[:, None]
    m = np.arange(n_mels, dtype=np.float64)[None, :]
    out = [
        -60.0 + 25.0 * np.sin(0.07 * (i + 1) * t + 0.11 * (i + 2) * m) * np.cos(0.05 * m * (i + 1))
        for i in range(n)
    ]
    return np.stack(out)[..., None].astype(np.float32)
