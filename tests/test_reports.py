"""Stages reference, evaluate, collect and plots, and the README results section, on tiny
trained models. The library's functions run in this process; the stage scripts run as DVC
runs them where the exit status and the one-line error are what is tested."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    ROOT,
    assert_one_line_error,
    client_for,
    enter_tiny_project,
    memory_cgroup,
    run_script,
    stage_env,
    train,
    write_params,
)
from wardrobe.dataset import CLASS_NAMES
from wardrobe.evaluation import EvaluationError, require_finite
from wardrobe.metrics import class_key
from wardrobe.params import load
from wardrobe.tracking.runs import flatten

QUALITY = ["precision", "recall", "density", "coverage", "kid", "kid_std"]
PER_MODEL = [
    "test.bce", "test.mse", "test.frechet_distance_reconstructions",
    "test.latent.mean.z0", "test.latent.mean.z1", "test.latent.std.z0", "test.latent.std.z1",
    "test.latent.kl_from_standard_normal",
    "test.generation.frechet_distance", "test.generation.mean_confidence",
    "test.generation.class_entropy_bits", "test.generation.top_class_share",
    "test.generation.latent_far_share",
    "test.bce_floor", "test.bce_mean_image", "test.bce_gain",
    *(f"test.{group}.{m}" for group in ("generation", "reconstructions") for m in QUALITY),
]  # fmt: skip
METRIC_KEYS = {
    *(f"ae.{k}" for k in PER_MODEL),
    *(f"vae.{k}" for k in PER_MODEL),
    "vae.test.kl", "vae.test.bce_sampled", "vae.test.loss",
    "classifier.test.accuracy", "classifier.test.mean_confidence",
    "classifier.test.frechet_distance_train",
    *(f"classifier.test.train_reference.{m}" for m in QUALITY),
}  # fmt: skip
SHARES = [f"test.generation.class_shares.{class_key(n)}" for n in CLASS_NAMES]
PLOTS = {"dpi": 30, "scatter_points": 100, "samples": 6, "grid_size": 5, "reconstructions": 4}
EVALUATE_ARGS = ("--models", "models", "--data", "data")
MODELS = ("ae", "vae")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny project, as the working directory, with the AE, the VAE and the classifier
    trained for 2 epochs, and small evaluate and plots params."""
    project = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as monkeypatch:
        enter_tiny_project(project, monkeypatch)
        write_params(
            project, project / "params.yaml",
            evaluate={"generated": 300, "batch_size": 64}, plots=PLOTS,
        )  # fmt: skip
        for model in ("ae", "vae", "classifier"):
            train(project, model)
        yield project


def evaluate(project: Path, name: str = "metrics", order: tuple[str, ...] = MODELS) -> dict:
    """The reference, evaluate (each model of `order`, in turn) and collect stages' library
    functions, in this process, into reports/<name>/; returns what collect wrote to
    metrics.json, with the class shares under "class_shares"."""
    from wardrobe.collect import collect
    from wardrobe.evaluation import evaluate, reference

    params = load(project / "params.yaml")
    out = project / "reports" / name
    returned = {
        "classifier": reference(
            params.evaluate, params.seed, "models/classifier", "data", out / "reference",
            out / "classifier.json",
        )
    }  # fmt: skip
    for model in order:
        returned[model] = evaluate(
            params.evaluate, params.seed, model, "models", "data", out / "reference",
            out / f"{model}.json",
        )  # fmt: skip
    collected = collect(out, out / "metrics.json", out / "class_shares.json", out / "runs.json")
    assert collected == returned == json.loads((out / "metrics.json").read_text())
    assert list(collected) == ["classifier", *MODELS]  # the order of the metrics file
    return {**collected, "class_shares": json.loads((out / "class_shares.json").read_text())}


def evaluation_runs(project: Path, name: str = "metrics") -> dict:
    """What collect wrote to reports/<name>/runs.json: {model: {"run_id", "run_name"}}."""
    return json.loads((project / "reports" / name / "runs.json").read_text())


def run_id(project: Path, model: str) -> str:
    return json.loads((project / "models" / model / "run.json").read_text())["run_id"]


@pytest.fixture(scope="module")
def evaluated(trained) -> dict:
    return evaluate(trained)


def test_evaluate_writes_every_metric_finite(evaluated):
    shares = evaluated["class_shares"]
    flat = flatten({k: v for k, v in evaluated.items() if k != "class_shares"})
    assert set(flat) == METRIC_KEYS
    assert all(np.isfinite(v) for v in flat.values()), flat
    assert set(shares) == {"ae", "vae"}
    for model in ("ae", "vae"):
        assert set(shares[model]) == {class_key(n) for n in CLASS_NAMES}
        assert sum(shares[model].values()) == pytest.approx(1.0)
        assert evaluated[model]["test"]["generation"]["top_class_share"] == max(
            shares[model].values()
        )


def test_each_evaluation_is_a_child_run_linked_to_its_model_and_dataset(trained, evaluated):
    """Per model, a FINISHED run `<model>/eval` under the training run: the evaluate params
    and seed, the test set as its `evaluation` input, the model as its model input, and the
    metrics linked to both (the logged model's page lists them). The training run gets no
    test metrics."""
    shares = evaluated["class_shares"]
    client = client_for(trained)
    runs = evaluation_runs(trained)
    params = load(trained / "params.yaml")
    for model in ("ae", "vae", "classifier"):
        trained_run = client.get_run(run_id(trained, model))
        assert not [k for k in trained_run.data.metrics if k.startswith("test.")], model
        run = client.get_run(runs[model]["run_id"])
        assert run.info.status == "FINISHED" and run.info.run_name == f"{model}/eval"
        assert runs[model]["run_name"] == f"{model}/eval"
        assert run.data.tags["mlflow.parentRunId"] == trained_run.info.run_id
        assert run.data.params["evaluate.generated"] == str(params.evaluate.generated)
        assert run.data.params["seed"] == str(params.seed)
        expected = flatten(evaluated[model])
        if model != "classifier":  # the runs keep the class shares too
            expected.update(
                (key, shares[model][key.rsplit(".", 1)[1]]) for key in SHARES
            )  # fmt: skip
        assert run.data.metrics == pytest.approx(expected, rel=1e-9), model
        [dataset] = run.inputs.dataset_inputs
        assert dataset.dataset.name == "fashion-mnist-test"
        assert {t.key: t.value for t in dataset.tags} == {"mlflow.data.context": "evaluation"}
        record = json.loads((trained / "models" / model / "run.json").read_text())
        model_id = record["models"][0]["model_uri"].removeprefix("models:/")
        assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
        linked = {m.key: m for m in client.get_logged_model(model_id).metrics}
        assert linked[f"test.{KEY[model]}"].dataset_name == "fashion-mnist-test"
        assert linked[f"test.{KEY[model]}"].dataset_digest == dataset.dataset.digest
        assert linked[f"test.{KEY[model]}"].run_id == run.info.run_id


KEY = {"ae": "bce", "vae": "kl", "classifier": "accuracy"}


def test_the_new_metrics_are_in_range_and_anchor_the_bce(evaluated):
    reference = evaluated["classifier"]["test"]["train_reference"]
    for model in ("ae", "vae"):
        test = evaluated[model]["test"]
        for scores in (test["generation"], test["reconstructions"], reference):
            for key in ("precision", "recall", "coverage"):
                assert 0.0 <= scores[key] <= 1.0, (model, key)
            # 0 is right for a model whose images are all alike (a 2-epoch AE on 200 images
            # collapses on some CPUs): every subset then gives the same estimate
            assert scores["density"] >= 0.0 and scores["kid_std"] >= 0.0
        assert reference["kid_std"] > 0.0  # real images: the subsets differ
        # a perfect reconstruction beats the model and the mean image (which the tiny
        # project's 2-epoch models do not beat: bce_gain may be negative here)
        assert test["bce_floor"] < min(test["bce"], test["bce_mean_image"]), model
        gap = test["bce_mean_image"] - test["bce_floor"]
        assert test["bce_gain"] == pytest.approx((test["bce_mean_image"] - test["bce"]) / gap)
        assert 0.0 <= test["generation"]["latent_far_share"] <= 1.0


def test_reconstruction_metrics_agree_with_keras(trained, evaluated):
    import keras

    import wardrobe.models.vae  # noqa: F401

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
    # The objective with z sampled by the evaluation's own seed, against Keras' own sampling.
    keras_total = vae.evaluate(images, batch_size=100, verbose=0, return_dict=True)["total_loss"]
    assert evaluated["vae"]["test"]["loss"] == pytest.approx(keras_total, rel=0.02)
    assert evaluated["vae"]["test"]["kl"] == pytest.approx(
        float(np.mean(-0.5 * np.sum(1 + z_log_var - z_mean**2 - np.exp(z_log_var), axis=1))),
        rel=1e-4,
    )


def test_evaluate_is_deterministic_and_each_model_independent_of_the_others(trained, evaluated):
    """The same metrics again, with the VAE evaluated before the AE: a model's values (KID's
    subsets included) do not depend on which models were evaluated before it."""
    assert evaluate(trained, name="again", order=("vae", "ae")) == evaluated


def test_the_stage_scripts_print_their_summaries_quietly(trained):
    reference = run_script(
        trained, "reference", "--classifier", "models/classifier", "--data", "data",
        "--out", "reports/script/reference", "--report", "reports/script/classifier.json",
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    assert reference.stdout.startswith("reference: classifier accuracy ")
    result = run_script(
        trained, "evaluate", "--model", "vae", *EVALUATE_ARGS,
        "--reference", "reports/script/reference", "--out", "reports/script/vae.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("evaluate: vae test BCE ") and ", KL " in result.stdout
    for stderr in (reference.stderr, result.stderr):
        assert "retracing" not in stderr, stderr
    written = json.loads((trained / "reports" / "script" / "vae.json").read_text())
    assert written["metrics"]["test"]["bce"] > 0 and written["run"]["run_name"] == "vae/eval"
    shutil.copy(trained / "reports" / "metrics" / "ae.json", trained / "reports" / "script")
    collected = run_script(
        trained, "collect", "--evaluations", "reports/script", "--metrics",
        "reports/script/metrics.json", "--class-shares", "reports/script/shares.json",
        "--runs", "reports/script/runs.json",
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.startswith("collect: AE test BCE ")
    metrics = json.loads((trained / "reports" / "script" / "metrics.json").read_text())
    assert metrics["vae"] == written["metrics"]


def test_collect_names_the_stage_of_a_missing_or_foreign_evaluation(trained, tmp_path):
    from wardrobe.collect import collect
    from wardrobe.errors import DataError

    for name in ("classifier", "ae", "vae"):
        shutil.copy(trained / "reports" / "metrics" / f"{name}.json", tmp_path)
    (tmp_path / "vae.json").unlink()
    outputs = [tmp_path / f for f in ("m.json", "s.json", "r.json")]
    with pytest.raises(DataError, match=r"vae\.json: not found; run `dvc repro evaluate@vae`$"):
        collect(tmp_path, *outputs)
    (tmp_path / "vae.json").write_text('{"metrics": {"test": {}}, "run": null}')  # no shares
    with pytest.raises(DataError, match=r"vae\.json: not what evaluate@vae writes; run `dvc"):
        collect(tmp_path, *outputs)
    assert not any(output.exists() for output in outputs)


def test_a_reference_from_other_data_is_refused(trained, evaluated):
    from wardrobe.errors import DataError
    from wardrobe.evaluation import REFERENCE_FILE, Reference

    path = trained / "reports" / "metrics" / "reference" / REFERENCE_FILE
    found = Reference.load(path, _digest(trained))
    assert found.features.shape[0] == len(np.load(trained / "data" / "test.npz")["labels"])
    with pytest.raises(DataError, match=r"computed from other processed data .* run `dvc repro "
                       r"reference`$"):  # fmt: skip
        Reference.load(path, "0" * 32 + ".dir")


def _digest(project: Path) -> str:
    from wardrobe.dataset import data_digest

    return data_digest(project / "data")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_plots_writes_every_figure_at_its_size_and_logs_them(trained):
    import matplotlib.image

    from wardrobe.figures import FIGURE_SIZES, figure_names
    from wardrobe.plots import plot

    result = run_script(
        trained, "plots", "--model", "vae", *EVALUATE_ARGS, "--out", "reports/figures/vae",
        "--evaluation", "reports/metrics/vae.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plots: 6 figures of vae written to reports/figures/vae"
    assert "retracing" not in result.stderr, result.stderr
    params = load(trained / "params.yaml")
    drawn = plot(params.plots, params.seed, "ae", "models", "data", "reports/figures/ae",
                 "reports/metrics/ae.json")  # fmt: skip
    assert len(drawn) == 5
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
        evaluation = evaluation_runs(trained)[model]["run_id"]
        artifacts = {a.path for a in client.list_artifacts(evaluation, "figures")}
        assert artifacts == {f"figures/{n}.png" for n in names}
        assert client.list_artifacts(run_id(trained, model), "figures") == []
    assert "latent_pvalues" in figure_names("vae") and "latent_pvalues" not in figure_names("ae")


VAE_ARGS = ("--model", "vae", *EVALUATE_ARGS, "--reference", "reports/metrics/reference")


def test_an_evaluation_batch_larger_than_the_free_memory_is_one_line_and_its_size_runs(
    trained, evaluated, tmp_path
):
    """evaluate with one predict batch of 8,000 generated images in a 2 GiB memory cgroup:
    one line naming evaluate.batch_size and about how many fit, exit 1, nothing written; then
    again in the same limit at the size that line named: it evaluates."""
    import re

    project = tmp_path / "project"  # a copy: its evaluation runs stay out of the module's
    shutil.copytree(trained, project, symlinks=True)

    def evaluate_in(limit: int, batch_size: int) -> subprocess.CompletedProcess:
        write_params(
            project,
            project / "params.yaml",
            evaluate={"generated": 8000, "batch_size": batch_size},
        )
        with memory_cgroup(limit) as procs:
            return subprocess.run(
                [sys.executable, str(ROOT / "pipeline" / "evaluate.py"), *VAE_ARGS,
                 "--out", "reports/memory/vae.json"],
                cwd=project, capture_output=True, text=True, timeout=900, env=stage_env(),
                preexec_fn=lambda: procs.write_text(str(os.getpid())),
            )  # fmt: skip

    refused = evaluate_in(2 * 2**30, 8000)
    line = assert_one_line_error(
        refused, "evaluate", "out of memory: one batch of 8000 images (evaluate.batch_size)",
        "to predict", "lower evaluate.batch_size (about", "fits here)",
    )  # fmt: skip
    assert not (project / "reports" / "memory").exists()
    fits = int(re.search(r"\(about (\d+) fits here\)", line).group(1))
    assert 100 <= fits < 8000, line
    done = evaluate_in(2 * 2**30, fits)
    assert done.returncode == 0, (fits, done.stderr[-3000:])
    written = json.loads((project / "reports" / "memory" / "vae.json").read_text())
    assert written["metrics"]["test"]["bce"] > 0


def test_a_store_without_the_runs_still_gets_metrics_and_a_warning(trained, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = run_script(
        trained, "evaluate", *VAE_ARGS, "--out", "reports/elsewhere/vae.json",
        env={"MLFLOW_TRACKING_URI": other},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"is not in {other}; its results are written to files only" in result.stderr
    written = json.loads((trained / "reports" / "elsewhere" / "vae.json").read_text())
    assert written["run"] is None and written["metrics"]["test"]["bce"] > 0


def test_an_unreachable_tracking_server_fails_evaluate_before_the_work(trained, closed_port_url):
    result = run_script(
        trained, "evaluate", *VAE_ARGS, "--out", "reports/never/vae.json",
        env={"MLFLOW_TRACKING_URI": closed_port_url, "WARDROBE_LOG_LEVEL": "DEBUG"},
    )  # fmt: skip
    assert_one_line_error(result, "evaluate", f"MLflow tracking server {closed_port_url}")
    assert "wardrobe.evaluation INFO vae on" not in result.stderr  # nothing was computed
    assert not (trained / "reports" / "never").exists()


@pytest.mark.parametrize(
    "stage, args, outputs",
    [
        ("reference", ("--classifier", "models/classifier", "--data", "data",
                       "--out", "reports/r", "--report", "reports/r.json"),
         ("reports/r", "reports/r.json")),
        ("evaluate", (*VAE_ARGS, "--out", "reports/metrics/vae.json"),
         ("reports/metrics/vae.json",)),
        ("plots", ("--model", "vae", *EVALUATE_ARGS, "--out", "reports/figures/vae",
                   "--evaluation", "reports/metrics/vae.json"),
         ("reports/figures/vae",)),
    ],
)  # fmt: skip
def test_a_corrupt_store_fails_before_the_work_and_writes_nothing(
    trained, evaluated, tmp_path, stage, args, outputs
):
    copy = Path(shutil.copytree(trained, tmp_path / "copy"))
    for output in outputs:
        shutil.rmtree(copy / output, ignore_errors=True)
        (copy / output).unlink(missing_ok=True)
    with open(copy / "mlflow.db", "r+b") as db:
        db.write(b"not an SQLite header")
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    result = run_script(
        copy, stage, *args, env={"MLFLOW_TRACKING_URI": uri, "WARDROBE_LOG_LEVEL": "DEBUG"}
    )
    assert_one_line_error(result, stage, f"tracking store {uri} is corrupt", "move it aside")
    assert " INFO vae" not in result.stderr  # nothing was computed
    assert not any((copy / output).exists() for output in outputs)


def test_a_damaged_model_fails_with_one_line_and_keeps_the_old_evaluation(trained, tmp_path):
    copy = Path(shutil.copytree(trained, tmp_path / "copy"))
    (copy / "reports" / "old.json").write_text('{"old": 1}\n')
    (copy / "models" / "classifier" / "classifier.keras").write_bytes(b"not a keras file")
    result = run_script(copy, "evaluate", *VAE_ARGS, "--out", "reports/old.json")
    assert_one_line_error(
        result, "evaluate", "classifier.keras: cannot be loaded", "dvc repro -f train_classifier"
    )
    assert (copy / "reports" / "old.json").read_text() == '{"old": 1}\n'


def test_non_finite_metrics_are_refused_by_name():
    require_finite({"ae": {"test": {"bce": 0.25}}})
    with pytest.raises(EvaluationError, match=r"^ae\.test\.latent\.kl, vae\.test\.bce not finite"):
        require_finite(
            {"ae": {"test": {"latent": {"kl": math.inf}}}, "vae": {"test": {"bce": math.nan}}}
        )


def test_readme_results_section_is_generated(trained, evaluated, tmp_path):
    from wardrobe import report

    if not (trained / "reports" / "figures" / "vae" / "generated.png").exists():
        from wardrobe.plots import plot

        params = load(trained / "params.yaml")
        for model in MODELS:
            plot(params.plots, params.seed, model, "models", "data", f"reports/figures/{model}",
                 f"reports/metrics/{model}.json")  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{report.BEGIN}\nold text\n{report.END}\n\n## After\n")
    args = [
        "--metrics", str(trained / "reports" / "metrics" / "metrics.json"),
        "--class-shares", str(trained / "reports" / "metrics" / "class_shares.json"),
        "--figures", str(trained / "reports" / "figures"),
        "--docs", str(tmp_path / "docs" / "figures"), "--readme", str(readme),
        "--noise", str(tmp_path / "absent.json"),
    ]  # fmt: skip
    report.main(args)
    text = readme.read_text()
    assert "old text" not in text and text.endswith(f"{report.END}\n\n## After\n")
    bce = evaluated["ae"]["test"]["bce"]
    assert f"| reconstruction BCE (test, mean per pixel) | lower | {bce:.4f} |" in text
    assert " ± " not in text.split("| metric |")[1].split("\n\n")[0] and "seeds)" not in text
    assert f"{evaluated['vae']['test']['kl']:.2f}" in text
    top = max(evaluated["class_shares"]["vae"].values())
    assert "| most common generated class | " in text and f"{top:.1%} (" in text
    # the claims, each answered by its numbers
    generation = evaluated["ae"]["test"]["generation"]
    assert "- **The AE's uniform samples land in gaps (claim 2).** " in text
    assert f"{generation['latent_far_share']:.0%} of the points drawn uniformly" in text
    assert f"{1 - generation['precision']:.1%} are unlike every test image" in text
    coverage = evaluated["vae"]["test"]["generation"]["coverage"]
    assert f"The VAE's samples reach {coverage:.0%} of the test images' neighbourhoods" in text
    assert "| generated images: coverage (test images' balls reached) | " in text
    for model, name, _ in report.KEY_FIGURES:
        assert f"](docs/figures/{model}_{name}.png)" in text
        assert (tmp_path / "docs" / "figures" / f"{model}_{name}.png").is_file()
    report.main(args)  # idempotent: a second run gives the same file
    assert readme.read_text() == text


def test_readme_results_carry_the_spread_over_seeds(trained, evaluated, tmp_path):
    """With a noise file, each value carries its standard deviation over the seeds, the table
    says which differences are noise, and each comparison in how many seeds it holds."""
    from wardrobe import noise, report

    metrics = {k: v for k, v in evaluated.items() if k != "class_shares"}
    flat = noise.numbers(metrics)
    runs = [noise.Run("HEAD", "c0ffee0", 42, {}, {noise.FILES[0]: flat})]
    for seed, scale in ((1, 1.1), (2, 0.8)):  # other seeds: the VAE's FD moves, the AE's not
        moved = dict(flat)
        moved["vae.test.generation.frechet_distance"] *= scale
        runs.append(noise.Run(f"noise-seed-{seed}", "c0ffee0", seed, {}, {noise.FILES[0]: moved}))
    summary = noise.summarise(runs)
    (tmp_path / "noise.json").write_text(json.dumps(summary))
    table = report.metrics_table(metrics, evaluated["class_shares"], summary)
    fd = summary["files"][noise.FILES[0]]["vae.test.generation.frechet_distance"]
    ae_fd = metrics["ae"]["test"]["generation"]["frechet_distance"]
    vae_fd = metrics["vae"]["test"]["generation"]["frechet_distance"]
    cells = f"{ae_fd:.1f} ± 0.0 | {vae_fd:.1f} ± {fd['sd']:.1f}"
    assert f"| Frechet distance: generated images | lower | {cells} |" in table
    factor = noise.tolerance(1.0, 0.0, 3)
    assert "over 3 runs that differ only in seed (42, 1, 2;" in table
    assert f"by up to {factor:.1f} times it (99%" in table
    # Measured at other params, the spreads are left out, and the table says nothing of them.
    for name, payload in (("metrics.json", metrics), ("shares.json", evaluated["class_shares"])):
        (tmp_path / name).write_text(json.dumps(payload))
    (tmp_path / "params.yaml").write_text("seed: 42\nae: {epochs: 1}\n")
    printed = subprocess.run(
        [sys.executable, "-m", "wardrobe.report", "--metrics", "metrics.json",
         "--class-shares", "shares.json", "--noise", "noise.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=stage_env(),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert " ± " not in printed.stdout and "seeds" not in printed.stdout
    assert "noise.json was measured at other params (ae.epochs)" in printed.stderr
    (tmp_path / "params.yaml").write_text("seed: 7\n")  # the seed alone: the same params
    printed = subprocess.run(
        [sys.executable, "-m", "wardrobe.report", "--metrics", "metrics.json",
         "--class-shares", "shares.json", "--noise", "noise.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=stage_env(),
    )  # fmt: skip
    assert f"| Frechet distance: generated images | lower | {cells} |" in printed.stdout
    # Each comparison is noise.judge's over the noise file's seeds, paired by seed.
    text = report.claims(metrics, evaluated["class_shares"], summary)
    table_of = summary["files"][noise.FILES[0]]
    verdict = noise.judge(
        fd["values"], table_of["ae.test.generation.frechet_distance"]["values"], "lower",
        seeds=([42, 1, 2], [42, 1, 2]),
    )  # fmt: skip
    assert (f"(the AE {ae_fd:.1f}, the VAE {vae_fd:.1f}; the VAE against the AE over 3 "
            f"seeds: {verdict})") in text  # fmt: skip
    assert text.count(" over 3 seeds: ") == 7


def test_readme_without_markers_is_refused_with_one_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    for name in ("metrics.json", "shares.json"):
        (tmp_path / name).write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "wardrobe.report", "--metrics", "metrics.json",
         "--class-shares", "shares.json", "--readme", "README.md"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=stage_env(),
    )  # fmt: skip
    assert_one_line_error(result, "report", "needs one <!-- results:begin --> line")
    assert readme.read_text() == "# no markers\n"


TRAIN_ARGS = ("--data", "data", "--checks", "checks/summary.json")
# Run as `python -c LOADED '[["pipeline/<stage>.py", ARGS...], ...]'`: each stage in turn, as
# DVC runs it (its script as __main__), in one process; after each, the modules loaded so far,
# one line on stdout. A module any stage loaded is there after it.
LOADED = (
    "import json, runpy, sys\n"
    "for script, *args in json.loads(sys.argv[1]):\n"
    "    sys.argv = [script, *args]\n"
    "    runpy.run_path(script, run_name='__main__')\n"
    "    print('loaded after', script, ':', ' '.join(sorted(sys.modules)), flush=True)\n"
)
# (stage, its arguments): plots last, as it alone may load pyplot
LOADING_STAGES = (
    *((f"train_{model}", (*TRAIN_ARGS, "--out", f"models/{model}"))
      for model in ("ae", "vae", "classifier")),
    ("reference", ("--classifier", "models/classifier", "--data", "data",
                   "--out", "reports/r", "--report", "reports/r.json")),
    ("evaluate", ("--model", "ae", *EVALUATE_ARGS, "--reference", "reports/metrics/reference",
                  "--out", "reports/e.json")),
    ("plots", ("--model", "ae", *EVALUATE_ARGS, "--out", "reports/figures/p",
               "--evaluation", "reports/metrics/ae.json")),
)  # fmt: skip


def test_no_stage_loads_scikit_learn_and_only_plots_loads_pyplot(trained, evaluated, tmp_path):
    """Keras loads scikit-learn and matplotlib.pyplot when they are installed, which no
    training or evaluation stage uses (wardrobe._KerasExtras); the plots stage draws with
    pyplot. Every stage, one after another in one process: the modules loaded after each."""
    copy = Path(shutil.copytree(trained, tmp_path / "copy"))
    stages = [[str(ROOT / "pipeline" / f"{stage}.py"), *args] for stage, args in LOADING_STAGES]
    result = subprocess.run(
        [sys.executable, "-c", LOADED, json.dumps(stages)], cwd=copy, capture_output=True,
        text=True, timeout=900, env=stage_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    after = [line for line in result.stdout.splitlines() if line.startswith("loaded after ")]
    assert len(after) == len(LOADING_STAGES), result.stdout[-3000:]
    for (stage, _), line in zip(LOADING_STAGES, after, strict=True):
        assert f"/pipeline/{stage}.py :" in line, (stage, line[:200])
        loaded = set(line.split(" : ", 1)[1].split())
        assert "keras" in loaded  # the stage did its work
        assert not {m for m in loaded if m == "sklearn" or m.startswith("sklearn.")}, stage
        assert ("matplotlib.pyplot" in loaded) == (stage == "plots"), stage


def test_the_readme_s_results_are_what_make_results_writes_from_the_committed_reports(
    tmp_path, monkeypatch
):
    """`make results` on the committed reports (metrics, class shares, noise, the claims
    sweep) writes the README's results section as committed, byte for byte; the key figures,
    DVC outputs outside git, are stood in for by their committed copies. No generated line
    is over 700 characters."""
    from wardrobe import report

    figures = tmp_path / "figures"
    for model, name, _ in report.KEY_FIGURES:
        (figures / model).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "docs" / "figures" / f"{model}_{name}.png",
                        figures / model / f"{name}.png")  # fmt: skip
    readme = tmp_path / "README.md"
    shutil.copyfile(ROOT / "README.md", readme)
    monkeypatch.chdir(ROOT)  # the reports as `make results` names them
    report.main([
        "--figures", str(figures), "--docs", str(tmp_path / "docs" / "figures"),
        "--readme", str(readme),
    ])  # fmt: skip
    assert readme.read_text() == (ROOT / "README.md").read_text()
    section = readme.read_text().split(report.BEGIN)[1].split(report.END)[0]
    assert max(map(len, section.splitlines())) <= 700
    assert "### The claims across β and latent size" in section
