"""params.yaml: the real file loads; each bad value is one line naming its key and the rule."""

from __future__ import annotations

import math

import pytest
import yaml

from conftest import ROOT
from wardrobe.errors import ParamsError
from wardrobe.params import Params, load


def test_project_params_load():
    params = load(ROOT / "params.yaml")
    assert params.data.mirror == "/usr/share/datasets/fashion-mnist"
    assert len(params.data.urls) == 2 and all(u.startswith("http") for u in params.data.urls)
    assert params.preprocess.limit_train is None and params.preprocess.limit_test is None
    assert params.checks.raw_train_count == 60000
    assert params.checks.processed_pixel_range == (0.0, 1.0)
    ae = params.ae
    assert (ae.latent_dim, ae.filters, ae.loss, ae.epochs, ae.batch_size) == (
        2, (32, 64, 128), "bce", 5, 100,
    )  # fmt: skip
    vae = params.vae
    assert (vae.beta, vae.learning_rate, vae.epochs, vae.batch_size) == (500.0, 0.0005, 5, 100)
    assert isinstance(vae.beta, float)  # 500 in YAML, a float to the model
    assert ae.deterministic and vae.deterministic
    assert params.seed == 42


def test_params_are_frozen():
    params = load(ROOT / "params.yaml")
    with pytest.raises(ValueError, match="frozen"):
        params.vae.beta = 1.0


def test_every_key_is_commented_in_params_yaml():
    """The meaning of each key is written once, in params.yaml: every key has a comment on its
    line or on a line of its own just above it."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    for section, model in Params.model_fields.items():
        keys = [section] if section == "seed" else list(model.annotation.model_fields)
        for key in keys:
            indent = "" if section == "seed" else "  "
            [i] = [n for n, line in enumerate(lines) if line.startswith(f"{indent}{key}:")
                   and (not indent or _section_of(lines, n) == section)]  # fmt: skip
            assert "#" in lines[i] or lines[i - 1].lstrip().startswith("#"), f"{section}.{key}"


def _section_of(lines: list[str], n: int) -> str:
    return next(line.split(":")[0] for line in reversed(lines[:n]) if line[:1].isalpha())


def write(tmp_path, mutate):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["preprocess"].update(limit_train=55),
         r"preprocess.limit_train must be null or a multiple of 10, got 55"),
        (lambda r: r["preprocess"].update(limit_test="all"),
         r"preprocess.limit_test must be an integer, got 'all'"),
        (lambda r: r["preprocess"].update(limit_test=0),
         r"preprocess.limit_test must be at least 10, got 0"),
        (lambda r: r["data"].update(timeout_s=0), r"data.timeout_s must be at least 0.1, got 0"),
        (lambda r: r["data"].update(urls="http://x/"), r"data.urls must be a list"),
        (lambda r: r["data"].update(retries=True), r"data.retries must be an integer, got True"),
        (lambda r: r["data"].update(mirorr="/x"),
         r"data.mirorr is not a known key \(known: mirror, retries, timeout_s, urls\)"),
        (lambda r: r["vae"].update(betta=3), r"vae.betta is not a known key \(known: .*beta"),
        (lambda r: r.update(plot={"dpi": 1}), r"^\S+: plot is not a known key"),
        (lambda r: r["data"].pop("mirror"), r"data.mirror is missing$"),
        (lambda r: r.pop("data"), r": data is missing$"),
        (lambda r: r.update(vae="x"), r"vae must be a mapping of keys to values, got 'x'"),
        (lambda r: r["checks"].update(processed_pixel_range=[1, 0]),
         r"checks.processed_pixel_range must be \[low, high\] with low <= high, got \[1, 0\]"),
        (lambda r: r["checks"].update(examples=-1), r"checks.examples must be at least 0"),
        (lambda r: r["ae"].update(loss="l1"), r"ae.loss must be one of 'bce' or 'mse', got 'l1'"),
        (lambda r: r["ae"].update(filters=[8] * 6),
         r"ae.filters must be a list of at most 5 items"),
        (lambda r: r["ae"].update(filters=[8, -1]), r"ae.filters\[1\] must be greater than 0"),
        (lambda r: r["ae"].update(deterministic="yes"), r"ae.deterministic must be true or false"),
        (lambda r: r["ae"].update(epochs=5.0), r"ae.epochs must be an integer, got 5.0"),
        (lambda r: r["ae"].update(epochs=1_000_000), r"ae.epochs must be at most 1000"),
        (lambda r: r["vae"].update(beta=0), r"vae.beta must be greater than 0, got 0"),
        (lambda r: r["vae"].update(beta=math.inf), r"vae.beta must be a finite number, got inf"),
        (lambda r: r["vae"].update(beta=math.nan), r"vae.beta must be a finite number, got nan"),
        (lambda r: r["vae"].update(learning_rate=-1e-3),
         r"vae.learning_rate must be greater than 0"),
        (lambda r: r["vae"].update(batch_size=0), r"vae.batch_size must be at least 1"),
        (lambda r: r["evaluate"].update(generated=10**12), r"evaluate.generated must be at most"),
        (lambda r: r["evaluate"].update(generated=5), r"evaluate.generated must be at least 6"),
        (lambda r: r["plots"].update(dpi=100_000), r"plots.dpi must be at most 600"),
        (lambda r: (r["preprocess"].update(limit_test=510), r["vae"].update(latent_dim=512)),
         r"vae.latent_dim must be less than the test images \(510, preprocess.limit_test\): "
         r"evaluate fits a Gaussian to their embeddings, got 512$"),
        (lambda r: r["ae"].update(latent_dim=512) or r["checks"].update(raw_test_count=500),
         r"ae.latent_dim must be less than the test images \(500, "),
        (lambda r: r.update(seed=-3), r"seed must be at least 0, got -3"),
    ],
)  # fmt: skip
def test_bad_values_name_key_and_rule(tmp_path, mutate, message):
    path = write(tmp_path, mutate)
    with pytest.raises(ParamsError, match=message) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ParamsError, match="not found; run from the project root or pass"):
        load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML at line"):
        load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ParamsError, match="must be a mapping of sections"):
        load(tmp_path / "list.yaml")
    with pytest.raises(ParamsError, match="unreadable"):
        load(tmp_path)  # a directory


def test_values_dvc_writes_for_set_params_load_as_numbers(tmp_path):
    """`dvc exp run -S vae.learning_rate=1e-4` writes `learning_rate: 1e-4` (YAML 1.2, DVC's
    writer), which YAML 1.1 reads as a string: params.yaml is read as YAML 1.2."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, ["vae.learning_rate=1e-4", "ae.learning_rate=5E-3"])
    assert "learning_rate: 1e-4" in path.read_text() or "learning_rate: 0.0001" in path.read_text()
    params = load(path)
    assert (params.vae.learning_rate, params.ae.learning_rate) == (1e-4, 5e-3)
