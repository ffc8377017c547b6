"""The train_vae stage: the lecture's VAE, tracked as the MLflow run `vae`."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.fsio import atomic_dir
from wardrobe.memory import require_batch_fits
from wardrobe.models.vae import build_vae
from wardrobe.params import VAEParams
from wardrobe.tracking.models import EpochMetrics
from wardrobe.tracking.runs import training_run
from wardrobe.training.loop import Trained, fit, save, seed_everything


def train(params: VAEParams, seed: int, data_dir: Path, checks: Path, out_dir: Path) -> Trained:
    """Train the VAE on beta x reconstruction BCE + KL and write out_dir: vae.keras,
    encoder.keras, decoder.keras, history.csv, run.json. Any failure or interrupt ends the
    run FAILED or KILLED and leaves out_dir as it was."""
    digest = require_passed(checks, data_dir)  # DVC's hash of the data the checks passed
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    vae, encoder, decoder = build_vae(params.latent_dim, params.filters, params.beta, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(params.learning_rate))
    require_batch_fits(vae, params.batch_size, len(data["train"][0]), "vae.batch_size")
    # The new out_dir takes the old one's place as the block ends, before the run FINISHES.
    with (
        training_run("vae", params, seed, data, data_dir, digest) as run,
        atomic_dir(out_dir) as staging,
    ):
        history = fit(
            vae, data["train"], data["test"], epochs=params.epochs,
            batch_size=params.batch_size, seed=seed,
            target=None,  # the VAE's train_step computes its own loss
            callbacks=[EpochMetrics()],
        )  # fmt: skip
        parts = {"vae": vae, "encoder": encoder, "decoder": decoder}
        trained = save(staging, run, history, parts, data["test"][0])
    return trained
