"""The Great Expectations suites catch every kind of bad data they are meant to catch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REMOTE_ASSET
from wardrobe.checks.suites import ImageExpectations, run_checks
from wardrobe.checks.tables import summarize_images

N = 50  # 5 per class


def processed_spec(**overrides) -> ImageExpectations:
    spec = dict(
        name="processed/train", image_shape=(32, 32, 1), dtype="float32",
        pixel_range=(0.0, 1.0), border=2, count=N, num_classes=10, class_count_tolerance=0.0,
    )  # fmt: skip
    spec.update(overrides)
    return ImageExpectations(**spec)


def good_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = np.zeros((N, 32, 32, 1), np.float32)
    images[:, 2:30, 2:30, 0] = rng.random((N, 28, 28), dtype=np.float32)
    labels = np.tile(np.arange(10, dtype=np.uint8), N // 10)
    return images, labels


def check(tmp_path, images, labels, spec=None):
    out = tmp_path / "data_checks"
    summary = run_checks([(spec or processed_spec(), images, labels)], out, examples=3)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert (out / "data_docs" / "index.html").is_file()
    return summary


def failed(summary) -> set[tuple[str, str | None]]:
    return {
        (e["expectation"], e["kwargs"].get("column"))
        for e in summary["expectations"]
        if not e["success"]
    }


def test_good_data_passes(tmp_path):
    summary = check(tmp_path, *good_batch())
    assert summary["success"] is True
    assert summary["failed"] == 0 and summary["evaluated"] == 11
    assert summary["tables"] == {"processed/train": {"count": N, "expected_count": N}}


def test_wrong_shape(tmp_path):
    images, labels = good_batch()
    summary = check(tmp_path, images[:, 2:30, 2:30, :], labels)  # unpadded 28x28
    assert ("expect_column_values_to_be_in_set", "shape") in failed(summary)


def test_wrong_dtype(tmp_path):
    images, labels = good_batch()
    summary = check(tmp_path, images.astype(np.float64), labels)
    assert failed(summary) == {("expect_column_values_to_be_in_set", "dtype")}


def test_value_out_of_range_names_the_images(tmp_path):
    images, labels = good_batch()
    images[7, 10, 10, 0] = 1.5
    images[9, 12, 12, 0] = -0.25
    summary = check(tmp_path, images, labels)
    assert failed(summary) == {
        ("expect_column_values_to_be_between", "pixel_max"),
        ("expect_column_values_to_be_between", "pixel_min"),
    }
    by_column = {e["kwargs"]["column"]: e for e in summary["expectations"] if not e["success"]}
    assert by_column["pixel_max"]["unexpected_examples"] == [7]
    assert by_column["pixel_min"]["unexpected_examples"] == [9]
    assert summary["success"] is False
    assert any("pixel_max) failed for 1 of 50 rows, e.g. 7" in f for f in summary["failures"])


def test_nan_and_inf(tmp_path):
    images, labels = good_batch()
    images[3, 15, 15, 0] = np.nan
    images[4, 16, 16, 0] = np.inf
    summary = check(tmp_path, images, labels)
    assert failed(summary) == {
        ("expect_column_values_to_be_in_set", "n_nan"),
        ("expect_column_values_to_be_in_set", "n_inf"),
    }


def test_label_out_of_range(tmp_path):
    images, labels = good_batch()
    labels[11] = 10
    summary = check(tmp_path, images, labels)
    assert ("expect_column_values_to_be_in_set", "label") in failed(summary)
    entry = next(e for e in summary["expectations"]
                 if e["kwargs"].get("column") == "label" and not e["success"]
                 and e["expectation"] == "expect_column_values_to_be_in_set")  # fmt: skip
    assert entry["unexpected_examples"] == [11]


def test_missing_class(tmp_path):
    images, labels = good_batch()
    labels[labels == 6] = 0
    summary = check(tmp_path, images, labels)
    assert failed(summary) == {
        ("expect_column_distinct_values_to_equal_set", "label"),
        ("expect_column_values_to_be_between", "count"),
    }


def test_uneven_classes_within_and_beyond_tolerance(tmp_path):
    images, labels = good_batch()
    labels[0] = 1  # class 0: 4 images, class 1: 6, others 5
    assert failed(check(tmp_path, images, labels)) == {
        ("expect_column_values_to_be_between", "count")
    }
    relaxed = processed_spec(class_count_tolerance=0.2)
    assert check(tmp_path, images, labels, relaxed)["success"] is True


def test_non_zero_border(tmp_path):
    images, labels = good_batch()
    images[20, 0, 5, 0] = 0.01
    images[21, 31, 31, 0] = 0.5
    summary = check(tmp_path, images, labels)
    assert failed(summary) == {("expect_column_values_to_be_in_set", "border_abs_max")}
    entry = next(e for e in summary["expectations"] if not e["success"])
    assert entry["unexpected_examples"] == [20, 21]


def test_wrong_count(tmp_path):
    images, labels = good_batch()
    summary = check(tmp_path, images[:40], labels[:40])
    assert ("expect_table_row_count_to_equal", None) in failed(summary)
    entry = next(e for e in summary["expectations"]
                 if e["expectation"] == "expect_table_row_count_to_equal")  # fmt: skip
    assert entry["observed_value"] == 40


def test_raw_uint8_spec_and_several_batches(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    labels = np.tile(np.arange(10, dtype=np.uint8), N // 10)
    raw_spec = processed_spec(
        name="raw/train", image_shape=(28, 28), dtype="uint8", pixel_range=(0, 255), border=0
    )
    summary = run_checks(
        [(raw_spec, raw, labels), (processed_spec(), *good_batch())], tmp_path / "out"
    )
    assert summary["success"] is True
    assert {e["table"] for e in summary["expectations"]} == {
        "raw/train images", "raw/train classes", "processed/train images",
        "processed/train classes",
    }  # fmt: skip
    tight = processed_spec(name="raw/train", image_shape=(28, 28), dtype="uint8",
                           pixel_range=(0, 250), border=0)  # fmt: skip
    assert not run_checks([(tight, raw, labels)], tmp_path / "out")["success"]


def test_summary_table_skips_non_finite_in_extremes():
    images, labels = good_batch()
    images[0, 10, 10, 0] = np.nan
    table = summarize_images(images, labels, border=2)
    assert np.isfinite(table.loc[0, "pixel_max"]) and table.loc[0, "n_nan"] == 1
    assert table.index.name == "image" and len(table) == N


def test_failed_run_replaces_previous_report_whole(tmp_path):
    images, labels = good_batch()
    check(tmp_path, images, labels)
    images[0, 0, 0, 0] = 1.0
    summary = check(tmp_path, images, labels)
    assert summary["success"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_checks"]


@pytest.mark.parametrize("examples", [0, 2])
def test_examples_limit(tmp_path, examples):
    images, labels = good_batch()
    images[:5, 0, 0, 0] = 1.0
    summary = run_checks([(processed_spec(), images, labels)], tmp_path / "o", examples=examples)
    entry = next(e for e in summary["expectations"] if not e["success"])
    assert entry["unexpected_count"] == 5
    assert len(entry["unexpected_examples"]) == examples


def test_data_docs_load_pinned_local_copies(tmp_path):
    check(tmp_path, *good_batch())
    site = tmp_path / "data_checks" / "data_docs"
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3  # the index, a suite, a validation
    for page in pages:
        assert not REMOTE_ASSET.search(page.read_text()), page
    index = (site / "index.html").read_text()
    for rel in ("jquery/dist/jquery.min.js", "vega/build/vega.min.js"):
        assert f'src="static/vendor/{rel}"' in index
        assert (site / "static" / "vendor" / rel).is_file()
    assert (site / "static/vendor/@fortawesome/fontawesome-free/webfonts").is_dir()
    assert "integrity=" not in index and "dataContextId" not in index


def test_data_docs_without_the_assets_keep_cdn_links_and_say_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WARDROBE_WEB_ASSETS", str(tmp_path / "nowhere"))
    summary = check(tmp_path, *good_batch())
    assert summary["success"] is True
    assert "the pinned web assets are not installed; run `make setup`" in caplog.text
    index = (tmp_path / "data_checks" / "data_docs" / "index.html").read_text()
    assert "https://code.jquery.com/jquery-3.7.1.min.js" in index
