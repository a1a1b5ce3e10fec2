"""The embedding network: a compact CNN over log-mel windows, and its training wrapper.

`build_embedder` maps a `[frames, n_mels, 1]` log-mel window (dB) to a `[D]` vector:

    Rescaling (fixed standardisation: (x - mean) / std of the training features)
    4 × [Conv 3×3 (no bias) → BatchNorm → ReLU → MaxPool 2×2]   widths w, 2w, 4w, 8w
    Conv 3×3 → BatchNorm → ReLU                                  (sees the whole window)
    [GlobalAveragePooling ‖ GlobalMaxPooling] → Dense(D)

`build_model` wraps it in `keras_triplet.TripletModel(embedder, normalize=True)`, which
L2-normalises the embeddings. Only standard Keras layers are used, so the saved
`.keras` file loads on TensorFlow, JAX and PyTorch with
`keras.saving.load_model(path)` (after `import keras_triplet`).
"""

import keras

DEFAULT_WIDTH = 16
DEFAULT_DIM = 64


def build_embedder(frames=96, n_mels=64, embedding_dim=DEFAULT_DIM, width=DEFAULT_WIDTH,
                   mean=0.0, std=1.0, seed=0):
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
        x = layers.Conv2D(width * mult, 3, padding="same", use_bias=False,
                          kernel_initializer=init(i), name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{i + 1}")(x)
    x = layers.Conv2D(width * 8, 3, padding="same", use_bias=False,
                      kernel_initializer=init(10), name="conv5")(x)
    x = layers.BatchNormalization(name="bn5")(x)
    x = layers.Activation("relu", name="relu5")(x)
    pooled = layers.Concatenate(name="pool_avg_max")(
        [layers.GlobalAveragePooling2D(name="avg")(x), layers.GlobalMaxPooling2D(name="max")(x)]
    )
    outputs = layers.Dense(embedding_dim, kernel_initializer=keras.initializers.GlorotUniform(seed),
                           name="projection")(pooled)
    return keras.Model(inputs, outputs, name="audio_embedder")


def build_model(**kwargs):
    """`TripletModel(build_embedder(**kwargs), normalize=True)`."""
    from keras_triplet import TripletModel

    return TripletModel(build_embedder(**kwargs), normalize=True, name="audio_similarity")
