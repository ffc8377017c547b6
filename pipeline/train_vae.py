"""DVC stage `train_vae`: the lecture's VAE, tracked as the MLflow run `vae`."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from wardrobe.cli import run_stage
from wardrobe.models import build_vae
from wardrobe.params import VAEParams
from wardrobe.training import TrainingJob, run_training_stage


def build_job(params: VAEParams, seed: int) -> TrainingJob:
    vae, encoder, decoder = build_vae(params.latent_dim, params.filters, params.beta, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(params.learning_rate))
    return TrainingJob(
        run_name="vae",
        section=params,
        seed=seed,
        model=vae,
        parts={"vae": vae, "encoder": encoder, "decoder": decoder},
        target=None,
    )


def summarize(params: VAEParams, last: Mapping[str, float]) -> str:
    return (
        f"val reconstruction {last['val_reconstruction_loss']:.2f}, "
        f"val KL {last['val_kl_loss']:.2f}"
    )


if __name__ == "__main__":
    run_stage(
        "train_vae", lambda: run_training_stage(__doc__, VAEParams.from_raw, build_job, summarize)
    )
