"""The training stages: MLflow runs, model files, determinism, failure handling. The library's
`train` functions run in this process; the stage scripts run as DVC runs them where the exit
status and the one-line error are what is tested."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    assert_one_line_error,
    client_for,
    objective_and_its_sample,
    run_script,
    stage_env,
    train,
    write_params,
    write_verdict,
)
from wardrobe.dataset import data_digest, save_split
from wardrobe.errors import ChecksFailed
from wardrobe.tracking.store import TrackingError
from wardrobe.training.classifier import BelowThreshold

FILES = {
    "ae": {"autoencoder.keras", "encoder.keras", "decoder.keras", "history.csv", "run.json"},
    "vae": {"vae.keras", "encoder.keras", "decoder.keras", "history.csv", "run.json"},
}
EPOCH_METRICS = {
    "ae": {"loss", "val_loss"},
    "vae": {"total_loss", "reconstruction_loss", "kl_loss",
            "val_total_loss", "val_reconstruction_loss", "val_kl_loss"},
}  # fmt: skip
TRAIN_ARGS = ("--data", "data", "--checks", "checks/summary.json")


def runs_of(project, order: str = "DESC"):
    client = client_for(project)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    return client.search_runs([experiment], order_by=[f"attributes.start_time {order}"])


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_smoke_training_records_a_complete_run(project, model, monkeypatch):
    import mlflow

    monkeypatch.setenv("DVC_EXP_NAME", "quick-exp")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    trained = train(project, model)
    out = project / "models" / model
    assert {p.name for p in out.iterdir()} == FILES[model]

    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert EPOCH_METRICS[model] <= set(history.columns)

    record = json.loads((out / "run.json").read_text())
    assert record["run_id"] == trained.run_id
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
    assert run.data.metrics["train_seconds"] == pytest.approx(trained.seconds)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    tags = run.data.tags
    assert tags["git_commit"] == commit
    assert tags["git_dirty"] == "false"
    assert tags["dvc_exp_name"] == "quick-exp"
    # the splits as the run's inputs, digested by DVC's hash of their directory
    digest = data_digest(project / "data")
    assert tags["processed_data_dvc"] == digest and digest.endswith(".dir")
    inputs = {
        d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags}["mlflow.data.context"])
        for d in run.inputs.dataset_inputs
    }  # fmt: skip
    assert inputs == {
        "fashion-mnist-train": (digest, "training"), "fashion-mnist-test": (digest, "validation"),
    }  # fmt: skip
    # CPU and memory, sampled while it trained
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics
    )

    # every part a logged model of the run, with its signature and an input example; the
    # registry is promote's alone
    logged = {m["name"]: m["model_uri"] for m in record["models"]}
    assert set(logged) == {p.removesuffix(".keras") for p in FILES[model] if p.endswith(".keras")}
    for name, uri in logged.items():
        found = client.get_logged_model(uri.removeprefix("models:/"))
        assert found.source_run_id == record["run_id"] and found.name == name
        info = mlflow.models.get_model_info(uri)
        assert info.signature is not None and info.saved_input_example_info is not None, name
    example = mlflow.models.Model.load(logged["decoder"]).load_input_example()
    assert np.asarray(example).shape == (1, 2)  # the latent origin
    assert client.search_registered_models() == []


def test_training_stage_script_prints_its_summary(project):
    result = run_script(project, "train_ae", *TRAIN_ARGS, "--out", "models/ae")
    assert result.returncode == 0, result.stderr
    run_id = json.loads((project / "models" / "ae" / "run.json").read_text())["run_id"]
    summary = result.stdout.strip().splitlines()[-1]  # after Keras' line per epoch
    assert summary.startswith("train_ae: 2 epochs in ")
    assert "val_loss (bce) 0." in summary and summary.endswith(f"MLflow run {run_id}")
    # Quiet: Wardrobe's own INFO lines, no other library's INFO lines or registry notices.
    info = [line for line in result.stderr.splitlines() if " INFO " in line]
    assert info and all(" wardrobe." in line for line in info), result.stderr
    for noise in ("cpu_feature_guard", "Registered model", "Created version"):
        assert noise not in result.stderr, noise


OUTPUTS = """
import numpy as np
def outputs(name, model, x, z):
    if name == "decoder":
        return model.predict(z, verbose=0)
    if name == "vae":  # the decoded means
        return model.decoder.predict(model.encoder.predict(x, verbose=0)[0], verbose=0)
    if name == "encoder":  # z_mean, for the VAE's encoder
        out = model.predict(x, verbose=0)
        return out[0] if isinstance(out, list | tuple) else out
    return model.predict(x, verbose=0)
"""

LOAD_FROM_RUN = (
    OUTPUTS
    + """
import json, sys, mlflow
import wardrobe.models.vae  # registers the custom classes
x, z = np.load(sys.argv[1]), np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
loaded = {}
for path in sys.argv[3:]:  # each training's run.json
    record = json.load(open(path))
    mlflow.set_tracking_uri(record["tracking_uri"])
    for logged in record["models"]:
        name, run = logged["name"], f"runs:/{record['run_id']}/{logged['name']}"
        for how, uri in (("logged", logged["model_uri"]), ("run", run)):
            loaded[f"{path}|{how}:{name}"] = outputs(name, mlflow.keras.load_model(uri), x, z)
np.savez(sys.argv[2], **loaded)
"""
)


def test_every_logged_model_loads_back_in_a_new_process(project):
    """Each part each training logs (the AE's, the VAE's, the classifier's) loads, by its
    logged-model URI and by its run's artifact path, in a new process, and predicts exactly
    what the part's file in models/ predicts."""
    import keras

    import wardrobe.models.vae  # noqa: F401  (the VAE's custom classes)

    models = ("ae", "vae", "classifier")
    for model in models:
        train(project, model)
    x = np.load(project / "data" / "test.npz")["images"][:5]
    np.save(project / "x.npy", x)
    records = [f"models/{model}/run.json" for model in models]
    subprocess.run(
        [sys.executable, "-c", LOAD_FROM_RUN, "x.npy", "loaded.npz", *records],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip
    loaded = np.load(project / "loaded.npz")
    namespace: dict = {}
    exec(OUTPUTS, namespace)
    z = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    expected_keys = set()
    for model, record in zip(models, records, strict=True):
        out = project / "models" / model
        names = {f.removesuffix(".keras") for f in FILES.get(model, {f"{model}.keras"})
                 if f.endswith(".keras")}  # fmt: skip
        expected_keys |= {f"{record}|{how}:{name}" for how in ("logged", "run") for name in names}
        for name in names:
            model_file = keras.models.load_model(out / f"{name}.keras")
            expected = namespace["outputs"](name, model_file, x, z)
            for how in ("logged", "run"):
                np.testing.assert_array_equal(
                    loaded[f"{record}|{how}:{name}"], expected, err_msg=f"{model} {how}:{name}"
                )
    assert set(loaded.files) == expected_keys


def test_the_trained_vae_weighs_its_reconstruction_by_the_beta_of_params(project):
    """β goes from params.yaml into the model that trains and is saved, not only into the
    run's params: the saved VAE's objective is β x BCE + KL with params' β."""
    import keras

    import wardrobe.models.vae  # noqa: F401

    write_params(project, project / "params.yaml", vae={"beta": 123.0, "epochs": 1})
    trained = train(project, "vae")
    vae = keras.models.load_model(project / "models" / "vae" / "vae.keras")
    assert vae.beta == 123.0
    images = np.load(project / "data" / "test.npz")["images"][:8]
    (_, reconstruction, _), (_, _, z) = objective_and_its_sample(vae, images)
    decoded = vae.decoder(z)
    bce = float(keras.ops.mean(keras.losses.binary_crossentropy(images, decoded, axis=(1, 2, 3))))
    assert reconstruction == pytest.approx(123.0 * bce, rel=1e-4)
    assert client_for(project).get_run(trained.run_id).data.params["vae.beta"] == "123.0"


def test_same_seed_gives_the_same_history(project):
    histories = []
    for out in ("models/a", "models/b"):
        train(project, "vae", out=out)
        history = pd.read_csv(project / out / "history.csv")
        histories.append(history.drop(columns=["epoch_seconds", "images_per_second"]))
    pd.testing.assert_frame_equal(histories[0], histories[1], check_exact=True)


def test_nan_input_fails_the_stage_marks_the_run_failed_and_keeps_models(project):
    train(project, "ae")
    before = {p.name: p.read_bytes() for p in (project / "models" / "ae").iterdir()}
    images = np.load(project / "data" / "train.npz")["images"]
    images[7, 10, 10, 0] = np.nan
    save_split(project / "data" / "train.npz", images, np.arange(200, dtype=np.uint8) % 10)
    write_verdict(project / "checks" / "summary.json", project / "data")  # as if it passed

    result = run_script(project, "train_ae", *TRAIN_ARGS, "--out", "models/ae")
    assert_one_line_error(result, "train_ae", "loss became nan at epoch 1", "learning rate")
    assert {p.name: p.read_bytes() for p in (project / "models" / "ae").iterdir()} == before
    assert not [p for p in (project / "models").iterdir() if p.name.startswith(".")]
    assert [r.info.status for r in runs_of(project)] == ["FAILED", "FINISHED"]


def test_a_classifier_below_its_threshold_fails_and_writes_nothing(project):
    write_params(project, project / "params.yaml", classifier={"min_accuracy": 0.99})
    with pytest.raises(BelowThreshold) as failed:
        train(project, "classifier")
    assert "is below classifier.min_accuracy 0.99; train longer (classifier.epochs)" in str(
        failed.value
    )
    assert list((project / "models").iterdir()) == []  # no model, no staging leftovers
    [run] = runs_of(project)
    assert run.info.run_name == "classifier" and run.info.status == "FAILED"


def test_failed_checks_stop_training(project):
    (project / "checks" / "summary.json").write_text(
        json.dumps({"success": False, "failures": ["processed/train images: n_nan"]})
    )
    result = run_script(project, "train_vae", *TRAIN_ARGS, "--out", "models/vae")
    assert_one_line_error(
        result, "train_vae", "the data checks failed (processed/train images: n_nan)"
    )
    assert not (project / "models").exists()


@pytest.mark.parametrize(
    "summary, message",
    [
        ("[1, 2]", "not a data-check summary"),
        ('{"success": false}', r"the data checks failed \(no details\)"),
        ("{not json", "missing or unreadable; run `dvc repro validate`"),
        ('{"success": true}', r"does not say which data it checked .*run `dvc repro validate`"),
    ],
)
def test_training_refuses_a_malformed_checks_summary(tmp_path, summary, message):
    from wardrobe.checks.verdict import require_passed

    (tmp_path / "summary.json").write_text(summary)
    with pytest.raises(ChecksFailed, match=message):
        require_passed(tmp_path / "summary.json", tmp_path)


def test_unreachable_tracking_server_fails_fast_naming_the_uri(project, closed_port_url):
    start = time.perf_counter()
    result = run_script(
        project, "train_ae", *TRAIN_ARGS, "--out", "models/ae",
        env={"MLFLOW_TRACKING_URI": closed_port_url},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert_one_line_error(result, "train_ae", f"MLflow tracking server {closed_port_url}")
    assert not (project / "models").exists()
    # docs/tracking.md promises about 10 s (the TensorFlow import included); MLflow's own
    # retries take minutes. 40 s allows the suite's other worker training on the second core.
    assert seconds < 40, f"{seconds:.1f} s"


def test_silent_tracking_server_times_out():
    from wardrobe.tracking.store import check_reachable

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

    from wardrobe.tracking.runs import tracked_run
    from wardrobe.tracking.store import configure

    configure(experiment="interrupts")
    for exc, status in ((KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")):
        with pytest.raises(exc), tracked_run("x", {"a": 1}, {}) as run:
            raise exc()
        assert mlflow.get_run(run.info.run_id).info.status == status


def test_tracking_store_errors_during_a_run_fail_it_with_one_line(scratch_store):
    import mlflow

    from wardrobe.tracking.runs import tracked_run
    from wardrobe.tracking.store import configure

    configure(experiment="store-errors")
    failure = pytest.raises(TrackingError, match=r"tracking store sqlite:///.* failed")
    with failure, tracked_run("x", {}, {}) as run:
        mlflow.log_param("a", 1)
        mlflow.log_param("a", 2)  # MLflow refuses to change a logged param
    assert "\n" not in str(failure.excinfo.value)
    assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def test_tracking_server_that_is_not_mlflow_fails_with_one_line(project, http_mirror):
    result = run_script(
        project, "train_ae", *TRAIN_ARGS, "--out", "models/ae",
        env={"MLFLOW_TRACKING_URI": http_mirror.url.rstrip("/")},
    )  # fmt: skip
    assert_one_line_error(result, "train_ae", "cannot be read: API request")


def test_malformed_tracking_uri():
    from wardrobe.tracking.store import check_reachable

    with pytest.raises(TrackingError, match="http://localhost:50OO is unreachable"):
        check_reachable("http://localhost:50OO", timeout_s=1)


def test_parallel_stages_on_a_new_sqlite_store_create_its_schema_once(tmp_path):
    """`dvc queue start -j 2` on a fresh clone: stages open a store that does not exist yet at
    the same moment. Without the schema lock, 3 of 4 fail with "table ... already exists"."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    code = "from wardrobe.tracking.store import configure; print(configure())"
    command = [sys.executable, "-c", code]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    starts = [subprocess.Popen(command, cwd=tmp_path, env=stage_env(), **pipes) for _ in range(4)]
    for process in starts:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiments = client_for(tmp_path).search_experiments()
    assert sorted(e.name for e in experiments) == ["Default", "wardrobe"]


def test_parallel_runs_log_the_same_new_dataset_without_conflict(tmp_path):
    """Four processes log one new dataset into runs of a shared store at the same moment: the
    store looks it up, then inserts it, so all but one may find it missing; each must
    succeed, and the store keep one dataset that all four runs name."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    code = (
        "import sys, time, mlflow, numpy as np\n"
        "from wardrobe.tracking.store import configure\n"
        "from wardrobe.tracking.datasets import log_datasets, split_datasets\n"
        "configure()\n"
        "data = {'test': (np.zeros((4, 28, 28, 1), 'float32'), np.arange(4))}\n"
        "found = split_datasets(data, 'data', 'f' * 32 + '.dir')\n"
        "run = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name('wardrobe')"
        ".experiment_id)\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
        "log_datasets(mlflow.MlflowClient(), run.info.run_id, found,"
        " {'test': 'evaluation'})\n"
    )
    configured = subprocess.run(
        [sys.executable, "-c", "from wardrobe.tracking.store import configure; configure()"],
        cwd=tmp_path, env=stage_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr
    start = str(time.time() + 8)  # after every process has imported MLflow
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    command = [sys.executable, "-c", code, start]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=stage_env(), **pipes) for _ in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    runs = client.search_runs([experiment])
    assert len(runs) == 4
    named = {(d.dataset.name, d.dataset.digest) for r in runs for d in r.inputs.dataset_inputs}
    assert named == {("fashion-mnist-test", "f" * 32 + ".dir")}
    assert all(len(r.inputs.dataset_inputs) == 1 for r in runs)


def test_the_data_digest_is_the_hash_dvc_lock_records(tmp_path):
    """`dataset.data_digest` computes from the files what DVC records for their directory, so
    a run's datasets name the dvc.lock entry that `dvc checkout` restores."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    env = stage_env()
    dvc = [str(Path(sys.executable).parent / "dvc")]
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True, env=env)
    make = (
        "mkdir -p out/sub && echo a > out/train.npz && echo b > out/test.npz && echo c > out/sub/x"
    )
    subprocess.run([*dvc, "stage", "add", "-q", "-n", "prep", "-o", "out", make],
                   cwd=repo, check=True, env=env)  # fmt: skip
    subprocess.run([*dvc, "repro", "-q"], cwd=repo, check=True, env=env)
    recorded = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prep"]["outs"][0]
    assert data_digest(repo / "out") == recorded["md5"] and recorded["md5"].endswith(".dir")
    (repo / "out" / "test.npz").chmod(0o644)
    (repo / "out" / "test.npz").write_text("changed")
    assert data_digest(repo / "out") != recorded["md5"]
    with pytest.raises(FileNotFoundError):
        data_digest(repo / "elsewhere")


def test_project_root_outside_dvc_temporary_copies(tmp_path):
    from wardrobe.fsio import project_root

    (tmp_path / "dvc.yaml").write_text("")
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    (copy / "dvc.yaml").write_text("")
    assert project_root(copy) == tmp_path
    (tmp_path / "pipeline").mkdir()
    assert project_root(tmp_path / "pipeline") == tmp_path
