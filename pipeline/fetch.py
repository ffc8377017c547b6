"""DVC stage `fetch`: the four canonical Fashion-MNIST files, verified and decompressed."""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, __doc__, out="directory for the IDX files (data/raw)")
    data = load(args.params).data
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.fetch import fetch_raw

    used = fetch_raw(
        args.out, mirror=data.mirror, urls=data.urls, timeout_s=data.timeout_s,
        retries=data.retries,
    )  # fmt: skip
    for name, source in used.items():
        print(f"fetch: {name} <- {source}")


if __name__ == "__main__":
    run_stage("fetch", main)
