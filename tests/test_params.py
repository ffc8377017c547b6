"""params.yaml: the real file loads; each bad value names its key and the rule."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from wardrobe.errors import ParamsError
from wardrobe.params import (
    AEParams,
    ChecksParams,
    DataParams,
    PreprocessParams,
    VAEParams,
    load_section,
    load_seed,
    read_params,
)


def test_project_params_load():
    path = ROOT / "params.yaml"
    data = load_section(DataParams.from_raw, path)
    assert data.mirror == "/usr/share/datasets/fashion-mnist"
    assert len(data.urls) == 2 and all(u.startswith("http") for u in data.urls)
    pre = load_section(PreprocessParams.from_raw, path)
    assert pre.limit_train is None and pre.limit_test is None
    checks = load_section(ChecksParams.from_raw, path)
    assert checks.raw_train_count == 60000 and checks.processed_pixel_range == (0.0, 1.0)
    ae = load_section(AEParams.from_raw, path)
    assert (ae.latent_dim, ae.filters, ae.loss, ae.epochs, ae.batch_size) == (
        2, (32, 64, 128), "bce", 5, 100,
    )  # fmt: skip
    vae = load_section(VAEParams.from_raw, path)
    assert (vae.beta, vae.learning_rate, vae.epochs, vae.batch_size) == (500.0, 0.0005, 5, 100)
    assert ae.deterministic and vae.deterministic
    assert load_seed(read_params(path), str(path)) == 42


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
        (AEParams, lambda r: r["ae"].update(loss="l1"), r"ae.loss must be one of bce, mse"),
        (AEParams, lambda r: r["ae"].update(filters=[8] * 6),
         r"ae.filters must be a list of 1 to 5 positive integers"),
        (AEParams, lambda r: r["ae"].update(deterministic="yes"),
         r"ae.deterministic must be true or false"),
        (VAEParams, lambda r: r["vae"].update(beta=0), r"vae.beta must be greater than 0"),
        (VAEParams, lambda r: r["vae"].update(learning_rate=-1e-3),
         r"vae.learning_rate must be greater than 0"),
        (VAEParams, lambda r: r["vae"].update(batch_size=0), r"vae.batch_size must be at least 1"),
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


def test_seed_must_be_a_non_negative_integer(tmp_path):
    path = write(tmp_path, lambda r: r.update(seed=-3))
    with pytest.raises(ParamsError, match="seed must be a non-negative integer, got -3"):
        load_seed(read_params(path), str(path))


def test_params_path_that_is_a_directory(tmp_path):
    with pytest.raises(ParamsError, match="unreadable"):
        read_params(tmp_path)
