"""The training stages: MLflow runs, model files, determinism, failure handling."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_tiny_project, train, write_params
from wardrobe.data import save_split

TF_NOISE = ("WARNING: All log messages", "I0000", "oneDNN", "cpu_feature_guard")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The tiny project (see conftest), with no MLFLOW_TRACKING_URI: the default store."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    return make_tiny_project(tmp_path)


def client_for(project: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


FILES = {
    "ae": {"autoencoder.keras", "encoder.keras", "decoder.keras", "history.csv", "run.json"},
    "vae": {"vae.keras", "encoder.keras", "decoder.keras", "history.csv", "run.json"},
}
EPOCH_METRICS = {
    "ae": {"loss", "val_loss"},
    "vae": {"total_loss", "reconstruction_loss", "kl_loss",
            "val_total_loss", "val_reconstruction_loss", "val_kl_loss"},
}  # fmt: skip


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_smoke_training_records_a_complete_run(project, model):
    result = train(project, model, env={"DVC_EXP_NAME": "quick-exp"})
    assert result.returncode == 0, result.stderr
    out = project / "models" / model
    assert {p.name for p in out.iterdir()} == FILES[model]

    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert EPOCH_METRICS[model] <= set(history.columns)

    record = json.loads((out / "run.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{project / 'mlflow.db'}"  # absolute, at root
    client = client_for(project)
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == model
    assert client.get_experiment(run.info.experiment_id).name == "wardrobe"
    params = run.data.params
    assert params["seed"] == "42" and params[f"{model}.epochs"] == "2"
    assert params[f"{model}.filters"] == "[32, 64, 128]"
    assert params["data.train_images"] == "200"
    for metric in EPOCH_METRICS[model]:
        steps = [m.step for m in client.get_metric_history(record["run_id"], metric)]
        assert steps == [1, 2], metric  # one value per epoch, logged once
        assert run.data.metrics[metric] == pytest.approx(history[metric].iloc[-1], rel=1e-5)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    tags = run.data.tags
    assert tags["git_commit"] == commit
    assert tags["git_dirty"] == "false"
    assert tags["dvc_exp_name"] == "quick-exp"
    assert len(tags["processed_data_sha256"]) == 64

    decoder_name = f"wardrobe-{model}-decoder"
    version = client.get_model_version_by_alias(decoder_name, "candidate")
    assert version.run_id == record["run_id"]
    logged = {m["name"] for m in record["models"]}
    assert logged == {p.removesuffix(".keras") for p in FILES[model] if p.endswith(".keras")}
    assert "Traceback" not in result.stderr


LOAD_FROM_RUN = """
import json, sys, numpy as np, mlflow, keras
import wardrobe.models  # registers the custom classes
record = json.load(open(sys.argv[1]))
mlflow.set_tracking_uri(record["tracking_uri"])
x = np.load(sys.argv[2])
z = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
from_run = mlflow.keras.load_model(f"runs:/{record['run_id']}/decoder")
from_registry = mlflow.keras.load_model(sys.argv[3])
encoder = mlflow.keras.load_model(f"runs:/{record['run_id']}/encoder")
np.savez(
    sys.argv[4],
    run=from_run.predict(z, verbose=0),
    registry=from_registry.predict(z, verbose=0),
    encoded=np.asarray(encoder.predict(x, verbose=0)[0]),
)
"""


def test_vae_loads_back_from_files_and_from_the_mlflow_run(project):
    import keras

    import wardrobe.models  # noqa: F401

    assert train(project, "vae").returncode == 0
    out = project / "models" / "vae"
    x = np.load(project / "data" / "test.npz")["images"][:5]
    np.save(project / "x.npy", x)
    subprocess.run(
        [sys.executable, "-c", LOAD_FROM_RUN, str(out / "run.json"), "x.npy",
         "models:/wardrobe-vae-decoder@candidate", "loaded.npz"],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip
    loaded = np.load(project / "loaded.npz")
    z = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    decoder = keras.models.load_model(out / "decoder.keras")
    expected = decoder.predict(z, verbose=0)
    np.testing.assert_array_equal(loaded["run"], expected)
    np.testing.assert_array_equal(loaded["registry"], expected)
    encoder = keras.models.load_model(out / "encoder.keras")
    np.testing.assert_array_equal(loaded["encoded"], np.asarray(encoder.predict(x, verbose=0)[0]))


def test_same_seed_gives_the_same_history(project):
    histories = []
    for out in ("models/a", "models/b"):
        assert train(project, "vae", out=out).returncode == 0
        history = pd.read_csv(project / out / "history.csv")
        histories.append(history.drop(columns=["epoch_seconds", "images_per_second"]))
    pd.testing.assert_frame_equal(histories[0], histories[1], check_exact=True)


def test_nan_input_fails_the_stage_marks_the_run_failed_and_keeps_models(project):
    assert train(project, "ae").returncode == 0
    before = {p.name: p.read_bytes() for p in (project / "models" / "ae").iterdir()}
    images = np.load(project / "data" / "train.npz")["images"]
    images[7, 10, 10, 0] = np.nan
    save_split(project / "data" / "train.npz", images, np.arange(200, dtype=np.uint8) % 10)

    result = train(project, "ae")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("train_ae: error:")]
    assert len(errors) == 1 and "loss became nan at epoch 1" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in (project / "models" / "ae").iterdir()} == before
    assert not [p for p in (project / "models").iterdir() if p.name.startswith(".")]
    client = client_for(project)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]


def test_a_classifier_below_its_threshold_fails_and_writes_nothing(project):
    write_params(project, project / "params.yaml", classifier={"min_accuracy": 0.99})
    result = train(project, "classifier")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "train_classifier: error:" in line]
    assert len(errors) == 1, result.stderr
    assert "is below classifier.min_accuracy 0.99; train longer (classifier.epochs)" in errors[0]
    assert list((project / "models").iterdir()) == []  # no model, no staging leftovers
    client = client_for(project)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    [run] = client.search_runs([experiment])
    assert run.info.run_name == "classifier" and run.info.status == "FAILED"


def test_failed_checks_stop_training(project):
    (project / "checks" / "summary.json").write_text(
        json.dumps({"success": False, "failures": ["processed/train images: n_nan"]})
    )
    result = train(project, "vae")
    assert result.returncode == 1
    assert "the data checks failed (processed/train images: n_nan)" in result.stderr
    assert not (project / "models").exists()


def test_unreachable_tracking_server_fails_fast_naming_the_uri(project, closed_port_url):
    result = train(project, "ae", env={"MLFLOW_TRACKING_URI": closed_port_url})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "train_ae: error:" in line]
    assert len(errors) == 1 and f"MLflow tracking server {closed_port_url}" in errors[0]
    assert not (project / "models").exists()


def test_silent_tracking_server_times_out():
    from wardrobe.tracking import TrackingError, check_reachable

    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(TrackingError, match=f"{uri} is unreachable"):
            check_reachable(uri, timeout_s=0.5)


@pytest.fixture
def scratch_store(tmp_path, monkeypatch):
    """MLflow in this process pointed at a store under tmp_path, restored afterwards."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    previous = mlflow.get_tracking_uri()
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def test_interrupted_run_is_killed_and_failed_run_is_failed(scratch_store):
    import mlflow

    from wardrobe import tracking

    tracking.configure(experiment="interrupts")
    for exc, status in ((KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")):
        with pytest.raises(exc), tracking.training_run("x", {"a": 1}, {}) as run:
            raise exc()
        assert mlflow.get_run(run.info.run_id).info.status == status


def test_tracking_store_errors_during_a_run_fail_it_with_one_line(scratch_store):
    import mlflow

    from wardrobe import tracking

    tracking.configure(experiment="store-errors")
    failure = pytest.raises(tracking.TrackingError, match=r"tracking store sqlite:///.* failed")
    with failure, tracking.training_run("x", {}, {}) as run:
        mlflow.log_param("a", 1)
        mlflow.log_param("a", 2)  # MLflow refuses to change a logged param
    assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def test_tracking_server_that_is_not_mlflow_fails_with_one_line(project, http_mirror):
    result = train(project, "ae", env={"MLFLOW_TRACKING_URI": http_mirror.url.rstrip("/")})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "train_ae: error:" in line]
    assert len(errors) == 1 and "refused the experiment 'wardrobe'" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_tracking_uri():
    from wardrobe.tracking import TrackingError, check_reachable

    with pytest.raises(TrackingError, match="http://localhost:50OO is unreachable"):
        check_reachable("http://localhost:50OO", timeout_s=1)


def test_project_root_outside_dvc_temporary_copies(tmp_path):
    from wardrobe.tracking import project_root

    (tmp_path / "dvc.yaml").write_text("")
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    (copy / "dvc.yaml").write_text("")
    assert project_root(copy) == tmp_path
    (tmp_path / "pipeline").mkdir()
    assert project_root(tmp_path / "pipeline") == tmp_path
