"""DVC stage `explore`: the decoders as ONNX and the wardrobe page's data (make explore)."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, models="directory of the trained models (models)",
        data="directory of test.npz (data/processed)", out="output directory (reports/explore)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read: TensorFlow takes seconds to load.
    from wardrobe.explore.data import export

    written = export(params.plots, args.models, args.data, args.out)
    print(f"explore: {', '.join(p.name for p in written)} written to {args.out}")


if __name__ == "__main__":
    run_stage("explore", main)
