"""Fashion-MNIST on disk: IDX parsing of the canonical files, the lecture's preprocessing (the
preprocess stage), and the processed splits every later stage loads."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from wardrobe.errors import DataError
from wardrobe.fsio import atomic_dir, atomic_file, md5_file
from wardrobe.params import NUM_CLASSES, PreprocessParams

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SIDE = 28
PAD = 2  # zeros on each side: 28 -> 32, so three stride-2 convolutions reach 4x4
PROCESSED_SIDE = IMAGE_SIDE + 2 * PAD
PROCESSED_SHAPE = (PROCESSED_SIDE, PROCESSED_SIDE, 1)  # one image, as the models take it
SPLITS = ("train", "test")
SPLIT_FILES = {  # split -> (images file, labels file), as the fetch stage writes them
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------------------------------------
# IDX: a big-endian header (2 zero bytes, a type code, the number of dimensions, each dimension
# as uint32) followed by the values. Fashion-MNIST uses unsigned bytes (type 0x08) only.

IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike[str], *, ndim: int) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes with `ndim` dimensions."""
    path = Path(path)
    fix = "re-run `dvc repro fetch` to restore the canonical file"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror}); {fix}") from None
    header_size = 4 + 4 * ndim
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number); {fix}")
    dtype_code, file_ndim = raw[2], raw[3]
    if dtype_code != IDX_UBYTE or file_ndim != ndim:
        raise DataError(
            f"{path}: IDX magic 0x{int.from_bytes(raw[:4], 'big'):08x} says type "
            f"0x{dtype_code:02x} with {file_ndim} dimensions, "
            f"expected unsigned bytes (0x08) with {ndim}; {fix}"
        )
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated inside the IDX header; {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    actual = len(raw) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {problem}: header says shape {shape} ({expected:,} values), "
            f"file holds {actual:,}; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def load_raw_split(raw_dir: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one split, with dimensions checked."""
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx(Path(raw_dir) / images_name, ndim=3)
    labels = read_idx(Path(raw_dir) / labels_name, ndim=1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{Path(raw_dir) / images_name}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {IMAGE_SIDE}x{IMAGE_SIDE}; not Fashion-MNIST: re-run `dvc repro fetch`"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{raw_dir}: {split} split has {len(images):,} images but {len(labels):,} labels; "
            "re-run `dvc repro fetch`"
        )
    return images, labels


# ---------------------------------------------------------------------------------------------
# Preprocessing (the lecture): float32 in [0, 1], zero padding to 32x32, a channel axis.


def preprocess_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 32, 32, 1) float32 in [0, 1] with a 2-pixel zero border."""
    scaled = images.astype(np.float32) / np.float32(255.0)
    padded = np.pad(scaled, ((0, 0), (PAD, PAD), (PAD, PAD)), constant_values=0.0)
    return padded[..., np.newaxis]


def balanced_subset(labels: np.ndarray, limit: int | None, num_classes: int) -> np.ndarray:
    """Indices of the first `limit / num_classes` images of every class, in file order."""
    if limit is None:
        return np.arange(len(labels))
    per_class = limit // num_classes
    chosen = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise DataError(
                f"class {cls} has {len(members):,} images, fewer than the {per_class:,} that a "
                f"class-balanced subset of {limit:,} needs; lower preprocess.limit_*"
            )
        chosen.append(members[:per_class])
    return np.sort(np.concatenate(chosen))


def save_split(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray) -> None:
    """Write a processed split as an uncompressed .npz with `images` and `labels`, atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, images=images, labels=labels)


def load_split(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, C) and labels (N,) of a processed split."""
    path = Path(path)
    fix = "run `dvc repro preprocess`"
    try:
        with np.load(path) as npz:
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {fix}") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable ({exc}); {fix}") from None
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{path}: images {images.shape} and labels {labels.shape} are not (N, H, W, C) "
            f"and (N,); {fix}"
        )
    return images, labels


def data_digest(data_dir: str | os.PathLike[str]) -> str:
    """DVC's hash of a directory (`<md5>.dir`, what dvc.lock records for data/processed),
    computed from its files: the MD5 of the sorted listing of each file's MD5 and path. The
    one identity of the processed data: validate records it, the trainings and evaluate
    check it, and MLflow's datasets carry it, so `dvc checkout` finds the data a run saw."""
    root = Path(data_dir)
    listing = sorted(
        ({"md5": md5_file(path), "relpath": path.relative_to(root).as_posix()}
         for path in root.rglob("*") if path.is_file()),
        key=lambda entry: entry["relpath"],
    )  # fmt: skip
    if not listing:
        raise FileNotFoundError(errno.ENOENT, "no processed data", str(root))
    as_dvc_writes_it = json.dumps(listing, sort_keys=True).encode()
    return hashlib.md5(as_dvc_writes_it, usedforsecurity=False).hexdigest() + ".dir"


def load_splits(data_dir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (images, labels)} of a processed directory."""
    return {split: load_split(Path(data_dir) / f"{split}.npz") for split in SPLITS}


def preprocess(
    params: PreprocessParams, raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> dict[str, int]:
    """The preprocess stage: every split of raw_dir, preprocessed (and limited to a
    class-balanced subset when params say so), written to out_dir/<split>.npz in one step.
    Returns the number of images per split."""
    limits = {"train": params.limit_train, "test": params.limit_test}
    counts = {}
    with atomic_dir(out_dir) as staging:
        for split in SPLITS:
            images, labels = load_raw_split(raw_dir, split)
            keep = balanced_subset(labels, limits[split], NUM_CLASSES)
            processed = preprocess_images(images[keep])
            save_split(staging / f"{split}.npz", processed, labels[keep])
            log.info("%s: %s %s", split, processed.shape, processed.dtype)
            counts[split] = len(keep)
    return counts
