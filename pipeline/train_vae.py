"""DVC stage `train_vae`: the lecture's VAE, tracked as the MLflow run `vae`."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from wardrobe.checks import require_passed
from wardrobe.cli import run_stage
from wardrobe.data import load_split
from wardrobe.params import VAEParams, load_seed, read_params
from wardrobe.training import TrainingJob, seed_everything, train_and_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params (`seed`, `vae`)")
    parser.add_argument("--data", required=True, help="directory of train.npz, test.npz")
    parser.add_argument("--checks", required=True, help="reports/data_checks/summary.json")
    parser.add_argument("--out", required=True, help="model directory (models/vae)")
    args = parser.parse_args()

    require_passed(args.checks)
    raw = read_params(args.params)
    params, seed = VAEParams.from_raw(raw, args.params), load_seed(raw, args.params)
    train = load_split(Path(args.data) / "train.npz")
    test = load_split(Path(args.data) / "test.npz")

    import keras

    from wardrobe.models import build_vae

    seed_everything(seed, params.deterministic)
    vae, encoder, decoder = build_vae(params.latent_dim, params.filters, params.beta, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(params.learning_rate))
    job = TrainingJob(
        run_name="vae",
        model=vae,
        parts={"vae": vae, "encoder": encoder, "decoder": decoder},
        registered_decoder="wardrobe-vae-decoder",
        autoencoding=False,
        params={"seed": seed, "vae": asdict(params)},
        epochs=params.epochs,
        batch_size=params.batch_size,
        seed=seed,
    )
    result = train_and_save(job, args.data, args.out, train, test)
    last = result["last_epoch"]
    print(
        f"train_vae: {params.epochs} epochs in {result['seconds']:.1f} s, val reconstruction "
        f"{last['val_reconstruction_loss']:.2f}, val KL {last['val_kl_loss']:.2f}; "
        f"run {result['run']['run_id']}"
    )


if __name__ == "__main__":
    run_stage("train_vae", main)
