"""DVC stage `evaluate` (`evaluate@ae`, `evaluate@vae`): one model's test-set reconstruction
losses, latent statistics and generation quality, scored against the reference stage's
features of the test images, logged into the model's MLflow evaluation run (`ae/eval` or
`vae/eval`: a child of the run that trained it) and written with the generated images' class
shares and the run's id to reports/evaluation/<model>.json, which `collect` merges."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, {"model": ("ae", "vae")},
        models="directory of the model's and the classifier's directories (models)",
        data="directory of test.npz (data/processed)",
        reference="the reference stage's directory (data/reference)",
        out="the model's evaluation (reports/evaluation/<model>.json)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.evaluation import evaluate

    metrics = evaluate(params.evaluate, params.seed, args.model, args.models, args.data,
                       args.reference, args.out)["test"]  # fmt: skip
    kl = f", KL {metrics['kl']:.2f}" if "kl" in metrics else ""
    print(
        f"evaluate: {args.model} test BCE {metrics['bce']:.4f}{kl}, "
        f"FD {metrics['generation']['frechet_distance']:.2f}; written to {args.out}"
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
