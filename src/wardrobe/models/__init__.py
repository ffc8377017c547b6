"""The lecture's two models. Importing this package registers the custom Keras classes, so
`keras.models.load_model` of any saved Wardrobe model works in a new process. The classifier
that scores them is in `wardrobe.models.classifier` (plain Keras layers only)."""

from wardrobe.models.autoencoder import build_autoencoder, build_decoder
from wardrobe.models.vae import VAE, Sampling, build_vae

__all__ = ["VAE", "Sampling", "build_autoencoder", "build_decoder", "build_vae"]
