"""IDX parsing and preprocessing, on synthetic files and on the real data."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import idx_bytes, write_raw_dir
from wardrobe.dataset import (
    SPLIT_FILES,
    balanced_subset,
    load_raw_split,
    load_split,
    preprocess_images,
    read_idx,
    save_split,
)
from wardrobe.errors import DataError
from wardrobe.fetch import CANONICAL_FILES, fetch_raw


def test_split_files_are_the_canonical_files():
    assert sorted(name for pair in SPLIT_FILES.values() for name in pair) == sorted(
        CANONICAL_FILES
    )


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(path, ndim=3), array)


def test_truncated_idx_names_the_file_and_the_sizes(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100])
    with pytest.raises(DataError, match=r"x-idx3-ubyte: truncated: .*7,840 values.*7,740"):
        read_idx(path, ndim=3)


def test_truncated_inside_header(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8))[:9])
    with pytest.raises(DataError, match="truncated inside the IDX header"):
        read_idx(path, ndim=3)


def test_trailing_bytes_are_rejected(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(10, np.uint8)) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path, ndim=1)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"\x1f\x8b\x08\x03", "bad magic number"),  # still gzip-compressed
        (b"\x00\x00\x0d\x03", r"type 0x0d with 3 dimensions"),  # float32 IDX
        (b"\x00\x00\x08\x01", r"type 0x08 with 1 dimensions"),  # a labels file
    ],
)
def test_wrong_magic_is_rejected(tmp_path, header, problem):
    path = tmp_path / "x"
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(DataError, match=problem):
        read_idx(path, ndim=3)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found; re-run `dvc repro fetch`"):
        read_idx(tmp_path / "nope", ndim=1)


def test_wrong_image_dimensions_are_rejected(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 1})
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((10, 27, 28), np.uint8)))
    with pytest.raises(DataError, match="images are 27x28, expected 28x28"):
        load_raw_split(raw, "train")


def test_image_and_label_counts_must_agree(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 2})
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(DataError, match="20 images but 19 labels"):
        load_raw_split(raw, "train")


def test_preprocess_values_and_shape():
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 0, 0], images[1, 27, 27], images[2, 10, 5] = 255, 128, 1
    out = preprocess_images(images)
    assert out.shape == (3, 32, 32, 1) and out.dtype == np.float32
    assert out[0, 2, 2, 0] == 1.0  # (0, 0) moves by the 2-pixel pad
    assert out[1, 29, 29, 0] == pytest.approx(128 / 255)
    assert out[2, 12, 7, 0] == pytest.approx(1 / 255)
    np.testing.assert_array_equal(out[:, 2:30, 2:30, 0] * 255, images.astype(np.float32))
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not out[:, border].any()


def test_balanced_subset_keeps_file_order_and_even_classes():
    labels = np.array([3, 3, 1, 0, 1, 2, 0, 3, 2, 1, 0, 2], np.uint8)
    keep = balanced_subset(labels, 8, num_classes=4)
    assert list(keep) == sorted(keep)
    np.testing.assert_array_equal(np.bincount(labels[keep], minlength=4), [2, 2, 2, 2])
    np.testing.assert_array_equal(balanced_subset(labels, None, 4), np.arange(12))


def test_balanced_subset_larger_than_a_class():
    with pytest.raises(DataError, match=r"class 0 has 1 images, fewer than the 2"):
        balanced_subset(np.array([0, 1, 1, 1]), 4, num_classes=2)


def test_save_and_load_split(tmp_path):
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    labels = np.array([1, 2, 3, 4], np.uint8)
    save_split(tmp_path / "s.npz", images, labels)
    got_images, got_labels = load_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.uint8


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match="not found; run `dvc repro preprocess`"):
        load_split(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="unreadable"):
        load_split(tmp_path / "bad.npz")


def test_real_data_facts(tmp_path, real_mirror):
    raw = tmp_path / "raw"
    fetch_raw(raw, mirror=str(real_mirror), urls=[])
    images, labels = load_raw_split(raw, "train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert list(labels[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert images.mean() / 255 == pytest.approx(0.28604, abs=5e-6)
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    test_images, test_labels = load_raw_split(raw, "test")
    assert test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(test_labels), [1000] * 10)


def test_truncated_or_mismatched_processed_split(tmp_path):
    images = np.zeros((4, 32, 32, 1), np.float32)
    save_split(tmp_path / "s.npz", images, np.arange(4, dtype=np.uint8))
    payload = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match=r"cut\.npz: unreadable"):
        load_split(tmp_path / "cut.npz")
    save_split(tmp_path / "odd.npz", images, np.arange(3, dtype=np.uint8))
    with pytest.raises(DataError, match=r"odd.npz: images \(4, 32, 32, 1\) and labels \(3,\)"):
        load_split(tmp_path / "odd.npz")
