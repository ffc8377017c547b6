"""DVC stage `fetch`: the four canonical Fashion-MNIST files, verified and decompressed."""

from __future__ import annotations

import argparse

from wardrobe.cli import run_stage
from wardrobe.data import fetch_raw
from wardrobe.params import DataParams, load_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (section `data`)")
    parser.add_argument("--out", required=True, help="directory for the IDX files (data/raw)")
    args = parser.parse_args()

    params = load_section(DataParams.from_raw, args.params)
    used = fetch_raw(
        args.out,
        mirror=params.mirror,
        urls=params.urls,
        timeout_s=params.timeout_s,
        retries=params.retries,
    )
    for name, source in used.items():
        print(f"fetch: {name} <- {source}")


if __name__ == "__main__":
    run_stage("fetch", main)
