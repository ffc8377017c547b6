"""Image arrays reduced to the tables the data checks state expectations about: one row per
image (shape, dtype, pixel range, non-finite counts, border, label) and one row per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def summarize_images(images: np.ndarray, labels: np.ndarray, border: int) -> pd.DataFrame:
    """One row per image: what the expectations look at. Pixel extremes skip NaN and inf,
    which are counted in their own columns."""
    n = len(images)
    flat = images.reshape(n, -1)
    table = {
        "shape": np.full(n, shape_text(images.shape[1:]), dtype=object),
        "dtype": np.full(n, str(images.dtype), dtype=object),
    }
    if np.issubdtype(images.dtype, np.floating):
        finite = np.isfinite(flat)
        table["n_nan"] = np.isnan(flat).sum(axis=1)
        table["n_inf"] = np.isinf(flat).sum(axis=1)
        if finite.all():
            table["pixel_min"], table["pixel_max"] = flat.min(axis=1), flat.max(axis=1)
        else:
            table["pixel_min"] = np.where(finite, flat, np.inf).min(axis=1)
            table["pixel_max"] = np.where(finite, flat, -np.inf).max(axis=1)
    else:
        table["n_nan"] = table["n_inf"] = np.zeros(n, dtype=np.int64)
        table["pixel_min"], table["pixel_max"] = flat.min(axis=1), flat.max(axis=1)
    if border:
        mask = np.zeros(images.shape[1:3], dtype=bool)
        mask[:border, :], mask[-border:, :], mask[:, :border], mask[:, -border:] = (True,) * 4
        edge = images[:, mask].reshape(n, -1).astype(np.float64)
        table["border_abs_max"] = np.nan_to_num(np.abs(edge), nan=np.inf).max(axis=1)
    table["label"] = labels.astype(np.int64)
    frame = pd.DataFrame(table)
    frame.index.name = "image"
    return frame


def summarize_classes(labels: np.ndarray, num_classes: int) -> pd.DataFrame:
    """One row per class with its number of images (labels outside the classes are ignored
    here; the image table's label expectation reports them)."""
    valid = labels[(labels >= 0) & (labels < num_classes)].astype(np.int64)
    frame = pd.DataFrame(
        {"label": np.arange(num_classes), "count": np.bincount(valid, minlength=num_classes)}
    )
    frame.index.name = "class"
    return frame
