"""DVC stage `plots` (`plots@ae`, `plots@vae`): the lecture's figures of one model as PNG files
under reports/figures/<model>/ (DVC plots), also logged as artifacts (`figures/`) of the
model's MLflow evaluation run (named in reports/evaluation/<model>.json)."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, {"model": ("ae", "vae")},
        models="directory of the model's directory (models)",
        data="directory of test.npz (data/processed)",
        out="the model's figure directory (reports/figures/<model>)",
        evaluation="the model's evaluation, whose run the figures are logged into "
        "(reports/evaluation/<model>.json)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.plots import plot

    written = plot(params.plots, params.seed, args.model, args.models, args.data, args.out,
                   args.evaluation)  # fmt: skip
    print(f"plots: {len(written)} figures of {args.model} written to {args.out}")


if __name__ == "__main__":
    run_stage("plots", main)
