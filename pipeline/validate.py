"""DVC stage `validate`: Great Expectations checks of raw and processed data.

Writes summary.json and the HTML Data Docs, then exits non-zero if any expectation failed,
so that no training stage runs on data that failed its checks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wardrobe.checks import ImageExpectations, run_checks
from wardrobe.cli import run_stage
from wardrobe.data import IMAGE_SIDE, PAD, PROCESSED_SIDE, SPLITS, load_raw_split, load_split
from wardrobe.errors import ChecksFailed
from wardrobe.params import (
    NUM_CLASSES,
    ChecksParams,
    PreprocessParams,
    read_params,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params (`checks`, `preprocess`)")
    parser.add_argument("--raw", required=True, help="directory of the IDX files (data/raw)")
    parser.add_argument("--processed", required=True, help="directory of train.npz, test.npz")
    parser.add_argument("--out", required=True, help="report directory (reports/data_checks)")
    args = parser.parse_args()

    raw_params = read_params(args.params)
    checks = ChecksParams.from_raw(raw_params, args.params)
    limits = PreprocessParams.from_raw(raw_params, args.params)
    raw_counts = {"train": checks.raw_train_count, "test": checks.raw_test_count}
    processed_counts = {
        "train": limits.limit_train or checks.raw_train_count,
        "test": limits.limit_test or checks.raw_test_count,
    }

    batches = []
    for split in SPLITS:
        common = {
            "num_classes": NUM_CLASSES,
            "class_count_tolerance": checks.class_count_tolerance,
        }
        images, labels = load_raw_split(args.raw, split)
        raw_spec = ImageExpectations(
            name=f"raw/{split}", image_shape=(IMAGE_SIDE, IMAGE_SIDE), dtype="uint8",
            pixel_range=checks.raw_pixel_range, border=0, count=raw_counts[split], **common,
        )  # fmt: skip
        batches.append((raw_spec, images, labels))
        images, labels = load_split(Path(args.processed) / f"{split}.npz")
        processed_spec = ImageExpectations(
            name=f"processed/{split}", image_shape=(PROCESSED_SIDE, PROCESSED_SIDE, 1),
            dtype="float32", pixel_range=checks.processed_pixel_range, border=PAD,
            count=processed_counts[split], **common,
        )  # fmt: skip
        batches.append((processed_spec, images, labels))

    summary = run_checks(batches, args.out, examples=checks.examples)
    print(
        f"validate: {summary['evaluated']} expectations, {summary['failed']} failed; "
        f"report: {args.out}/summary.json, {args.out}/{summary['data_docs']}"
    )
    if not summary["success"]:
        raise ChecksFailed(
            f"{summary['failed']} expectation(s) failed: {'; '.join(summary['failures'])}. "
            f"See {args.out}/{summary['data_docs']}; fix the data (`dvc repro fetch "
            "preprocess`) or the thresholds under `checks` in params.yaml"
        )


if __name__ == "__main__":
    run_stage("validate", main)
