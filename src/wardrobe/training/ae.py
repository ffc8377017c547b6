"""The train_ae stage: the lecture's autoencoder, tracked as the MLflow run `ae`."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.models.autoencoder import build_autoencoder
from wardrobe.params import AEParams
from wardrobe.training.loop import seed_everything
from wardrobe.training.session import Trained, training_session

LOSSES = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}


def train(params: AEParams, seed: int, data_dir: Path, checks: Path, out_dir: Path) -> Trained:
    """Train the autoencoder to reproduce its input and write out_dir: autoencoder.keras,
    encoder.keras, decoder.keras (registered as wardrobe-ae-decoder), history.csv, run.json."""
    digests = require_passed(checks, data_dir)
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    autoencoder, encoder, decoder = build_autoencoder(params.latent_dim, params.filters)
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate), loss=LOSSES[params.loss]
    )
    with training_session(
        "ae", params, seed, data, digests, out_dir, data_dir=data_dir
    ) as session:
        history = session.fit(autoencoder, target="images")
        parts = {"autoencoder": autoencoder, "encoder": encoder, "decoder": decoder}
        session.save(history, parts, register=["decoder"])
    return session.trained
