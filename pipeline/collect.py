"""DVC stage `collect`: the evaluations of `reference`, `evaluate@ae` and `evaluate@vae`
(reports/evaluation/) merged into reports/metrics.json (DVC metrics),
reports/class_shares.json and reports/evaluation_runs.json."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.collect import collect


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, evaluations="directory of classifier.json, ae.json and vae.json "
        "(reports/evaluation)", metrics="metrics file (reports/metrics.json)",
        class_shares="the generated images' class shares (reports/class_shares.json)",
        runs="the evaluation runs' ids (reports/evaluation_runs.json)",
    )  # fmt: skip
    metrics = collect(args.evaluations, args.metrics, args.class_shares, args.runs)
    ae, vae = metrics["ae"]["test"], metrics["vae"]["test"]
    print(
        f"collect: AE test BCE {ae['bce']:.4f}, FD {ae['generation']['frechet_distance']:.2f}; "
        f"VAE test BCE {vae['bce']:.4f}, KL {vae['kl']:.2f}, "
        f"FD {vae['generation']['frechet_distance']:.2f}; "
        f"classifier accuracy {metrics['classifier']['test']['accuracy']:.4f}; "
        f"written to {args.metrics}"
    )


if __name__ == "__main__":
    run_stage("collect", main)
