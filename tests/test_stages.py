"""The stage scripts as DVC runs them: outputs, one-line errors, exit codes, nothing partial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, write_params, write_raw_dir
from wardrobe.data import load_split


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, stage: str, *needles: str):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if f"{stage}: error:" in line]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_preprocess_writes_limited_balanced_splits(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", {"train": 6, "test": 3})
    params = write_params(tmp_path, preprocess={"limit_train": 40, "limit_test": None})
    result = run_script("preprocess.py", "--params", str(params), "--raw", str(raw),
                        "--out", "processed", cwd=tmp_path)  # fmt: skip
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
    result = run_script("preprocess.py", "--params", str(params), "--raw", "nowhere",
                        "--out", "processed", cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "preprocess", "nowhere/train-images-idx3-ubyte: not found",
                          "dvc repro fetch")  # fmt: skip
    assert os.listdir(tmp_path / "processed") == ["train.npz"]
    assert (tmp_path / "processed" / "train.npz").read_bytes() == b"previous output"


def test_bad_params_fail_cleanly(tmp_path):
    params = write_params(tmp_path, preprocess={"limit_train": 15})
    result = run_script("preprocess.py", "--params", str(params), "--raw", "raw",
                        "--out", "processed", cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "preprocess", "preprocess.limit_train", "multiple of 10")
    assert not (tmp_path / "processed").exists()


def test_fetch_with_no_good_source_fails_cleanly(tmp_path, closed_port_url):
    mirror = tmp_path / "empty_mirror"
    mirror.mkdir()
    params = write_params(tmp_path, data={"mirror": str(mirror), "urls": [closed_port_url],
                                          "retries": 0, "timeout_s": 2})  # fmt: skip
    result = run_script("fetch.py", "--params", str(params), "--out", "raw", cwd=tmp_path)
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
    assert run_script("preprocess.py", *common, "--out", "processed", cwd=tmp_path).returncode == 0
    args = [*common, "--processed", "processed", "--out", "checks"]
    ok = run_script("validate.py", *args, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "checks" / "summary.json").read_text())["success"] is True

    images, labels = load_split(tmp_path / "processed" / "test.npz")
    images[4, 16, 16, 0] = np.nan
    np.savez(tmp_path / "processed" / "test.npz", images=images, labels=labels)
    bad = run_script("validate.py", *args, cwd=tmp_path)
    assert_one_line_error(bad, "validate", "1 expectation(s) failed",
                          "processed/test images: expect_column_values_to_be_in_set(n_nan)",
                          "e.g. 4", "data_docs/index.html")  # fmt: skip
    summary = json.loads((tmp_path / "checks" / "summary.json").read_text())
    assert summary["success"] is False and summary["failed"] == 1
    assert (tmp_path / "checks" / "data_docs" / "index.html").is_file()


def test_bad_log_level_is_a_one_line_error(tmp_path):
    params = write_params(tmp_path)
    env_script = ["--params", str(params), "--raw", "raw", "--out", "processed"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "preprocess.py"), *env_script],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "WARDROBE_LOG_LEVEL": "LOUD"},
    )  # fmt: skip
    assert_one_line_error(result, "preprocess", "WARDROBE_LOG_LEVEL='LOUD'")


def test_training_refuses_a_malformed_checks_summary(tmp_path):
    from wardrobe.checks import require_passed
    from wardrobe.errors import ChecksFailed

    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(ChecksFailed, match="not a data-check summary"):
        require_passed(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text('{"success": false}')
    with pytest.raises(ChecksFailed, match=r"the data checks failed \(no details\)"):
        require_passed(tmp_path / "summary.json")
