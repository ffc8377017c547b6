"""End to end: `dvc repro` in a temporary git repository holding the project, on real data."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import EVALUATION_STAGES, client_for, dvc, project_repo, ran_stages, write_params
from wardrobe.dataset import load_split
from wardrobe.fetch import CANONICAL_FILES
from wardrobe.fsio import sha256_file

pytestmark = pytest.mark.slow


def edit_params(repo: Path, section: str, **values) -> None:
    write_params(repo, repo / "params.yaml", **{section: values})


def edit_seed(repo: Path, seed: int) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({**raw, "seed": seed}, sort_keys=False))


def test_repro_validate_on_real_data(tmp_path, real_mirror):
    repo = project_repo(tmp_path / "project")
    first = dvc(repo, "repro", "validate")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran_stages(first.stdout) == ["fetch", "preprocess", "validate"]

    for name, expected in CANONICAL_FILES.items():
        assert sha256_file(repo / "data" / "raw" / name) == expected.sha256
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_split(repo / "data" / "processed" / f"{split}.npz")
        assert images.shape == (n, 32, 32, 1) and images.dtype == np.float32
        assert labels.dtype == np.uint8
        assert images.min() == 0.0 and images.max() == 1.0
        assert not images[:, :2].any() and not images[:, -2:].any()
        assert not images[:, :, :2].any() and not images[:, :, -2:].any()
        np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)
    summary = json.loads((repo / "reports" / "data_checks" / "summary.json").read_text())
    assert summary["success"] is True and summary["failed"] == 0
    assert (repo / "reports" / "data_checks" / "data_docs" / "index.html").is_file()

    again = dvc(repo, "repro", "validate")
    assert again.returncode == 0, again.stderr
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout

    edit_params(repo, "checks", examples=3)  # only validate reads checks.*
    edited = dvc(repo, "repro", "validate")
    assert edited.returncode == 0, edited.stderr
    assert ran_stages(edited.stdout) == ["validate"]


def test_corrupt_mirror_stops_the_pipeline_at_fetch(tmp_path, real_mirror, closed_port_url):
    repo = project_repo(tmp_path / "project")
    good = dvc(repo, "repro", "fetch")
    assert good.returncode == 0, good.stderr
    raw_before = {p.name: sha256_file(p) for p in (repo / "data" / "raw").iterdir()}

    corrupt = tmp_path / "corrupt_mirror"
    shutil.copytree(real_mirror, corrupt)
    target = corrupt / "train-images-idx3-ubyte.gz"
    payload = bytearray(target.read_bytes())
    payload[len(payload) // 2] ^= 0x01  # one flipped byte in the compressed stream
    target.write_bytes(bytes(payload))
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(bytes(payload))
    edit_params(repo, "data", mirror=str(corrupt), urls=[closed_port_url], retries=0)

    failed = dvc(repo, "repro")
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert ran_stages(failed.stdout) == ["fetch"]
    errors = [line for line in output.splitlines() if line.startswith("fetch: error:")]
    assert len(errors) == 1 and str(target) in errors[0], output
    assert "Traceback" not in output
    assert not (repo / "data" / "processed").exists()
    assert not (repo / "reports" / "data_checks").exists()
    # The good copy from the first run is intact.
    assert {p.name: sha256_file(p) for p in (repo / "data" / "raw").iterdir()} == raw_before


def append_comment(path: Path) -> None:
    with path.open("a") as source:
        source.write("# an edit that changes no behaviour\n")


def out_of_date(repo: Path) -> set[str]:
    status = dvc(repo, "status", "--json")
    assert status.returncode == 0, status.stderr
    return set(json.loads(status.stdout))


def test_quick_pipeline_runs_every_stage_and_reruns_only_what_changed(retrained_copy):
    """On a copy of the quick run CI's retrain made (`dvc repro` of every stage: test_ci
    checks the stages it ran): its outputs, then what each edit re-runs."""
    repo = retrained_copy
    for model, files in (("ae", "autoencoder"), ("vae", "vae"), ("classifier", "classifier")):
        assert (repo / "models" / model / f"{files}.keras").is_file()
        assert (repo / "models" / model / "run.json").is_file()

    shown = dvc(repo, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)[""]["data"]["reports/metrics.json"]["data"]
    for key in (
        "ae.test.bce",
        "ae.test.mse",
        "vae.test.bce",
        "vae.test.mse",
        "vae.test.kl",
        "vae.test.loss",
        "ae.test.generation.frechet_distance",
        "vae.test.latent.kl_from_standard_normal",
        "classifier.test.accuracy",
    ):
        value = metrics
        for part in key.split("."):
            value = value[part]
        assert np.isfinite(value), key  # fmt: skip
    # The headline table: per-class detail lives in its own file, not in `dvc metrics show`.
    assert "class_shares" not in json.dumps(metrics)
    shares = json.loads((repo / "reports" / "class_shares.json").read_text())
    assert sum(shares["vae"].values()) == pytest.approx(1.0)

    noop = dvc(repo, "repro")
    assert noop.returncode == 0, noop.stderr
    assert ran_stages(noop.stdout) == [] and "Data and pipelines are up to date" in noop.stdout

    unedited = (repo / "params.yaml").read_text()
    edit_params(repo, "plots", dpi=60)  # only the figures change (nothing reads them)
    assert out_of_date(repo) == {"plots@ae", "plots@vae"}
    (repo / "params.yaml").write_text(unedited)

    # Code edits re-run exactly the stages whose scripts import the edited module.
    append_comment(repo / "src" / "wardrobe" / "fetch.py")
    assert out_of_date(repo) == {"fetch"}
    refetched = dvc(repo, "repro")
    assert refetched.returncode == 0, refetched.stderr
    assert ran_stages(refetched.stdout) == ["fetch"]  # the same data: nothing after it

    # The VAE's module is every stage's that loads a saved model (trained.py registers its
    # classes for loading), so the reference, the AE's evaluation and the page's data re-run.
    append_comment(repo / "src" / "wardrobe" / "models" / "vae.py")
    assert out_of_date(repo) == {"train_vae", *EVALUATION_STAGES, "explore"} - {"collect"}
    subprocess.run(["git", "checkout", "--", "src/wardrobe/models/vae.py"], cwd=repo, check=True)
    # A params edit re-runs its stage and what reads its outputs: the VAE's, not the AE's.
    edit_params(repo, "vae", beta=1000)
    second = dvc(repo, "repro")
    assert second.returncode == 0, second.stderr
    assert ran_stages(second.stdout) == ["train_vae", "evaluate@vae", "collect", "plots@vae",
                                         "explore"]  # fmt: skip

    client = client_for(repo)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time ASC"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_name: dict[str, list] = {}
    for run in runs:
        by_name.setdefault(run.info.run_name, []).append(run)
    # the VAE trained and evaluated twice, the others once
    assert {name: len(found) for name, found in by_name.items()} == {
        "ae": 1, "vae": 2, "classifier": 1, "ae/eval": 1, "vae/eval": 2, "classifier/eval": 1,
    }  # fmt: skip
    parents = {r.data.tags["mlflow.parentRunId"] for r in by_name["ae/eval"]}
    assert parents == {by_name["ae"][0].info.run_id}
    latest, evaluation = by_name["vae"][-1], by_name["vae/eval"][-1]
    assert evaluation.data.tags["mlflow.parentRunId"] == latest.info.run_id
    assert latest.data.params["vae.beta"] == "1000.0"
    assert not [k for k in latest.data.metrics if k.startswith("test.")]  # training only
    assert evaluation.data.metrics["test.kl"] == pytest.approx(
        json.loads((repo / "reports" / "metrics.json").read_text())["vae"]["test"]["kl"]
    )
    figures = {a.path for a in client.list_artifacts(evaluation.info.run_id, "figures")}
    assert "figures/latent_pvalues.png" in figures and len(figures) == 6

    # Each params section and each stage script re-runs exactly the stages that read it:
    # what `dvc status` says is out of date after one edit (the stages after those follow
    # through their outputs, as the real re-runs above show).
    params_text, script = (repo / "params.yaml").read_text(), repo / "pipeline" / "train_ae.py"
    for edit, stages in (
        (lambda: edit_params(repo, "ae", epochs=2), {"train_ae"}),
        (lambda: edit_params(repo, "classifier", epochs=2), {"train_classifier"}),
        (lambda: edit_params(repo, "preprocess", limit_test=300), {"preprocess", "validate"}),
        (lambda: edit_seed(repo, 7),
         {"train_ae", "train_vae", "train_classifier", *EVALUATION_STAGES} - {"collect"}),
        (lambda: append_comment(script), {"train_ae"}),
    ):  # fmt: skip
        edit()
        assert out_of_date(repo) == stages
        (repo / "params.yaml").write_text(params_text)
        subprocess.run(["git", "checkout", "--", "pipeline"], cwd=repo, check=True)
    assert out_of_date(repo) == set()

    plots = dvc(repo, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    rendered = json.loads(plots.stdout)["data"]
    for name in (
        "ae_loss",
        "vae_losses",
        "vae_kl",
        "classifier_accuracy",
        "reports/figures/ae/latent_by_class.png",
        "reports/figures/vae/latent_pvalues.png",
    ):
        assert rendered.get(name), name  # fmt: skip

    # Bad data stops `dvc repro` at validate, before any training: a preprocess that forgets
    # to scale (pixels up to 255) or to pad (28x28 images) is caught by the checks.
    runs_before = len(client.search_runs([experiment]))
    models_before = {p: p.read_bytes() for p in (repo / "models").rglob("*") if p.is_file()}
    dataset = repo / "src" / "wardrobe" / "dataset.py"
    good = dataset.read_text()
    for broken, expectation in (
        (good.replace("/ np.float32(255.0)", "* np.float32(1.0)"),
         "processed/train images: expect_column_values_to_be_between(pixel_max)"),
        (good.replace("((0, 0), (PAD, PAD), (PAD, PAD))", "((0, 0), (0, 0), (0, 0))"),
         "processed/train images: expect_column_values_to_be_in_set(shape)"),
    ):  # fmt: skip
        assert broken != good
        dataset.write_text(broken)
        failed = dvc(repo, "repro")
        assert failed.returncode != 0
        stages = ran_stages(failed.stdout)
        assert stages[-2:] == ["preprocess", "validate"], stages  # and nothing after it
        errors = [line for line in (failed.stdout + failed.stderr).splitlines()
                  if line.startswith("validate: error:")]  # fmt: skip
        assert len(errors) == 1 and expectation in errors[0], failed.stdout + failed.stderr
    assert len(client.search_runs([experiment])) == runs_before  # no training started
    assert {p: p.read_bytes() for p in (repo / "models").rglob("*") if p.is_file()} == (
        models_before
    )
