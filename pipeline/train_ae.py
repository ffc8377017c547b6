"""DVC stage `train_ae`: the lecture's autoencoder, tracked as the MLflow run `ae`."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from wardrobe.cli import run_stage
from wardrobe.models import build_autoencoder
from wardrobe.params import AEParams
from wardrobe.training import TrainingJob, run_training_stage

LOSSES = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}


def build_job(params: AEParams, seed: int) -> TrainingJob:
    autoencoder, encoder, decoder = build_autoencoder(params.latent_dim, params.filters)
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate), loss=LOSSES[params.loss]
    )
    return TrainingJob(
        run_name="ae",
        section=params,
        seed=seed,
        model=autoencoder,
        parts={"autoencoder": autoencoder, "encoder": encoder, "decoder": decoder},
        target="images",
    )


def summarize(params: AEParams, last: Mapping[str, float]) -> str:
    return f"val_loss ({params.loss}) {last['val_loss']:.4f}"


if __name__ == "__main__":
    run_stage(
        "train_ae", lambda: run_training_stage(__doc__, AEParams.from_raw, build_job, summarize)
    )
