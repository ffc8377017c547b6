"""params.yaml: the real file loads; each bad value names its key and the rule."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from wardrobe.errors import ParamsError
from wardrobe.params import ChecksParams, DataParams, PreprocessParams, load_section, read_params


def test_project_params_load():
    path = ROOT / "params.yaml"
    data = load_section(DataParams.from_raw, path)
    assert data.mirror == "/usr/share/datasets/fashion-mnist"
    assert len(data.urls) == 2 and all(u.startswith("http") for u in data.urls)
    pre = load_section(PreprocessParams.from_raw, path)
    assert pre.limit_train is None and pre.limit_test is None
    checks = load_section(ChecksParams.from_raw, path)
    assert checks.raw_train_count == 60000 and checks.processed_pixel_range == (0.0, 1.0)


def write(tmp_path, mutate):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "cls, mutate, message",
    [
        (PreprocessParams, lambda r: r["preprocess"].update(limit_train=55),
         r"preprocess.limit_train must be null or a multiple of 10 .* got 55"),
        (PreprocessParams, lambda r: r["preprocess"].update(limit_test="all"),
         r"preprocess.limit_test must be an integer or null, got 'all'"),
        (PreprocessParams, lambda r: r["preprocess"].update(limit_test=0),
         r"preprocess.limit_test must be at least 10, got 0"),
        (DataParams, lambda r: r["data"].update(timeout_s=0),
         r"data.timeout_s must be at least 0.1"),
        (DataParams, lambda r: r["data"].update(urls="http://x/"),
         r"data.urls must be a list of non-empty strings"),
        (DataParams, lambda r: r["data"].update(retries=True),
         r"data.retries must be an integer"),
        (DataParams, lambda r: r["data"].update(mirorr="/x"),
         r"data.mirorr is not a known key \(known: mirror, retries, timeout_s, urls\)"),
        (DataParams, lambda r: r["data"].pop("mirror"), r"data.mirror is missing"),
        (DataParams, lambda r: r.pop("data"), r"section 'data' is missing"),
        (ChecksParams, lambda r: r["checks"].update(processed_pixel_range=[1, 0]),
         r"checks.processed_pixel_range must be a list \[low, high\]"),
        (ChecksParams, lambda r: r["checks"].update(examples=-1),
         r"checks.examples must be at least 0"),
    ],
)  # fmt: skip
def test_bad_values_name_key_and_rule(tmp_path, cls, mutate, message):
    path = write(tmp_path, mutate)
    with pytest.raises(ParamsError, match=message) as err:
        load_section(cls.from_raw, path)
    assert str(err.value).startswith(f"{path}: ")


def test_unreadable_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        read_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML at line"):
        read_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ParamsError, match="must be a mapping of sections"):
        read_params(tmp_path / "list.yaml")
