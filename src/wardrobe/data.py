"""Fashion-MNIST: the canonical files, fetching them from mirrors, IDX parsing, preprocessing."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wardrobe.errors import DataError, FetchError
from wardrobe.fsio import atomic_dir, atomic_file

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SIDE = 28
PAD = 2  # zeros on each side: 28 -> 32, so three stride-2 convolutions reach 4x4
PROCESSED_SIDE = IMAGE_SIDE + 2 * PAD
SPLITS = ("train", "test")


@dataclass(frozen=True)
class CanonicalFile:
    """One of the four files, identified by the SHA-256 of its *decompressed* IDX bytes."""

    name: str  # decompressed file name, as written to data/raw
    sha256: str
    size: int

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"


CANONICAL_FILES: dict[str, CanonicalFile] = {
    f.name: f
    for f in (
        CanonicalFile(
            "train-images-idx3-ubyte",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            47_040_016,
        ),
        CanonicalFile(
            "train-labels-idx1-ubyte",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            60_008,
        ),
        CanonicalFile(
            "t10k-images-idx3-ubyte",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            7_840_016,
        ),
        CanonicalFile(
            "t10k-labels-idx1-ubyte",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            10_008,
        ),
    )
}
SPLIT_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# ---------------------------------------------------------------------------------------------
# Fetch: the first source that delivers bytes with the expected checksum wins.


class _SourceFailed(Exception):
    """One source could not deliver one file: where it looked, and why (the message)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(reason)
        self.location = location


def _decompress(location: str, payload: bytes) -> bytes:
    """gunzip, or pass through content that is already a raw IDX file."""
    if payload[:2] != b"\x1f\x8b":
        return payload
    try:
        return gzip.decompress(payload)
    except (EOFError, OSError, zlib.error) as exc:
        raise _SourceFailed(location, f"not a valid gzip stream ({exc})") from None


def _verify(location: str, content: bytes, expected: CanonicalFile) -> None:
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected.sha256:
        raise _SourceFailed(
            location,
            f"SHA-256 {digest[:12]}… of {len(content):,} decompressed bytes does not match "
            f"the expected {expected.sha256[:12]}… ({expected.size:,} bytes): corrupt, "
            "truncated or not Fashion-MNIST",
        )


def _from_mirror(mirror: Path, expected: CanonicalFile) -> tuple[str, bytes]:
    """(path read, bytes) of the .gz file, or of the decompressed one, in a mirror directory."""
    for candidate in (mirror / expected.gz_name, mirror / expected.name):
        if candidate.is_file():
            try:
                return str(candidate), candidate.read_bytes()
            except OSError as exc:
                raise _SourceFailed(str(candidate), f"unreadable ({exc.strerror})") from None
    raise _SourceFailed(str(mirror / expected.gz_name), "file not found")


def _from_url(base: str, expected: CanonicalFile, timeout_s: float, retries: int):
    """(URL, bytes) of a GET; transient failures (timeouts, 5xx, dropped connections) are
    retried, permanent ones (4xx, a malformed URL) are not."""
    url = base + expected.gz_name
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0**attempt * 0.25, 5.0))
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                payload = response.read()
                length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != len(payload):
                last = f"connection closed after {len(payload):,} of {int(length):,} bytes"
                continue
            return url, payload
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # 404, 403, ...: asking again will not help
                raise _SourceFailed(url, f"HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code} {exc.reason}"
        except ValueError as exc:  # "unknown url type": no scheme, or not http(s)
            raise _SourceFailed(url, f"not a usable URL ({exc})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    raise _SourceFailed(url, f"{last} (after {retries + 1} attempts)")


def fetch_raw(
    dest: str | os.PathLike[str],
    *,
    mirror: str | None,
    urls: Sequence[str],
    timeout_s: float = 30.0,
    retries: int = 2,
    files: Mapping[str, CanonicalFile] = CANONICAL_FILES,
) -> dict[str, str]:
    """Write the verified, decompressed files to `dest`; return {file name: source used}.

    Sources are tried in order: the `mirror` directory, then each base URL. Anything whose
    checksum does not match is rejected. `dest` is replaced only once every file is verified,
    so a failed fetch leaves an existing `dest` untouched.
    """
    # Each source maps a canonical file to (where it was read, its bytes).
    sources: list[Callable[[CanonicalFile], tuple[str, bytes]]] = []
    if mirror:
        sources.append(functools.partial(_from_mirror, Path(mirror)))
    for url in urls:
        base = url if url.endswith("/") else url + "/"
        sources.append(functools.partial(_from_url, base, timeout_s=timeout_s, retries=retries))
    if not sources:
        raise FetchError("no source configured; set data.mirror or data.urls in params.yaml")

    used: dict[str, str] = {}
    with atomic_dir(dest) as tmp:
        for expected in files.values():
            failures = []
            for source in sources:
                try:
                    location, payload = source(expected)
                    content = _decompress(location, payload)
                    _verify(location, content, expected)
                except _SourceFailed as exc:
                    log.warning("%s from %s: %s", expected.name, exc.location, exc)
                    failures.append(f"{exc.location}: {exc}")
                    continue
                (tmp / expected.name).write_bytes(content)
                used[expected.name] = location
                log.info("%s: verified, from %s", expected.name, location)
                break
            else:
                raise FetchError(
                    f"no source gave a valid {expected.gz_name}: {'; '.join(failures)}. "
                    "Fix: install the Debian package dataset-fashion-mnist, or point data.mirror "
                    "at a directory with the four canonical .gz files, or data.urls at a "
                    "reachable mirror"
                )
    return used


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
