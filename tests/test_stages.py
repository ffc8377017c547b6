"""The stage scripts as DVC runs them: outputs, one-line errors, exit codes, nothing partial."""

from __future__ import annotations

import json
import os

import numpy as np

from conftest import assert_one_line_error, run_script, write_params, write_raw_dir
from wardrobe.dataset import load_split


def test_preprocess_writes_limited_balanced_splits(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 6, "test": 3})
    params = write_params(tmp_path, preprocess={"limit_train": 40, "limit_test": None})
    result = run_script(tmp_path, "preprocess", "--params", str(params), "--raw", str(raw),
                        "--out", "processed")  # fmt: skip
    assert result.returncode == 0, result.stderr
    images, labels = load_split(tmp_path / "processed" / "train.npz")
    assert images.shape == (40, 32, 32, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(labels), [4] * 10)
    test_images, _ = load_split(tmp_path / "processed" / "test.npz")
    assert test_images.shape == (30, 32, 32, 1)


def test_preprocess_on_missing_raw_data_fails_cleanly(tmp_path):
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "train.npz").write_bytes(b"previous output")
    params = write_params(tmp_path)
    result = run_script(tmp_path, "preprocess", "--params", str(params), "--raw", "nowhere",
                        "--out", "processed")  # fmt: skip
    assert_one_line_error(result, "preprocess", "nowhere/train-images-idx3-ubyte: not found",
                          "dvc repro fetch")  # fmt: skip
    assert os.listdir(tmp_path / "processed") == ["train.npz"]
    assert (tmp_path / "processed" / "train.npz").read_bytes() == b"previous output"


def test_bad_params_fail_cleanly(tmp_path):
    params = write_params(tmp_path, preprocess={"limit_train": 15})
    result = run_script(tmp_path, "preprocess", "--params", str(params), "--raw", "raw",
                        "--out", "processed")  # fmt: skip
    assert_one_line_error(result, "preprocess", "preprocess.limit_train", "multiple of 10")
    assert not (tmp_path / "processed").exists()


def test_fetch_with_no_good_source_fails_cleanly(tmp_path, closed_port_url):
    mirror = tmp_path / "empty_mirror"
    mirror.mkdir()
    params = write_params(tmp_path, data={"mirror": str(mirror), "urls": [closed_port_url],
                                          "retries": 0, "timeout_s": 2})  # fmt: skip
    result = run_script(tmp_path, "fetch", "--params", str(params), "--out", "raw")
    assert_one_line_error(result, "fetch", "train-images-idx3-ubyte.gz", "file not found",
                          closed_port_url)  # fmt: skip
    assert not (tmp_path / "raw").exists()


def test_validate_passes_and_fails_with_a_named_expectation(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 3, "test": 2})
    params = write_params(
        tmp_path, preprocess={"limit_train": None, "limit_test": None},
        checks={"raw_train_count": 30, "raw_test_count": 20},
    )  # fmt: skip
    common = ["--params", str(params), "--raw", str(raw)]
    assert run_script(tmp_path, "preprocess", *common, "--out", "processed").returncode == 0
    args = [*common, "--processed", "processed", "--out", "checks"]
    ok = run_script(tmp_path, "validate", *args)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "checks" / "summary.json").read_text())["success"] is True

    images, labels = load_split(tmp_path / "processed" / "test.npz")
    images[4, 16, 16, 0] = np.nan
    np.savez(tmp_path / "processed" / "test.npz", images=images, labels=labels)
    bad = run_script(tmp_path, "validate", *args)
    assert_one_line_error(bad, "validate", "1 expectation(s) failed",
                          "processed/test images: expect_column_values_to_be_in_set(n_nan)",
                          "e.g. 4", "data_docs/index.html")  # fmt: skip
    summary = json.loads((tmp_path / "checks" / "summary.json").read_text())
    assert summary["success"] is False and summary["failed"] == 1
    assert (tmp_path / "checks" / "data_docs" / "index.html").is_file()


def test_bad_log_level_is_a_one_line_error(tmp_path):
    params = write_params(tmp_path)
    result = run_script(
        tmp_path, "preprocess", "--params", str(params), "--raw", "raw", "--out", "processed",
        env={"WARDROBE_LOG_LEVEL": "LOUD"},
    )  # fmt: skip
    assert_one_line_error(result, "preprocess", "WARDROBE_LOG_LEVEL='LOUD'")


def test_validate_prints_no_third_party_info_lines(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 1, "test": 1})
    params = write_params(tmp_path, checks={"raw_train_count": 10, "raw_test_count": 10})
    common = ["--params", str(params), "--raw", str(raw)]
    assert run_script(tmp_path, "preprocess", *common, "--out", "processed").returncode == 0
    result = run_script(tmp_path, "validate", *common, "--processed", "processed", "--out", "c")
    assert result.returncode == 0, result.stderr
    assert "great_expectations" not in result.stderr and "config_provider" not in result.stderr
    assert result.stdout.startswith("validate: 42 expectations passed; report: c/summary.json")


def test_a_missing_argument_is_argparse_usage(tmp_path):
    result = run_script(tmp_path, "train_vae", "--data", "data")
    assert result.returncode == 2
    assert "the following arguments are required: --checks, --out" in result.stderr
