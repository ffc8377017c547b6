"""DVC stage `preprocess`: scale to [0, 1], pad to 32x32, add the channel axis."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, raw="directory of the IDX files (data/raw)",
        out="directory for train.npz and test.npz (data/processed)",
    )  # fmt: skip
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.dataset import preprocess

    counts = preprocess(load(args.params).preprocess, args.raw, args.out)
    for split, n in counts.items():
        print(f"preprocess: {split}: {n:,} images -> {args.out}/{split}.npz")


if __name__ == "__main__":
    run_stage("preprocess", main)
