"""The validate stage: the raw and processed splits checked against params' thresholds; the
report goes to reports/data_checks/ and a failed expectation stops the pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wardrobe.checks.suites import ImageExpectations, run_checks
from wardrobe.checks.verdict import CHECKED_KEY
from wardrobe.dataset import (
    IMAGE_SIDE,
    PAD,
    PROCESSED_SIDE,
    SPLITS,
    data_digest,
    load_raw_split,
    load_split,
)
from wardrobe.errors import ChecksFailed
from wardrobe.params import NUM_CLASSES, ChecksParams, PreprocessParams


def validate(
    checks: ChecksParams,
    limits: PreprocessParams,
    raw_dir: str | os.PathLike[str],
    processed_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """The validate stage: check both splits, raw and processed, write the report to out_dir
    and return its summary; raise ChecksFailed (after writing) when an expectation failed."""
    raw_counts = {"train": checks.raw_train_count, "test": checks.raw_test_count}
    processed_counts = {
        "train": limits.limit_train or checks.raw_train_count,
        "test": limits.limit_test or checks.raw_test_count,
    }
    common = {"num_classes": NUM_CLASSES, "class_count_tolerance": checks.class_count_tolerance}
    batches = []
    for split in SPLITS:
        raw_spec = ImageExpectations(
            name=f"raw/{split}", image_shape=(IMAGE_SIDE, IMAGE_SIDE), dtype="uint8",
            pixel_range=checks.raw_pixel_range, border=0, count=raw_counts[split], **common,
        )  # fmt: skip
        batches.append((raw_spec, *load_raw_split(raw_dir, split)))
        processed_spec = ImageExpectations(
            name=f"processed/{split}", image_shape=(PROCESSED_SIDE, PROCESSED_SIDE, 1),
            dtype="float32", pixel_range=checks.processed_pixel_range, border=PAD,
            count=processed_counts[split], **common,
        )  # fmt: skip
        batches.append((processed_spec, *load_split(Path(processed_dir) / f"{split}.npz")))
    checked = {CHECKED_KEY: data_digest(processed_dir)}
    summary = run_checks(batches, out_dir, examples=checks.examples, record=checked)
    if not summary["success"]:
        raise ChecksFailed(
            f"{summary['failed']} expectation(s) failed: {'; '.join(summary['failures'])}. "
            f"See {out_dir}/{summary['data_docs']}; fix the data (`dvc repro fetch "
            "preprocess`) or the thresholds under `checks` in params.yaml"
        )
    return summary
