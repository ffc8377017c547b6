"""DVC stage `train_classifier`: a small Fashion-MNIST classifier, tracked as the MLflow run
`classifier`. Its features score the images the AE and the VAE generate (stage evaluate)."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, data="directory of train.npz and test.npz (data/processed)",
        checks="the data checks' verdict (reports/data_checks/summary.json)",
        out="model directory (models/classifier)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.training.classifier import train

    trained = train(params.classifier, params.seed, args.data, args.checks, args.out)
    print(
        f"train_classifier: {params.classifier.epochs} epochs in {trained.seconds:.1f} s, "
        f"test accuracy {trained.last_epoch['val_accuracy']:.4f}; MLflow run {trained.run_id}"
    )


if __name__ == "__main__":
    run_stage("train_classifier", main)
