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
import numpy as np
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


def build_hog_embedder(input_dim, hidden=256, dropout=0.5, seed=0):
    """The learned HOG metric: `[B, D]` HOG descriptors to `[B, D]` embeddings,

        f(x) = x + W₂ relu(W₁ dropout(x)),   W₂ = 0 at the start,

    a residual MLP whose correction starts at zero: before training, the embedding is the
    HOG descriptor itself (its distances are `--baseline hog`'s), and training learns,
    from the training writers' genuine signatures and skilled forgeries, which cells and
    orientations to stretch or shrink, and which combinations of them to add. (The
    metric is learned; the descriptor is scikit-image's, `features.hog_descriptors`.)

    Args:
        input_dim: length of the descriptor (`features.hog_size`).
        hidden: units of the hidden layer.
        dropout: dropout rate on the descriptor and on the hidden layer (a few dozen
            writers are few for ~2 M weights).
        seed: seed of the initialiser and the dropout.
    """
    inputs = keras.Input(shape=(int(input_dim),), name="hog")
    h = layers.Dropout(dropout, seed=seed, name="dropout1")(inputs)
    h = layers.Dense(
        hidden, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=seed), name="fc1"
    )(h)
    h = layers.Dropout(dropout, seed=seed + 1, name="dropout2")(h)
    correction = layers.Dense(int(input_dim), kernel_initializer="zeros", name="correction")(h)
    outputs = layers.Add(name="embedding")([inputs, correction])
    return keras.Model(inputs, outputs, name="hog_metric")


def build_hog_model(input_dim, hidden=256, dropout=0.5, seed=0):
    """`keras_triplet.TripletModel` around `build_hog_embedder(...)` (L2-normalised outputs)."""
    from keras_triplet import TripletModel

    return TripletModel(
        build_hog_embedder(input_dim, hidden, dropout, seed), normalize=True, name="signature_verifier"
    )


class DescriptorModel:
    """A model whose network takes descriptors, not images: `embed(images)` computes the
    descriptors (`features.hog_descriptors`) and embeds them, so evaluation, enrolment,
    verification and the web page use it as they use the CNN. `network` is the Keras
    `TripletModel`, `embedder` its embedder."""

    def __init__(self, network, settings=None):
        self.network = network
        self.embedder = network.embedder
        self.settings = settings

    def embed(self, images, batch_size=256):
        from apps.signature_verification.features import hog_descriptors

        return self.network.embed(hog_descriptors(images, self.settings), batch_size=batch_size)


class FusedModel:
    """Two (or more) models of the same images side by side: `embed(images)` is their
    embeddings concatenated, `[N, sum(parts)]`, each part L2-normalised by its own model.

    What the fused `calibrated` rule scores (`cohort.CohortCalibration` with `parts`): the
    shipped HOG metric and the CNN see different things (README, "The shipped default:
    the HOG metric fused with the CNN"). A model's side file names its partner (`"fuse"`,
    `training.load_model` loads it from beside the model); evaluation, enrolment (the
    profile holds the concatenated embeddings), verification and the web page use it as
    they use one model. `models[0]` is the model the path names (what `train --init`
    fine-tunes)."""

    def __init__(self, models, parts):
        self.models = list(models)
        self.parts = tuple(int(p) for p in parts)

    def embed(self, images, batch_size=256):
        parts = [np.asarray(m.embed(images, batch_size=batch_size), np.float32) for m in self.models]
        widths = tuple(p.shape[-1] for p in parts)
        if widths != self.parts:
            raise ValueError(
                f"the fused models give embeddings of {widths} values, their side file says {self.parts}."
            )
        return np.concatenate(parts, axis=-1)
