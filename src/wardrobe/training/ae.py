"""The train_ae stage: the lecture's autoencoder, tracked as the MLflow run `ae`."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.fsio import atomic_dir
from wardrobe.memory import require_batch_fits
from wardrobe.models.autoencoder import build_autoencoder
from wardrobe.params import AEParams
from wardrobe.tracking.models import EpochMetrics
from wardrobe.tracking.runs import training_run
from wardrobe.training.loop import Trained, fit, save, seed_everything

LOSSES = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}


def train(params: AEParams, seed: int, data_dir: Path, checks: Path, out_dir: Path) -> Trained:
    """Train the autoencoder to reproduce its input and write out_dir: autoencoder.keras,
    encoder.keras, decoder.keras, history.csv, run.json. Any failure or interrupt ends the
    run FAILED or KILLED and leaves out_dir as it was."""
    digest = require_passed(checks, data_dir)  # DVC's hash of the data the checks passed
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    autoencoder, encoder, decoder = build_autoencoder(params.latent_dim, params.filters)
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate), loss=LOSSES[params.loss]
    )
    require_batch_fits(autoencoder, params.batch_size, len(data["train"][0]), "ae.batch_size")
    # The new out_dir takes the old one's place as the block ends, before the run FINISHES.
    with (
        training_run("ae", params, seed, data, data_dir, digest) as run,
        atomic_dir(out_dir) as staging,
    ):
        history = fit(
            autoencoder, data["train"], data["test"], epochs=params.epochs,
            batch_size=params.batch_size, seed=seed, target="images",
            callbacks=[EpochMetrics()],
        )  # fmt: skip
        parts = {"autoencoder": autoencoder, "encoder": encoder, "decoder": decoder}
        trained = save(staging, run, history, parts, data["test"][0])
    return trained
