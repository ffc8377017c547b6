"""DVC stage `plots`: the lecture's figures of both models as PNG files under
reports/figures/ae/ and reports/figures/vae/ (DVC plots), also logged as artifacts
(`figures/`) of the models' MLflow evaluation runs (reports/evaluation_runs.json)."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    # Imported here, once run_stage has set up the signals: the library takes seconds to load.
    from wardrobe.plots import plot

    args = parse_args(
        argv, __doc__, models="directory of ae/ and vae/ (models)",
        data="directory of test.npz (data/processed)",
        out="figure directory (reports/figures)",
        runs="the evaluation runs to log the figures into (reports/evaluation_runs.json)",
    )  # fmt: skip
    params = load(args.params)
    written = plot(params.plots, params.seed, args.models, args.data, args.out, args.runs)
    print(f"plots: {len(written)} figures written to {args.out}/ae and {args.out}/vae")


if __name__ == "__main__":
    run_stage("plots", main)
