"""DVC stage `train_ae`: the lecture's autoencoder, tracked as the MLflow run `ae`."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from wardrobe.checks import require_passed
from wardrobe.cli import run_stage
from wardrobe.data import load_split
from wardrobe.params import AEParams, load_seed, read_params
from wardrobe.training import TrainingJob, seed_everything, train_and_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params (`seed`, `ae`)")
    parser.add_argument("--data", required=True, help="directory of train.npz, test.npz")
    parser.add_argument("--checks", required=True, help="reports/data_checks/summary.json")
    parser.add_argument("--out", required=True, help="model directory (models/ae)")
    args = parser.parse_args()

    require_passed(args.checks)
    raw = read_params(args.params)
    params, seed = AEParams.from_raw(raw, args.params), load_seed(raw, args.params)
    train = load_split(Path(args.data) / "train.npz")
    test = load_split(Path(args.data) / "test.npz")

    import keras

    from wardrobe.models import build_autoencoder

    seed_everything(seed, params.deterministic)
    autoencoder, encoder, decoder = build_autoencoder(params.latent_dim, params.filters)
    loss = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}[params.loss]
    autoencoder.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss)
    job = TrainingJob(
        run_name="ae",
        model=autoencoder,
        parts={"autoencoder": autoencoder, "encoder": encoder, "decoder": decoder},
        registered_decoder="wardrobe-ae-decoder",
        autoencoding=True,
        params={"seed": seed, "ae": asdict(params)},
        epochs=params.epochs,
        batch_size=params.batch_size,
        seed=seed,
    )
    result = train_and_save(job, args.data, args.out, train, test)
    last = result["last_epoch"]
    print(
        f"train_ae: {params.epochs} epochs in {result['seconds']:.1f} s, "
        f"val_loss ({params.loss}) {last['val_loss']:.4f}; run {result['run']['run_id']}"
    )


if __name__ == "__main__":
    run_stage("train_ae", main)
