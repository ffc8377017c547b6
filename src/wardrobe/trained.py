"""The trained models as the training stages saved them under models/, loaded for evaluate and
plots: an encoder/decoder pair that encodes, decodes and samples latent points the lecture's
way, and the classifier."""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import wardrobe.models.vae  # noqa: F401  (registers the VAE's custom classes for loading)
from wardrobe.errors import DataError

# One inference graph per model, traced once for any batch size.
_forward: weakref.WeakKeyDictionary[keras.Model, Any] = weakref.WeakKeyDictionary()


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int) -> Any:
    """What `model.predict(inputs, batch_size=batch_size)` returns (an array, or a list of
    arrays for several outputs), through one graph per model whose batch size is free. Keras'
    predict traces a graph per batch shape, again for a partial last batch, so scoring images
    with several models retraced TensorFlow functions over and over."""
    if model not in _forward:
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        owner = weakref.ref(model)  # the cache must not keep the model alive
        _forward[model] = tf.function(
            lambda x: owner()(x, training=False), input_signature=signature
        )
    batches = [
        _forward[model](tf.constant(inputs[start : start + batch_size], tf.float32))
        for start in range(0, max(len(inputs), 1), batch_size)  # no inputs: one empty batch
    ]
    if isinstance(batches[0], list | tuple):
        return [
            np.concatenate([np.asarray(b[i]) for b in batches]) for i in range(len(batches[0]))
        ]
    return np.concatenate([np.asarray(b) for b in batches])


@dataclass
class TrainedModel:
    """An encoder/decoder pair as the training stage saved it, with its MLflow run record."""

    name: str  # "ae" | "vae"
    encoder: Any
    decoder: Any
    run: dict[str, Any]
    beta: float | None = None  # the VAE's weight of the reconstruction term

    @property
    def variational(self) -> bool:
        return self.beta is not None

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    def encode(
        self, images: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """{"z": embeddings}; for the VAE also z_mean and z_log_var, and z is sampled from
        them with `rng` (a fixed seed gives the same z)."""
        if not self.variational:
            return {"z": predict(self.encoder, images, batch_size)}
        z_mean, z_log_var, _ = predict(self.encoder, images, batch_size)
        epsilon = rng.standard_normal(z_mean.shape).astype(np.float32)
        z = z_mean + np.exp(0.5 * z_log_var) * epsilon
        return {"z": z, "z_mean": z_mean, "z_log_var": z_log_var}

    def decode(self, points: np.ndarray, batch_size: int) -> np.ndarray:
        return predict(self.decoder, np.asarray(points, np.float32), batch_size)

    def sample_latent(
        self, n: int, rng: np.random.Generator, embeddings: np.ndarray
    ) -> np.ndarray:
        """Points to generate from, as the lecture does: the VAE draws z ~ N(0, I); the AE,
        having no prior, draws uniformly inside the bounding box of its embeddings."""
        if self.variational:
            return rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        low, high = embeddings.min(axis=0), embeddings.max(axis=0)
        return rng.uniform(low, high, size=(n, self.latent_dim)).astype(np.float32)


def read_run_record(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A training stage's run.json: the MLflow run that trained the model."""
    path = Path(model_dir) / "run.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run `dvc repro` to train the model") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); run `dvc repro -f` on its stage") from None
    if not isinstance(record, dict) or "run_id" not in record:
        raise DataError(f"{path}: has no run_id; run `dvc repro -f` on its stage")
    return record


def load_keras(path: Path) -> Any:
    """A saved .keras file, or a DataError naming the stage that rewrites it."""
    stage = f"train_{path.parent.name}"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro {stage}`")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot be loaded ({first}); run `dvc repro -f {stage}`"
        ) from None


def load_trained(models_dir: str | os.PathLike[str], name: str) -> TrainedModel:
    """The AE (`name="ae"`) or VAE (`"vae"`) saved under models_dir/name."""
    model_dir = Path(models_dir) / name
    run = read_run_record(model_dir)
    if name == "ae":
        encoder, decoder = (load_keras(model_dir / f"{p}.keras") for p in ("encoder", "decoder"))
        return TrainedModel(name, encoder, decoder, run)
    vae = load_keras(model_dir / "vae.keras")
    return TrainedModel(name, vae.encoder, vae.decoder, run, beta=float(vae.beta))
