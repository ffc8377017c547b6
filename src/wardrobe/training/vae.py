"""The train_vae stage: the lecture's VAE, tracked as the MLflow run `vae`."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.models.vae import build_vae
from wardrobe.params import VAEParams
from wardrobe.training.loop import seed_everything
from wardrobe.training.session import Trained, training_session


def train(params: VAEParams, seed: int, data_dir: Path, checks: Path, out_dir: Path) -> Trained:
    """Train the VAE on beta x reconstruction BCE + KL and write out_dir: vae.keras,
    encoder.keras, decoder.keras (registered as wardrobe-vae-decoder), history.csv, run.json."""
    digests = require_passed(checks, data_dir)
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    vae, encoder, decoder = build_vae(params.latent_dim, params.filters, params.beta, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(params.learning_rate))
    with training_session(
        "vae", params, seed, data, digests, out_dir, data_dir=data_dir
    ) as session:
        history = session.fit(vae, target=None)  # the VAE's train_step computes its own loss
        parts = {"vae": vae, "encoder": encoder, "decoder": decoder}
        session.save(history, parts, register=["decoder"])
    return session.trained
