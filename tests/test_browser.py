"""The product in a browser and in MLflow: the MLflow UI (`make ui`) over a retrained project's
runs, the HTML reports opened with the network off, and DVC experiments' runs in MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import (
    EVALUATION_STAGES,
    MAKE_IN_COPY,
    NO_TELEMETRY,
    REMOTE_ASSET,
    ROOT,
    VAE_STAGES,
    assert_answers_only_its_own_names,
    client_for,
    dvc,
    free_port,
    job_runners,
    ran_stages,
    repo_env,
    telemetry_of,
)
from wardrobe.params import load

# --- the MLflow UI --------------------------------------------------------------------------


def api(base: str, endpoint: str, payload: dict | None = None, **query) -> dict:
    url = f"{base}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class UI(str):
    """The UI's base URL, the link `make ui` prints to the training runs, and its project."""

    link: str
    repo: Path
    server_pid: int


@pytest.fixture(scope="module")
def ui(retrained):
    """`make ui` on a free loopback port, serving the retrained copy's mlflow.db."""
    repo = retrained[0]
    port = free_port()
    server = subprocess.Popen(
        [*MAKE_IN_COPY, "ui", f"UI_PORT={port}"],
        cwd=repo, env=repo_env(repo), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    base = UI(f"http://127.0.0.1:{port}")
    base.repo, base.server_pid = repo, server.pid
    prefix = "ui: the training runs: "
    for line in server.stdout:  # under a parent make, make's "Entering directory" comes first
        if line.startswith(prefix):
            base.link = line.removeprefix(prefix).strip()
            break
    else:
        pytest.fail(f"`make ui` exited ({server.wait()}) before printing the link")
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"`make ui` did not serve {base}: {server.stdout.read()[-2000:]}")
            time.sleep(0.5)
    yield base
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@pytest.mark.slow
def test_the_ui_serves_the_runs_with_params_metrics_and_figures(ui):
    experiment = api(ui, "experiments/get-by-name", experiment_name="wardrobe")["experiment"]
    runs = api(ui, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    by_name = {r["info"]["run_name"]: r for r in runs}
    assert {"ae", "vae", "classifier", "ae/eval", "vae/eval", "classifier/eval"} <= set(by_name)
    for name in ("ae", "vae"):
        run, evaluation = by_name[name], by_name[f"{name}/eval"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert params[f"{name}.epochs"] == "1" and params["seed"] == "42"
        assert "epoch_seconds" in metrics and "test.bce" not in metrics
        params = {p["key"]: p["value"] for p in evaluation["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in evaluation["data"]["metrics"]}
        assert params["evaluate.generated"] == "500" and params["seed"] == "42"
        assert {"test.bce", "test.generation.frechet_distance"} <= set(metrics)
        evaluation_id = evaluation["info"]["run_id"]
        files = api(ui, "artifacts/list", run_id=evaluation_id, path="figures")["files"]
        assert "figures/latent_by_class.png" in {f["path"] for f in files}
        figure = urllib.request.urlopen(
            f"{ui}/get-artifact?path=figures/generated.png&run_uuid={evaluation_id}",
            timeout=30,
        ).read()
        assert figure.startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("target, variable, what", [
    ("ui", "UI_PORT", "the MLflow UI"), ("serve", "SERVE_PORT", "the model server"),
])  # fmt: skip
def test_a_taken_port_stops_make_ui_and_make_serve_with_one_line(ui, target, variable, what):
    """A second `make ui` (or a `make serve`) on the port the UI holds: one line naming the
    port and the variable that moves it, a non-zero exit, nothing started."""
    repo, port = ui.repo, ui.rsplit(":", 1)[1]
    done = subprocess.run(
        [*MAKE_IN_COPY, target, f"{variable}={port}"],
        cwd=repo, env=repo_env(repo), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert ours == [
        f"{target}: error: port {port} on 127.0.0.1 ({what}) is already taken; stop what uses "
        f"it or set {variable} to a free port (e.g. make {target} {variable}={int(port) + 1})"
    ], done.stderr
    with urllib.request.urlopen(f"{ui}/health", timeout=5) as answer:  # the UI goes on
        assert answer.status == 200


@pytest.mark.slow
def test_the_ui_answers_only_its_own_names_and_sends_no_telemetry(ui):
    """A page whose name was rebound to 127.0.0.1, or one that posts from another origin, gets
    403 and creates nothing; the UI's server runs with MLflow's telemetry off, and without its
    job runner."""
    import psutil

    port = int(ui.rsplit(":", 1)[1])
    search = "/api/2.0/mlflow/experiments/search?max_results=100"
    assert_answers_only_its_own_names(
        port, search, ("/api/2.0/mlflow/experiments/create", b'{"name": "planted"}')
    )
    names = {e["name"] for e in api(ui, "experiments/search", max_results=100)["experiments"]}
    assert "wardrobe" in names and "planted" not in names
    leader = psutil.Process(ui.server_pid)
    servers = [p for p in leader.children(recursive=True) if "mlflow" in " ".join(p.cmdline())]
    assert servers, [p.cmdline() for p in leader.children(recursive=True)]
    for process in servers:
        assert telemetry_of(process.pid) == NO_TELEMETRY
    assert job_runners(leader.children(recursive=True)) == []
    with urllib.request.urlopen(f"{ui}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30) as answer:
        assert json.loads(answer.read())["disable_ui_telemetry"] is True


@pytest.mark.slow
def test_the_ui_shows_runs_models_datasets_and_comparisons_in_a_browser(
    retrained, ui, browser, tmp_path_factory
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    experiment = api(ui, "experiments/get-by-name", experiment_name="wardrobe")["experiment"]
    eid = experiment["experiment_id"]
    repo = retrained[0]
    runs = api(ui, "runs/search", {"experiment_ids": [eid]})["runs"]
    ids = {r["info"]["run_name"]: r["info"]["run_id"] for r in runs}
    shots = tmp_path_factory.mktemp("screenshots")
    driver = browser
    try:

        def page_shows(lines: set[str], texts: tuple[str, ...] = ()):
            """The page has these exact lines (run names) and these texts (metric names)."""

            def check(d) -> bool:
                body = d.find_element(By.TAG_NAME, "body").text
                return lines <= set(body.splitlines()) and all(t in body for t in texts)

            return check

        # The runs table: the training runs with their datasets, and, expanded, the
        # evaluation runs nested in them with theirs.
        driver.get(f"{ui}/#/experiments/{eid}/runs")
        WebDriverWait(driver, 90).until(
            page_shows({"Training runs", "ae", "vae", "classifier"}, ("fashion-mnist-train (",))
        )
        for expander in driver.find_elements(
            By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"
        ):
            expander.click()  # the row's child runs
        WebDriverWait(driver, 90).until(
            page_shows({"ae/eval", "vae/eval", "classifier/eval"}, ("fashion-mnist-test (",))
        )
        driver.save_screenshot(str(shots / "experiment.png"))

        # The AE's logged model: its evaluation metrics, each with its dataset and run.
        model_id = json.loads((repo / "models" / "ae" / "run.json").read_text())["models"][0][
            "model_uri"
        ].removeprefix("models:/")
        driver.get(f"{ui}/#/experiments/{eid}/models/{model_id}")
        WebDriverWait(driver, 90).until(
            page_shows(
                {"autoencoder", "test.bce", "test.generation.precision", "ae/eval"},
                ("fashion-mnist-test (#",),
            )
        )
        driver.save_screenshot(str(shots / "model.png"))

        compared = json.dumps([ids["ae/eval"], ids["vae/eval"]])
        driver.get(f"{ui}/#/compare-runs?runs={urllib.parse.quote(compared)}"
                   f"&experiments={urllib.parse.quote(json.dumps([eid]))}")  # fmt: skip
        WebDriverWait(driver, 90).until(
            page_shows(
                {"Comparing 2 Runs from 1 Experiment", "ae/eval", "vae/eval"},
                ("test.bce", "test.bce_gain", "evaluate.generated"),
            )
        )
        driver.save_screenshot(str(shots / "compare.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Run Name:" in body and "evaluate.generated" in body
        # The whole page in one tall screenshot: params, metrics and tags of both runs.
        driver.set_window_size(1600, 3200)
        time.sleep(2)  # the page re-lays itself out for the new size
        driver.save_screenshot(str(shots / "compare_full.png"))

        # Last (the UI then remembers the workflow type): `make ui`'s link opens the
        # experiment on its training runs, not on MLflow 3's GenAI overview (traces, token
        # usage), and the experiment is tagged as model training.
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in (
            experiment["tags"]
        )
        assert ui.link == f"{ui}/#/experiments/{eid}/runs?workflowType=machine_learning"
        driver.set_window_size(1600, 1000)
        driver.get(ui.link)
        WebDriverWait(driver, 90).until(
            lambda d: (
                f"/experiments/{eid}/runs?workflowType=machine_learning" in d.current_url
                and page_shows({"Model training", "ae", "vae", "classifier"})(d)
                and "Tokens per Trace" not in d.find_element(By.TAG_NAME, "body").text
            )
        )
        driver.save_screenshot(str(shots / "landing.png"))
    finally:
        driver.set_window_size(1600, 1000)
    print(f"screenshots: {shots}")


@pytest.mark.slow
def test_the_reports_open_in_a_browser_without_the_network(retrained_copy, browser):
    """The Data Docs show their results table and `dvc plots show` draws the loss curves with
    the browser offline: every script and style is a local, pinned copy."""
    repo = retrained_copy
    template = ROOT / "tools" / "web-assets" / "dvc-plots.html"
    assert template.is_file(), "run `make setup`: it writes the dvc plots page template"
    configured = dvc(repo, "config", "--local", "plots.html_template", str(template))
    assert configured.returncode == 0, configured.stderr
    shown = dvc(repo, "plots", "show", "-o", "dvc_plots")
    assert shown.returncode == 0, shown.stderr
    pages = {
        "data_docs": repo / "reports" / "data_checks" / "data_docs" / "index.html",
        "dvc_plots": repo / "dvc_plots" / "index.html",
    }
    for page in pages.values():
        assert not REMOTE_ASSET.search(page.read_text()), page

    browser.set_network_conditions(
        offline=True, latency=0, download_throughput=0, upload_throughput=0
    )
    try:
        browser.get(pages["data_docs"].as_uri())
        rows = browser.execute_script(
            "return typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'"
            " ? ['validation-results', 'expectation_suites'].map(t => document.querySelectorAll("
            "`.bootstrap-table .ge-index-page-${t}-table tbody tr`).length) : null"
        )
        # bootstrap-table ran: a row per table (raw and processed, train and test, images and
        # classes) in the validation results and in the suites.
        assert rows == [8, 8]
        browser.get(pages["dvc_plots"].as_uri())
        time.sleep(2)  # vega-embed renders asynchronously
        drawn = browser.execute_script(
            "return typeof vegaEmbed === 'function' ? document.querySelectorAll("
            "'.vega-embed canvas, .vega-embed svg.marks').length : -1"
        )
        assert drawn == 4  # the loss curves of dvc.yaml's four plots
    finally:
        browser.delete_network_conditions()


# --- DVC experiments ------------------------------------------------------------------------


@pytest.mark.slow
def test_dvc_exp_run_runs_what_its_params_change_and_tags_its_mlflow_runs(retrained_copy):
    """`dvc exp run -S vae.beta=… -S evaluate.generated=…` after the default: the VAE trains
    again (its runs tagged with the experiment's name); the AE and the classifier are not
    trained, and each gets a second evaluation run of its training run, with the other
    evaluate.generated, the training runs' metrics as they were."""
    repo = retrained_copy
    client = client_for(repo)
    trained = {
        model: json.loads((repo / "models" / model / "run.json").read_text())["run_id"]
        for model in ("ae", "classifier")
    }
    before = {model: client.get_run(run_id).data.metrics for model, run_id in trained.items()}
    generated = load(repo / "params.yaml").evaluate.generated
    result = dvc(repo, "exp", "run", "-n", "beta-1000", "-S", "vae.beta=1000",
                 "-S", "evaluate.generated=800")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # no AE or classifier training, no data stage: what beta and the evaluation reach
    ran = ran_stages(result.stdout)
    assert sorted(ran) == sorted({*VAE_STAGES, *EVALUATION_STAGES}), ran

    shown = dvc(repo, "exp", "show", "--json")
    assert shown.returncode == 0 and "beta-1000" in shown.stdout

    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    runs = client.search_runs([experiment], "tags.dvc_exp_name = 'beta-1000'")
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == ["ae/eval", "classifier/eval", "vae", "vae/eval"]
    assert by_name["vae"].data.params["vae.beta"] == "1000.0"
    assert "test.kl" in by_name["vae/eval"].data.metrics  # the experiment's evaluation
    assert by_name["vae/eval"].data.tags["mlflow.parentRunId"] == by_name["vae"].info.run_id
    assert by_name["vae/eval"].data.params["evaluate.generated"] == "800"
    for model, run_id in trained.items():
        assert client.get_run(run_id).data.metrics == before[model], model
        evaluations = client.search_runs(
            [experiment], f"tags.mlflow.parentRunId = '{run_id}'",
            order_by=["attributes.start_time ASC"],
        )  # fmt: skip
        assert [r.data.params["evaluate.generated"] for r in evaluations][-2:] == [
            str(generated), "800",
        ], model  # fmt: skip
        assert evaluations[-1].info.run_id == by_name[f"{model}/eval"].info.run_id, model
    assert "test.generation.frechet_distance" in by_name["ae/eval"].data.metrics
