"""DVC stage `validate`: Great Expectations checks of the raw and processed data.

Writes summary.json and the HTML Data Docs, then exits non-zero if any expectation failed,
so that no training stage runs on data that failed its checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from wardrobe.cli import parse_args, run_stage
from wardrobe.params import load


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(
        argv, __doc__, raw="directory of the IDX files (data/raw)",
        processed="directory of train.npz and test.npz (data/processed)",
        out="report directory (reports/data_checks)",
    )  # fmt: skip
    params = load(args.params)
    # Imported once the arguments (and params) are read, so that --help and a bad value
    # answer at once, and after run_stage set up the signals: it takes seconds to load.
    from wardrobe.checks.validate import validate

    summary = validate(params.checks, params.preprocess, args.raw, args.processed, args.out)
    print(
        f"validate: {summary['evaluated']} expectations passed; "
        f"report: {args.out}/summary.json, {args.out}/{summary['data_docs']}"
    )


if __name__ == "__main__":
    run_stage("validate", main)
