"""DVC stage `reference`: what every model's evaluation compares with, computed once per
classifier and test set: the classifier's features of the test images and their neighbour
radii, and the BCE anchors (data/reference/reference.npz); the classifier's own test metrics
and what real training images score, logged into its MLflow evaluation run
(`classifier/eval`, a child of the run that trained it) and written with the run's id to
reports/evaluation/classifier.json."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, classifier="the classifier's directory (models/classifier)",
        data="directory of train.npz and test.npz (data/processed)",
        out="reference directory (data/reference)",
        report="the classifier's evaluation (reports/evaluation/classifier.json)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.evaluation import reference

    metrics = reference(params.evaluate, params.seed, args.classifier, args.data, args.out,
                        args.report)  # fmt: skip
    test = metrics["test"]
    print(
        f"reference: classifier accuracy {test['accuracy']:.4f}, train-to-test FD "
        f"{test['frechet_distance_train']:.2f}; written to {args.out} and {args.report}"
    )


if __name__ == "__main__":
    run_stage("reference", main)
