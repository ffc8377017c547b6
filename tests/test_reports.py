"""Stages evaluate and plots, and the README results section, on tiny trained models."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_project, run_script, train, write_params
from wardrobe.data import CLASS_NAMES
from wardrobe.evaluation import class_key, flatten_metrics

PER_MODEL = [
    "test.bce", "test.mse", "test.frechet_distance_reconstructions",
    "test.latent.mean.z0", "test.latent.mean.z1", "test.latent.std.z0", "test.latent.std.z1",
    "test.latent.kl_from_standard_normal",
    "test.generation.frechet_distance", "test.generation.mean_confidence",
    "test.generation.class_entropy_bits", "test.generation.top_class_share",
    *[f"test.generation.class_shares.{class_key(n)}" for n in CLASS_NAMES],
]  # fmt: skip
METRIC_KEYS = {
    *(f"ae.{k}" for k in PER_MODEL),
    *(f"vae.{k}" for k in PER_MODEL),
    "vae.test.kl", "vae.test.bce_sampled", "vae.test.loss",
    "classifier.test.accuracy", "classifier.test.mean_confidence",
    "classifier.test.frechet_distance_train",
}  # fmt: skip
PLOTS = {"dpi": 30, "scatter_points": 100, "samples": 6, "grid_size": 5, "reconstructions": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The tiny project with the AE, the VAE and the classifier trained for 2 epochs, and
    small evaluate and plots params."""
    project = make_tiny_project(tmp_path_factory.mktemp("reports"))
    write_params(
        project, project / "params.yaml",
        evaluate={"generated": 300, "batch_size": 64}, plots=PLOTS,
    )  # fmt: skip
    for model in ("ae", "vae", "classifier"):
        result = train(project, model)
        assert result.returncode == 0, result.stderr
    return project


def evaluate(project: Path, out: str = "reports/metrics.json", env: dict | None = None):
    args = ("--models", "models", "--data", "data", "--out", out)
    return run_script(project, "evaluate", *args, env=env)


def plots(project: Path, env: dict | None = None):
    args = ("--models", "models", "--data", "data", "--out", "reports/figures")
    return run_script(project, "plots", *args, env=env)


def client_for(project: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def run_id(project: Path, model: str) -> str:
    return json.loads((project / "models" / model / "run.json").read_text())["run_id"]


@pytest.fixture(scope="module")
def evaluated(trained) -> dict:
    result = evaluate(trained)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("evaluate: AE test BCE")
    return json.loads((trained / "reports" / "metrics.json").read_text())


def test_evaluate_writes_every_metric_finite_and_logs_them_into_the_runs(trained, evaluated):
    flat = flatten_metrics(evaluated)
    assert set(flat) == METRIC_KEYS
    assert all(np.isfinite(v) for v in flat.values()), flat
    for model in ("ae", "vae"):
        shares = evaluated[model]["test"]["generation"]["class_shares"]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert evaluated[model]["test"]["generation"]["top_class_share"] == max(shares.values())

    client = client_for(trained)
    for model in ("ae", "vae", "classifier"):
        run = client.get_run(run_id(trained, model))
        assert run.info.status == "FINISHED"
        logged = {k: v for k, v in run.data.metrics.items() if k.startswith("test.")}
        expected = flatten_metrics(evaluated[model])
        assert logged == pytest.approx(expected, rel=1e-9), model


def test_reconstruction_metrics_agree_with_keras(trained, evaluated):
    import keras

    import wardrobe.models  # noqa: F401

    images = np.load(trained / "data" / "test.npz")["images"]
    labels = np.load(trained / "data" / "test.npz")["labels"]
    classifier = keras.models.load_model(trained / "models" / "classifier" / "classifier.keras")
    predicted = classifier.predict(images, verbose=0).argmax(axis=1)
    assert evaluated["classifier"]["test"]["accuracy"] == pytest.approx(
        float(np.mean(predicted == labels))
    )
    autoencoder = keras.models.load_model(trained / "models" / "ae" / "autoencoder.keras")
    keras_bce = autoencoder.evaluate(images, images, batch_size=50, verbose=0)
    assert evaluated["ae"]["test"]["bce"] == pytest.approx(keras_bce, rel=1e-5)

    vae = keras.models.load_model(trained / "models" / "vae" / "vae.keras")
    z_mean, z_log_var, _ = vae.encoder.predict(images, verbose=0)
    decoded = vae.decoder.predict(z_mean, verbose=0)
    bce = float(np.mean(keras.losses.binary_crossentropy(images, decoded)))
    assert evaluated["vae"]["test"]["bce"] == pytest.approx(bce, rel=1e-5)
    test = evaluated["vae"]["test"]
    assert test["loss"] == pytest.approx(vae.beta * test["bce_sampled"] + test["kl"])
    # The objective with z sampled by the evaluation's own seed, against Keras' own sampling.
    keras_total = vae.evaluate(images, batch_size=100, verbose=0, return_dict=True)["total_loss"]
    assert evaluated["vae"]["test"]["loss"] == pytest.approx(keras_total, rel=0.02)
    assert evaluated["vae"]["test"]["kl"] == pytest.approx(
        float(np.mean(-0.5 * np.sum(1 + z_log_var - z_mean**2 - np.exp(z_log_var), axis=1))),
        rel=1e-4,
    )


def test_evaluate_is_deterministic(trained, evaluated):
    result = evaluate(trained, out="reports/again.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((trained / "reports" / "again.json").read_text()) == evaluated


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_plots_writes_every_figure_at_its_size_and_logs_them(trained):
    import matplotlib.image

    from wardrobe.plots import FIGURE_SIZES, figure_names

    result = plots(trained)
    assert result.returncode == 0, result.stderr
    client = client_for(trained)
    for model in ("ae", "vae"):
        out = trained / "reports" / "figures" / model
        names = figure_names(model)
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names)
        for name in names:
            width, height = (round(inches * PLOTS["dpi"]) for inches in FIGURE_SIZES[name])
            assert png_size(out / f"{name}.png") == (width, height), name
            pixels = matplotlib.image.imread(out / f"{name}.png")  # decodes the whole file
            assert pixels.shape[:2] == (height, width) and pixels.std() > 0.05, name
        artifacts = {a.path for a in client.list_artifacts(run_id(trained, model), "figures")}
        assert artifacts == {f"figures/{n}.png" for n in names}
    assert "latent_pvalues" in figure_names("vae") and "latent_pvalues" not in figure_names("ae")


def test_a_store_without_the_runs_still_gets_metrics_and_a_warning(trained, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = evaluate(trained, out="reports/elsewhere.json", env={"MLFLOW_TRACKING_URI": other})
    assert result.returncode == 0, result.stderr
    assert f"is not in {other}; its results are written to files only" in result.stderr
    assert (trained / "reports" / "elsewhere.json").is_file()


def test_an_unreachable_tracking_server_fails_evaluate_before_the_work(trained, closed_port_url):
    result = evaluate(
        trained, out="reports/never.json", env={"MLFLOW_TRACKING_URI": closed_port_url}
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("evaluate: error:")]
    assert len(errors) == 1 and f"MLflow tracking server {closed_port_url}" in errors[0]
    assert "evaluate: ae on" not in result.stderr  # nothing was computed
    assert not (trained / "reports" / "never.json").exists()


def test_a_damaged_model_fails_with_one_line_and_keeps_the_old_metrics(trained, tmp_path):
    copy = Path(shutil.copytree(trained, tmp_path / "copy"))
    (copy / "reports" / "metrics.json").write_text('{"old": 1}\n')
    (copy / "models" / "classifier" / "classifier.keras").write_bytes(b"not a keras file")
    result = evaluate(copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("evaluate: error:")]
    assert len(errors) == 1, result.stderr
    assert "classifier.keras: cannot be loaded" in errors[0]
    assert "dvc repro -f train_classifier" in errors[0]
    assert "Traceback" not in result.stderr
    assert (copy / "reports" / "metrics.json").read_text() == '{"old": 1}\n'


def test_readme_results_section_is_generated(trained, evaluated, tmp_path):
    from wardrobe import report

    if not (trained / "reports" / "figures" / "vae" / "generated.png").exists():
        assert plots(trained).returncode == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{report.BEGIN}\nold text\n{report.END}\n\n## After\n")
    report.main([
        "--metrics", str(trained / "reports" / "metrics.json"),
        "--figures", str(trained / "reports" / "figures"),
        "--docs", str(tmp_path / "docs" / "figures"), "--readme", str(readme),
    ])  # fmt: skip
    text = readme.read_text()
    assert "old text" not in text and text.endswith(f"{report.END}\n\n## After\n")
    assert (
        f"| reconstruction BCE (test, mean per pixel) | {evaluated['ae']['test']['bce']:.4f} |"
        in (text)
    )
    assert f"{evaluated['vae']['test']['kl']:.2f}" in text
    for model, name, _ in report.KEY_FIGURES:
        assert f"](docs/figures/{model}_{name}.png)" in text
        assert (tmp_path / "docs" / "figures" / f"{model}_{name}.png").is_file()
    # Idempotent: a second run gives the same file.
    report.main([
        "--metrics", str(trained / "reports" / "metrics.json"),
        "--figures", str(trained / "reports" / "figures"),
        "--docs", str(tmp_path / "docs" / "figures"), "--readme", str(readme),
    ])  # fmt: skip
    assert readme.read_text() == text


def test_readme_without_markers_is_refused(tmp_path):
    from wardrobe import report

    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")
    with pytest.raises(report.ReportError, match="needs one <!-- results:begin --> line"):
        report.main(["--metrics", str(metrics), "--readme", str(readme)])
    assert readme.read_text() == "# no markers\n"
