"""The SigNet-style embedding network, scaled down for CPUs.

SigNet (Dey et al., "SigNet: Convolutional Siamese Network for Writer Independent Offline
Signature Verification", 2017) is a Siamese AlexNet-like CNN on 155×220 grayscale
signatures: conv 96@11×11 → LRN → max-pool → conv 256@5×5 → LRN → max-pool → dropout →
conv 384@3×3 → conv 256@3×3 → max-pool → dropout → dense 1024 → dropout → dense 128,
trained with a contrastive loss.

This network keeps that shape (a large first kernel with stride, then 5×5, then two 3×3
convolutions, pools between them, two dense layers) with about 20× fewer filters,
batch normalisation in place of local response normalisation (Keras has no LRN, and
BN trains faster), on 64×128 inputs. It has about 0.6 M parameters (2.4 MB), and is
trained here with a triplet loss on L2-normalised embeddings
(`keras_triplet.TripletModel`).

Example:

>>> embedder = build_embedder((64, 128, 1), embedding_dim=32)
>>> embedder.output_shape
(None, 32)
"""

import keras
from keras import layers


def build_embedder(input_shape=(64, 128, 1), embedding_dim=64, width=1.0, dropout=0.2, seed=0):
    """A SigNet-style CNN mapping `[B, H, W, 1]` images to `[B, embedding_dim]` embeddings.

    Args:
        input_shape: `(height, width, 1)` of the preprocessed images.
        embedding_dim: size of the embedding.
        width: multiplies every layer's number of filters / units (1.0: 24-48-64-64
            filters, 256 dense units).
        dropout: dropout rate before each dense layer.
        seed: seed of the weight initialisers.
    """

    def n(c):
        return max(4, int(round(c * width)))

    init = keras.initializers.HeNormal(seed=seed)

    def conv(x, filters, kernel, strides=1, name=None):
        x = layers.Conv2D(
            n(filters),
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer=init,
            name=name,
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="signature")
    x = conv(inputs, 24, 7, strides=2, name="conv1")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = conv(x, 48, 5, name="conv2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = conv(x, 64, 3, name="conv3")
    x = conv(x, 64, 3, name="conv4")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout1")(x)
    x = layers.Dense(n(256), activation="relu", kernel_initializer=init, name="fc1")(x)
    x = layers.Dropout(dropout, seed=seed + 1, name="dropout2")(x)
    outputs = layers.Dense(
        embedding_dim, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="embedding"
    )(x)
    return keras.Model(inputs, outputs, name="signet_small")


def build_model(input_shape=(64, 128, 1), embedding_dim=64, width=1.0, dropout=0.2, seed=0):
    """`keras_triplet.TripletModel` around `build_embedder(...)` (L2-normalised outputs)."""
    from keras_triplet import TripletModel

    return TripletModel(
        build_embedder(input_shape, embedding_dim, width, dropout, seed),
        normalize=True,
        name="signature_verifier",
    )
