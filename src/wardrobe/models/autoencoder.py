"""The autoencoder: a convolutional encoder to a 2-D embedding and its mirror-image decoder."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from wardrobe.dataset import PROCESSED_SHAPE


def conv_trunk(filters: Sequence[int], name: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Image input and the flattened output of stride-2 3x3 convolutions, one per filter count.

    (32, 32, 1) -> (16, 16, f0) -> (8, 8, f1) -> (4, 4, f2) -> Flatten."""
    inputs = keras.Input(shape=PROCESSED_SHAPE, name=f"{name}_input")
    x = inputs
    for i, n in enumerate(filters):
        x = layers.Conv2D(n, 3, strides=2, activation="relu", padding="same", name=f"conv_{i}")(x)
    return inputs, layers.Flatten(name="flatten")(x)


def build_decoder(latent_dim: int, filters: Sequence[int]) -> keras.Model:
    """Latent point -> image: Dense to the encoder's last feature map, transposed convolutions
    in reverse filter order, and a sigmoid Conv2D to one channel."""
    side = PROCESSED_SHAPE[0] // 2 ** len(filters)
    inputs = keras.Input(shape=(latent_dim,), name="decoder_input")
    x = layers.Dense(side * side * filters[-1], name="dense")(inputs)
    x = layers.Reshape((side, side, filters[-1]), name="reshape")(x)
    for i, n in enumerate(reversed(filters)):
        x = layers.Conv2DTranspose(
            n, 3, strides=2, activation="relu", padding="same", name=f"conv_transpose_{i}"
        )(x)
    outputs = layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="decoder_output")(x)
    return keras.Model(inputs, outputs, name="decoder")


def build_autoencoder(
    latent_dim: int, filters: Sequence[int]
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(autoencoder, encoder, decoder); the autoencoder is image -> encoder -> decoder."""
    inputs, features = conv_trunk(filters, "encoder")
    embedding = layers.Dense(latent_dim, name="embedding")(features)
    encoder = keras.Model(inputs, embedding, name="encoder")
    decoder = build_decoder(latent_dim, filters)
    autoencoder = keras.Model(inputs, decoder(embedding), name="autoencoder")
    return autoencoder, encoder, decoder
