"""DVC stage `preprocess`: scale to [0, 1], pad to 32x32, add the channel axis."""

from __future__ import annotations

import argparse
import logging

from wardrobe.cli import run_stage
from wardrobe.data import SPLITS, balanced_subset, load_raw_split, preprocess_images, save_split
from wardrobe.fsio import atomic_dir
from wardrobe.params import NUM_CLASSES, PreprocessParams, load_section

log = logging.getLogger("preprocess")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (`preprocess`)")
    parser.add_argument("--raw", required=True, help="directory of the IDX files (data/raw)")
    parser.add_argument("--out", required=True, help="directory for train.npz, test.npz")
    args = parser.parse_args()

    params = load_section(PreprocessParams.from_raw, args.params)
    limits = {"train": params.limit_train, "test": params.limit_test}
    with atomic_dir(args.out) as staging:
        for split in SPLITS:
            images, labels = load_raw_split(args.raw, split)
            keep = balanced_subset(labels, limits[split], NUM_CLASSES)
            processed = preprocess_images(images[keep])
            save_split(staging / f"{split}.npz", processed, labels[keep])
            log.info("%s: %s %s", split, processed.shape, processed.dtype)
            print(f"preprocess: {split}: {len(keep):,} images -> {args.out}/{split}.npz")


if __name__ == "__main__":
    run_stage("preprocess", main)
