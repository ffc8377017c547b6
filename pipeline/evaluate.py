"""DVC stage `evaluate`: test-set reconstruction losses, latent statistics and generation
quality of both models, written to reports/metrics.json (DVC metrics) and
reports/class_shares.json, and logged into one MLflow evaluation run per model (`ae/eval`,
`vae/eval`, `classifier/eval`: children of the runs that trained them), whose ids go to
reports/evaluation_runs.json for the plots stage."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    # Imported here, once run_stage has set up the signals: the library takes seconds to load.
    from wardrobe.evaluation import evaluate

    args = parse_args(
        argv, __doc__, models="directory of ae/, vae/ and classifier/ (models)",
        data="directory of train.npz and test.npz (data/processed)",
        metrics="metrics file (reports/metrics.json)",
        class_shares="the generated images' class shares (reports/class_shares.json)",
        runs="the evaluation runs' ids (reports/evaluation_runs.json)",
    )  # fmt: skip
    params = load(args.params)
    metrics = evaluate(
        params.evaluate, params.seed, args.models, args.data, args.metrics, args.class_shares,
        args.runs,
    )  # fmt: skip
    ae, vae = metrics["ae"]["test"], metrics["vae"]["test"]
    print(
        f"evaluate: AE test BCE {ae['bce']:.4f}, FD {ae['generation']['frechet_distance']:.2f}; "
        f"VAE test BCE {vae['bce']:.4f}, KL {vae['kl']:.2f}, "
        f"FD {vae['generation']['frechet_distance']:.2f}; "
        f"classifier accuracy {metrics['classifier']['test']['accuracy']:.4f}; "
        f"written to {args.metrics}"
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
