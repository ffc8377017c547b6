"""The variational autoencoder: the encoder outputs a Gaussian per image (z_mean, z_log_var),
a sample of it is decoded, and the loss adds a KL penalty towards N(0, I)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

from wardrobe.models.autoencoder import build_decoder, conv_trunk


@keras.saving.register_keras_serializable(package="wardrobe")
class Sampling(layers.Layer):
    """The reparameterization trick: z = z_mean + exp(0.5 * z_log_var) * epsilon."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def build_vae_encoder(latent_dim: int, filters: Sequence[int], seed: int | None) -> keras.Model:
    """Image -> (z_mean, z_log_var, z)."""
    inputs, features = conv_trunk(filters, "encoder")
    z_mean = layers.Dense(latent_dim, name="z_mean")(features)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(features)
    z = Sampling(seed=seed, name="sampling")([z_mean, z_log_var])
    return keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")


@keras.saving.register_keras_serializable(package="wardrobe")
class VAE(keras.Model):
    """Encoder + decoder trained on beta * reconstruction BCE + KL, tracking all three."""

    def __init__(
        self, encoder: keras.Model, decoder: keras.Model, beta: float = 500.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.beta = encoder, decoder, float(beta)
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def call(self, inputs, training: bool = False):
        """Reconstruction of a batch of images, decoded from sampled z."""
        _, _, z = self.encoder(inputs, training=training)
        return self.decoder(z, training=training)

    def objective_terms(self, images, training: bool):
        """(total, reconstruction, kl): batch means of the training objective's terms."""
        z_mean, z_log_var, z = self.encoder(images, training=training)
        reconstruction = self.decoder(z, training=training)
        # BCE averaged over each image's pixels, times beta, averaged over the batch.
        reconstruction_loss = self.beta * ops.mean(
            keras.losses.binary_crossentropy(images, reconstruction, axis=(1, 2, 3))
        )
        kl_loss = ops.mean(
            ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1)
        )
        return reconstruction_loss + kl_loss, reconstruction_loss, kl_loss

    def record(self, total, reconstruction, kl) -> dict[str, Any]:
        self.total_loss_tracker.update_state(total)
        self.reconstruction_loss_tracker.update_state(reconstruction)
        self.kl_loss_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    @staticmethod
    def images_of(data):
        """Batches are images, or (images, ...) tuples when fit gets `(x_test, x_test)`."""
        return data[0] if isinstance(data, tuple | list) else data

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, reconstruction, kl = self.objective_terms(self.images_of(data), training=True)
        grads = tape.gradient(total, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        return self.record(total, reconstruction, kl)

    def test_step(self, data):
        return self.record(*self.objective_terms(self.images_of(data), training=False))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.beta,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


def build_vae(
    latent_dim: int, filters: Sequence[int], beta: float, seed: int | None = None
) -> tuple[VAE, keras.Model, keras.Model]:
    """(vae, encoder, decoder)."""
    encoder = build_vae_encoder(latent_dim, filters, seed)
    decoder = build_decoder(latent_dim, filters)
    vae = VAE(encoder, decoder, beta=beta, name="vae")
    vae.build((None, *encoder.input_shape[1:]))
    return vae, encoder, decoder
