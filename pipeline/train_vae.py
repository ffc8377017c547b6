"""DVC stage `train_vae`: the lecture's VAE, tracked as the MLflow run `vae`."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, data="directory of train.npz and test.npz (data/processed)",
        checks="the data checks' verdict (reports/data_checks/summary.json)",
        out="model directory (models/vae)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.training.vae import train

    trained = train(params.vae, params.seed, args.data, args.checks, args.out)
    last = trained.last_epoch
    print(
        f"train_vae: {params.vae.epochs} epochs in {trained.seconds:.1f} s, val reconstruction "
        f"{last['val_reconstruction_loss']:.2f}, val KL {last['val_kl_loss']:.2f}; "
        f"MLflow run {trained.run_id}"
    )


if __name__ == "__main__":
    run_stage("train_vae", main)
