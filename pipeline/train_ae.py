"""DVC stage `train_ae`: the lecture's autoencoder, tracked as the MLflow run `ae`."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, data="directory of train.npz and test.npz (data/processed)",
        checks="the data checks' verdict (reports/data_checks/summary.json)",
        out="model directory (models/ae)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.training.ae import train

    trained = train(params.ae, params.seed, args.data, args.checks, args.out)
    print(
        f"train_ae: {params.ae.epochs} epochs in {trained.seconds:.1f} s, val_loss "
        f"({params.ae.loss}) {trained.last_epoch['val_loss']:.4f}; MLflow run {trained.run_id}"
    )


if __name__ == "__main__":
    run_stage("train_ae", main)
