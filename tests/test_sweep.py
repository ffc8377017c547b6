"""Sweeps: the sweep file's grid, points, names and rules (in-process), and a real sweep of a
quick pipeline on the embedded Ray runtime (slow): two points at once, each in its own clone,
neither lost, each run holding its own point's params; the same sweep again runs nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import (
    ROOT,
    TINY_RUN,
    client_for,
    commit,
    dvc,
    free_port,
    project_repo,
    repo_env,
    shown_experiments,
    write_params,
)
from wardrobe.errors import ParamsError
from wardrobe.sweep import spec


def write_sweep(dest: Path, text: str) -> Path:
    path = dest / "sweeps" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_points_are_the_grid_s_cross_product_named_in_its_order(tmp_path):
    path = write_sweep(
        tmp_path,
        """
name: claims
set: {ae.epochs: 2}
grid:
  vae.beta: [50, 0.5]
  z: {keys: [ae.latent_dim, vae.latent_dim], values: [2, 8]}
  ae.filters: [[8, 16]]
""",
    )
    sweep = spec.load(path, ROOT / "params.yaml")
    assert [p.name for p in sweep.points] == [
        "claims-beta50-z2-filters8x16", "claims-beta50-z8-filters8x16",
        "claims-beta0.5-z2-filters8x16", "claims-beta0.5-z8-filters8x16",
    ]  # fmt: skip
    second = sweep.points[1]
    assert second.values == {"ae.epochs": 2, "vae.beta": 50, "ae.latent_dim": 8,
                             "vae.latent_dim": 8, "ae.filters": [8, 16]}  # fmt: skip
    assert second.set_args() == [
        "-S", "ae.epochs=2", "-S", "vae.beta=50", "-S", "ae.latent_dim=8",
        "-S", "vae.latent_dim=8", "-S", "ae.filters=[8, 16]",
    ]  # fmt: skip
    params = spec.point_params(sweep, second, ROOT / "params.yaml")
    assert (params.ae.latent_dim, params.vae.latent_dim, params.vae.beta) == (8, 8, 50)
    assert params.ae.filters == (8, 16) and params.ae.epochs == 2
    assert sweep.keys == ["vae.beta", "ae.latent_dim", "vae.latent_dim", "ae.filters",
                          "ae.epochs"]  # fmt: skip
    assert sweep.stages == ()  # the whole pipeline


def test_the_noise_sweep_runs_the_stages_its_metrics_come_from():
    """sweeps/noise.yaml names `collect`, whose upstream writes every metric the tolerances
    read; a sweep file's stages are `dvc exp run`'s targets, printed with each point's -S."""
    sweep = spec.load(ROOT / "sweeps" / "noise.yaml", ROOT / "params.yaml")
    assert sweep.stages == ("collect",)
    from wardrobe import noise

    collect = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["collect"]
    written = [next(iter(o)) if isinstance(o, dict) else o
               for o in collect.get("metrics", []) + collect.get("outs", [])]  # fmt: skip
    assert set(noise.FILES) <= set(written)
    listed = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep", "points", "sweeps/noise.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == "noise-seed1 -S seed=1 collect"


@pytest.mark.parametrize("value", [500, 0.0005, 1e-12, True, "bce", "yes", "1.5", [32, 64], None])
def test_a_set_argument_reads_back_as_its_value(tmp_path, value):
    """What DVC writes into params.yaml for `-S key=<text>` (its own override parser, then its
    YAML writer) reads back, through the params loader, as the value."""
    from dvc.utils.hydra import apply_overrides

    from wardrobe.params import parse

    path = tmp_path / "params.yaml"
    path.write_text("vae:\n  beta: 500\n")
    apply_overrides(path, [f"vae.beta={spec.text(value)}"])
    assert parse(path.read_text())["vae"]["beta"] == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("grid:\n  vae.betta: [1]\n",
         r"s.yaml \(point s-betta1\): vae.betta is not a known key \(known: batch_size, beta,"),
        ("grid:\n  vae.beta: [1, -2]\n",
         r"s.yaml \(point s-beta_2\): vae.beta must be greater than 0, got -2$"),
        ("grid:\n  preprocess.limit_test: [10]\n  vae.latent_dim: [16]\n",
         r"vae.latent_dim must be less than the test images \(10, "),
        ("grid:\n  vae.beta: 5\n", r"s.yaml: grid.vae.beta must be a non-empty list of values$"),
        ("grid:\n  vae.beta: []\n", r"grid.vae.beta must be a non-empty list of values$"),
        ("grid:\n  vae.beta: [1, 1.0]\n", r"grid.vae.beta repeats a value: \[1, 1.0\]$"),
        ("name: s\n", r"s.yaml: grid must be a mapping of params keys to lists of values$"),
        ("grid: {vae.beta: [1]}\nset: {vae.beta: 2}\n",
         r"vae.beta is in set: and in the grid; keep one$"),
        ("grid: {z: {keys: [ae.latent_dim], values: [2], name: x}}\n",
         r"grid.z must be a list of values, or keys: and values:"),
        ("grid: {ae.latent_dim: [2], z: {keys: [ae.latent_dim], values: [4]}}\n",
         r"a params key is on two axes of the grid"),
        ("name: Claims\ngrid: {vae.beta: [1]}\n", r"name must be lower-case letters"),
        ("grids: {vae.beta: [1]}\n",
         r"grids is not a known key \(known: grid, name, set, stages\)$"),
        ("grid: {seed: [1]}\nstages: [evaluate]\n",
         r"s.yaml: stages: evaluate is not a stage of dvc.yaml \(its stages: fetch, preprocess, "
         r"validate, train_ae, train_vae, train_classifier, reference, evaluate@ae, "
         r"evaluate@vae, collect, plots@ae, plots@vae, explore\)$"),
        ("grid: {seed: [1]}\nstages: collect\n",
         r"s.yaml: stages must be a non-empty list of dvc.yaml's stage names$"),
        ("grid: {seed: [1]}\nstages: [collect, plots@ae, collect]\n",
         r"s.yaml: stages repeats a stage: \['collect', 'plots@ae', 'collect'\]$"),
        ("grid: [vae.beta\n", r"s.yaml: not valid YAML at line 2; fix the syntax$"),
        ("grid: {seed.x: [1]}\n", r"seed.x: seed is not a section of params.yaml"),
        ("grid:\n  vae.beta: [1]\n  vae.beta: [2]\n",
         r"s.yaml: vae.beta is given twice at line 3; keep one of them$"),
    ],
)  # fmt: skip
def test_a_bad_sweep_file_is_one_line_naming_what_is_wrong(tmp_path, text, message):
    path = write_sweep(tmp_path, text)
    with pytest.raises((spec.SweepError, ParamsError), match=message) as err:
        spec.load(path, ROOT / "params.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_a_missing_sweep_file_is_one_line(tmp_path):
    with pytest.raises(spec.SweepError, match=r"nope.yaml: not found; name a sweep file"):
        spec.load(tmp_path / "nope.yaml", ROOT / "params.yaml")
    with pytest.raises(spec.SweepError, match=r": a directory; name a sweep file in it"):
        spec.load(tmp_path, ROOT / "params.yaml")
    binary = tmp_path / "s.yaml"
    binary.write_bytes(b"grid:\n  vae.beta: [1]\n\xff\xfe")
    with pytest.raises(spec.SweepError) as err:
        spec.load(binary, ROOT / "params.yaml")
    assert str(err.value) == f"{binary}: not UTF-8 text (byte 22); a sweep file is YAML"


def sweep_cli(repo: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep", *args], cwd=repo, env=repo_env(repo),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_trial_keeps_the_lock_entries_of_the_stages_its_targets_do_not_reach(tmp_path):
    """Up to collect, a point runs every stage but the figures and the page's files: its
    clone's dvc.lock keeps their entries (so its experiment's lock names every stage's
    outputs, and `dvc exp apply` finds them), and loses every other (so that each stage it
    runs is looked up in the run cache). Without targets, the lock goes."""
    from wardrobe.sweep.order import outside, pipeline
    from wardrobe.sweep.trial import forget_locked

    stages = pipeline(ROOT)
    assert outside(stages, ["collect"]) == ("plots@ae", "plots@vae", "explore")
    assert set(outside(stages, ["plots@vae", "train_ae"])) == {
        "evaluate@ae", "collect", "plots@ae", "explore",
    }  # fmt: skip
    assert outside(stages, []) == ()
    lock = tmp_path / "dvc.lock"
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())
    lock.write_text((ROOT / "dvc.lock").read_text())
    forget_locked(lock, keep=outside(stages, ["collect"]))
    kept = yaml.safe_load(lock.read_text())
    assert kept["schema"] == locked["schema"]
    assert kept["stages"] == {s: locked["stages"][s] for s in ("plots@ae", "plots@vae", "explore")}
    forget_locked(lock)
    assert not lock.exists()
    forget_locked(lock)  # a commit without a lock


def test_a_point_waits_for_the_earlier_points_that_first_compute_its_stages(tmp_path):
    """On β x latent size: the first point computes the data stages every point shares, the
    first point of each latent size its AE; the others wait for those, and only for those."""
    from wardrobe.sweep.order import pipeline, waits

    stages = pipeline(ROOT)
    read = {name: stage.params for name, stage in stages.items()}
    assert set(read["train_vae"]) >= {"vae", "seed", "preprocess", "data"}
    assert "vae" not in read["train_ae"] and "ae" in read["evaluate@ae"]
    assert "ae" not in read["evaluate@vae"] and "vae" not in read["plots@ae"]
    assert {"ae", "vae", "classifier"} <= set(read["collect"])
    grid = "  vae.beta: [5, 50, 500]\n  z:\n    keys: [ae.latent_dim, vae.latent_dim]\n"
    path = write_sweep(tmp_path, f"name: g\ngrid:\n{grid}    values: [2, 8]\n")
    points = spec.load(path, ROOT / "params.yaml").points
    found = waits(points, stages)
    assert found == {
        "g-beta5-z2": set(),
        "g-beta5-z8": {"g-beta5-z2"},  # the data
        "g-beta50-z2": {"g-beta5-z2"},  # the data and the AE of z = 2
        "g-beta50-z8": {"g-beta5-z2", "g-beta5-z8"},  # the data; the AE of z = 8
        "g-beta500-z2": {"g-beta5-z2"},
        "g-beta500-z8": {"g-beta5-z2", "g-beta5-z8"},
    }
    # a point with other data waits for no one; one with other splits, for the fetch
    data = spec.Point("g-retries", {"data.retries": 1})
    splits = spec.Point("g-limit", {"preprocess.limit_train": 100})
    assert waits([points[0], data, splits], stages) == {
        "g-beta5-z2": set(), "g-retries": set(), "g-limit": {"g-beta5-z2"},
    }  # fmt: skip


POINTS = ("t-beta7", "t-beta3000", "t-beta50")
VAE_ONLY = ("train_vae", "evaluate@vae", "collect", "plots@vae", "explore")


def ctrl_c(sweep: subprocess.Popen) -> None:
    """As a terminal's Ctrl-C, twice: SIGINT to the whole foreground process group."""
    os.killpg(sweep.pid, signal.SIGINT)
    time.sleep(1)
    os.killpg(sweep.pid, signal.SIGINT)


def sigterm(sweep: subprocess.Popen) -> None:
    sweep.send_signal(signal.SIGTERM)  # to the driver alone


STOPS = (("SIGINT", 130, ctrl_c), ("SIGTERM", 143, sigterm))  # (name, exit status, sender)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A committed tiny project with a three-point sweep over vae.beta. Its dvc.lock holds the
    data stages and the AE as another machine ran them, their outputs not in this cache (a
    fresh clone's case): stages that match the lock, whose outputs are not here. The sweep is
    started twice, one point at a time, and stopped each time while its first point's first
    training runs: by Ctrl-C, then by SIGTERM. Returns the project and, per signal, (exit
    status, stderr lines, the training's run id, what .sweep/trials and TMPDIR's Ray
    directories held after the exit, and what still ran in the project 30 s later)."""
    repo = project_repo(tmp_path_factory.mktemp("sweep") / "project")
    write_params(repo, repo / "params.yaml", **TINY_RUN)
    write_sweep(repo, "name: t\ngrid:\n  vae.beta: [7, 3000, 50]\n")
    ran = dvc(repo, "repro", "train_ae")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    commit(repo, "a tiny pipeline, its data and AE, and its sweep")
    shutil.rmtree(repo / ".dvc" / "cache")
    tmp = Path(tempfile.mkdtemp(prefix="wst-"))  # TMPDIR: short, as Ray's sockets need
    stops = {}
    try:
        for name, _, send in STOPS:
            status, err, run = interrupted(repo, tmp, send)
            print("\n".join(err[-4:]))
            trials = list((repo / ".sweep" / "trials").iterdir())
            ray = list(tmp.glob("wardrobe-ray-*"))
            deadline = time.monotonic() + 30
            while (left := in_project(repo)) and time.monotonic() < deadline:
                time.sleep(1)
            stops[name] = (status, err, run, trials, ray, left)
    finally:
        shutil.rmtree(tmp)  # what the stages' tools left there
    return repo, stops


@pytest.fixture(scope="module")
def swept(stopped):
    """The stopped project's sweep run again, with --parallel 2: the first point alone (the
    data's outputs come from the stopped runs' cache, the AE's from nowhere), then the other
    two at once."""
    repo, _ = stopped
    return repo, sweep_cli(repo, "run", "sweeps/s.yaml", "--parallel", "2")


@pytest.mark.slow
def test_a_local_sweep_runs_its_points_at_once_and_keeps_every_one(swept):
    repo, done = swept
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stderr.splitlines()
    for point in POINTS:
        assert any(f"sweep: {point} started on node " in line for line in lines), done.stderr
        assert any(f"sweep: {point} done on node " in line for line in lines), done.stderr
    results = json.loads((repo / "reports" / "sweeps" / "t.json").read_text())
    points = {p["point"]: p for p in results["points"]}
    assert set(points) == set(POINTS)
    assert all(p["status"] == "done" for p in points.values()), points
    # The first point alone trains every model (its data came from the stopped runs'); the
    # other two, at the same time, restore the data, the AE and the classifier from the
    # shared run cache and train only their VAE, which is all they evaluate and draw: the
    # AE's evaluation and figures are restored too.
    first, second, third = (points[p] for p in POINTS)
    assert first["ended"] <= min(second["started"], third["started"])
    assert max(second["started"], third["started"]) < min(second["ended"], third["ended"]), (
        "the last two trials did not run at the same time"
    )
    # ... and so did their trainings, by the MLflow runs' own times (a trial's stamps span
    # its clone and push, which serialised `dvc exp run`s would still overlap)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    a, b = (
        client.search_runs(
            [experiment], f"tags.dvc_exp_name = '{p}' and attributes.run_name = 'vae'"
        )[0].info
        for p in POINTS[1:]
    )
    assert a.start_time < b.end_time and b.start_time < a.end_time, (
        "the last two points' VAE trainings did not overlap"
    )
    assert "train_ae" in first["ran"] and "train_vae" in first["ran"]
    for later in (second, third):
        assert "train_vae" in later["ran"] and "train_ae" not in later["ran"], later["ran"]
        assert "train_classifier" not in later["ran"] and "preprocess" not in later["ran"]
        assert [s for s in later["ran"] if "vae" in s] == [
            "train_vae", "evaluate@vae", "plots@vae",
        ], later["ran"]  # fmt: skip
        assert not {"reference", "evaluate@ae", "plots@ae"} & set(later["ran"]), later["ran"]
        # the stages the lock names come from the first point's run, not run again
        assert set(later["ran"]) <= {"fetch", *VAE_ONLY}, later["ran"]
    assert [p["params"]["vae.beta"] for p in (first, second, third)] == [7, 3000, 50]
    # Both experiments are in the project, each with its own params and metrics.
    exps = shown_experiments(repo)
    for point, beta in zip(POINTS, (7, 3000, 50), strict=True):
        data = exps[point]
        assert data["params"]["params.yaml"]["data"]["vae"]["beta"] == beta
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert metrics["vae"]["test"]["bce"] == pytest.approx(
            points[point]["metrics"]["vae"]["test"]["bce"]
        )
    # The workspace is the commit's: the sweep changed nothing but its results file.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True).stdout  # fmt: skip
    assert status.strip() == "?? reports/sweeps/t.json", status


@pytest.mark.slow
def test_each_point_s_runs_are_tagged_with_the_sweep_and_hold_its_params(swept):
    repo, done = swept
    assert done.returncode == 0
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("wardrobe")
    runs = client.search_runs([experiment.experiment_id], "tags.sweep = 't'")
    vae = {}
    for run in runs:
        if run.info.run_name == "vae":
            vae.setdefault(run.data.tags["dvc_exp_name"], []).append(run)
    assert set(vae) == set(POINTS), {r.info.run_name for r in runs}
    for point, beta in zip(POINTS, (7, 3000, 50), strict=True):
        (run,) = vae[point]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["vae.beta"]) == beta
        assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(repo)


@pytest.mark.slow
def test_the_same_sweep_again_runs_nothing(swept):
    repo, first = swept
    assert first.returncode == 0
    results = repo / "reports" / "sweeps" / "t.json"
    before = {p["point"]: p for p in json.loads(results.read_text())["points"]}
    again = sweep_cli(repo, "run", "sweeps/s.yaml", "--parallel", "2", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for point in POINTS:
        assert f"sweep: {point} skipped: its experiment is already on the git remote" in (
            again.stderr
        )
    assert "Running stage" not in again.stdout + again.stderr
    # The results file still holds every point's metrics, read from its experiment.
    after = {p["point"]: p for p in json.loads(results.read_text())["points"]}
    assert {p: o["status"] for p, o in after.items()} == dict.fromkeys(POINTS, "skipped")
    for point in POINTS:
        assert after[point]["metrics"] == before[point]["metrics"] != {}, point


@pytest.mark.slow
def test_a_failing_point_is_one_line_while_the_others_finish(swept, tmp_path):
    """A point whose trial fails (its classifier is below the gate the point sets) is reported
    with its stage's one-line error; the other point finishes and keeps its experiment, and the
    sweep exits 1 naming the point that failed. In a copy of the swept project: the commit and
    the experiments it adds stay out of the project the other tests read."""
    repo, first = swept
    assert first.returncode == 0
    repo = Path(shutil.copytree(repo, tmp_path / "repo", symlinks=True))
    path = write_sweep(repo, "name: f\ngrid:\n  classifier.min_accuracy: [1.0, 0.0]\n")
    commit(repo, "a sweep with a point the classifier's gate refuses", "sweeps/s.yaml")
    bad, good = (p.name for p in spec.load(path, repo / "params.yaml").points)
    done = sweep_cli(repo, "run", "sweeps/s.yaml", "--parallel", "2", timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    print("\n".join(x for x in lines if x.startswith("sweep: ")))
    [failed] = [x for x in lines if x.startswith(f"sweep: {bad} failed on node ")]
    assert "train_classifier" in failed and "is below classifier.min_accuracy 1; train longer" in (
        failed
    ), failed
    assert any(x.startswith(f"sweep: {good} done on node ") for x in lines), done.stderr
    assert f"sweep: error: 1 of 2 points failed: {bad}" in lines, done.stderr
    results = json.loads((repo / "reports" / "sweeps" / "f.json").read_text())
    assert {p["point"]: p["status"] for p in results["points"]} == {bad: "failed", good: "done"}
    exps = shown_experiments(repo)
    assert good in exps and bad not in exps, sorted(exps)


def test_a_sweep_of_uncommitted_changes_is_refused_before_anything_runs(tmp_path):
    repo = project_repo(tmp_path / "project")
    write_sweep(repo, "grid:\n  vae.beta: [7]\n")
    commit(repo, "a sweep")
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("beta: 500", "beta: 600"))
    done = sweep_cli(repo, "run", "sweeps/s.yaml", timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"sweep: error: uncommitted changes to params.yaml: every trial clones commit "
        f"{head(repo)[:7]}, so they would not run; commit them (or stash them), then run the "
        "sweep"
    ]
    assert not (repo / ".sweep").exists()
    subprocess.run(["git", "checkout", "params.yaml"], cwd=repo, check=True)

    outside = tmp_path / "outside.yaml"
    outside.write_text("grid:\n  vae.beta: [7]\n")
    done = sweep_cli(repo, "run", str(outside), timeout=120)
    assert (done.returncode, done.stderr.splitlines()) == (1, [
        f"sweep: error: {outside} is outside the project {repo}: a sweep runs what a commit "
        "holds; put the file in the project (e.g. sweeps/) and commit it"
    ])  # fmt: skip

    write_sweep(repo, f"grid:\n  vae.beta: {list(range(1, 16))}\n  seed: {list(range(15))}\n")
    commit(repo, "a sweep of 225 points")
    done = sweep_cli(repo, "run", "sweeps/s.yaml", timeout=120)
    assert (done.returncode, done.stderr.splitlines()) == (1, [
        "sweep: error: sweeps/s.yaml spans 225 points, more than 200: check its grid (python -m "
        "wardrobe.sweep points sweeps/s.yaml), or run it with --allow-large (make sweep "
        "ALLOW_LARGE=1)"
    ])  # fmt: skip
    assert not (repo / ".sweep").exists()


def head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def test_a_bad_sweep_file_stops_make_sweep_before_anything_runs(tmp_path):
    repo = project_repo(tmp_path / "project")
    write_sweep(repo, "grid:\n  vae.betta: [7]\n")
    done = sweep_cli(repo, "run", "sweeps/s.yaml", timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "sweep: error: sweeps/s.yaml (point s-betta7): vae.betta is not a known key (known: "
        "batch_size, beta, deterministic, epochs, filters, latent_dim, learning_rate), got 7"
    ]
    assert not (repo / ".sweep").exists() and not (repo / "reports" / "sweeps" / "s.json").exists()


def cluster_refusal(repo: Path, env: dict) -> str:
    """The one line a cluster sweep stops with, in seconds, having created nothing."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep", "run", "sweeps/s.yaml"], cwd=repo,
        env=repo_env(repo, env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and time.perf_counter() - start < 60, done.stderr
    [line] = done.stderr.splitlines()
    assert not (repo / "reports" / "sweeps" / "s.json").exists()
    return line


def test_an_unreachable_ray_head_git_remote_or_dvc_remote_stops_the_sweep_with_one_line(
    tmp_path,
):
    repo = project_repo(tmp_path / "project")
    write_sweep(repo, "grid:\n  vae.beta: [7]\n")
    commit(repo, "a sweep")
    head_at = f"127.0.0.1:{free_port()}"
    line = cluster_refusal(repo, {"RAY_ADDRESS": head_at})
    assert line.startswith(f"sweep: error: the Ray head at {head_at} is unreachable ("), line
    assert "start it (make cluster, then source .cluster/env)" in line, line

    with socket.socket() as listening:  # a head that answers: a port this test listens on
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        env = {"RAY_ADDRESS": f"127.0.0.1:{listening.getsockname()[1]}"}
        line = cluster_refusal(repo, env)
        assert line.startswith("sweep: error: the project has no git remote origin"), line
        missing = tmp_path / "nowhere.git"
        subprocess.run(["git", "remote", "add", "origin", str(missing)], cwd=repo, check=True)
        line = cluster_refusal(repo, env)
        assert line.startswith(
            f"sweep: error: the git remote origin ({missing}) is unreachable"
        ), line
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(missing)], check=True)
        line = cluster_refusal(repo, env)
        assert "is not on the git remote origin" in line and "git push it first" in line, line
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo, check=True,
                       capture_output=True)  # fmt: skip
        line = cluster_refusal(repo, env)
        assert line.startswith("sweep: error: no default DVC remote is configured"), line


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_sweep_is_valid(path):
    sweep = spec.load(path, ROOT / "params.yaml")
    assert sweep.points and len({p.name for p in sweep.points}) == len(sweep.points)


def running_runs(repo: Path) -> list[str]:
    """The ids of the project's MLflow runs that are RUNNING."""
    import contextlib
    import sqlite3

    db = repo / "mlflow.db"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        try:
            rows = c.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'").fetchall()
        except sqlite3.Error:  # the schema is still being made
            return []
    return [row[0] for row in rows]


def in_project(repo: Path) -> list[str]:
    """The command lines of the processes whose working directory is in the project."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(repo)):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "))
        except OSError:
            continue
    return [line.decode(errors="replace") for line in found]


def interrupted(repo: Path, tmp: Path, send) -> tuple[int, list[str], str]:
    """Start the sweep as a terminal's foreground job would (a process group of its own, its
    temporary files under `tmp`), wait until a training's MLflow run is RUNNING, check the
    Ray runtime's directory is private, `send` the signal; (exit status, stderr, the run)."""
    sweep = subprocess.Popen(
        [sys.executable, "-m", "wardrobe.sweep", "run", "sweeps/s.yaml", "--parallel", "1"],
        cwd=repo, env=repo_env(repo, {"TMPDIR": str(tmp)}), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (running := running_runs(repo)):
            assert sweep.poll() is None, sweep.communicate()
            assert time.monotonic() < deadline, "no run started in 600 s"
            time.sleep(0.5)
        private = list(tmp.glob("wardrobe-ray-*"))
        assert [oct(p.stat().st_mode & 0o777) for p in private] == ["0o700"], private
        sent = time.monotonic()
        send(sweep)
        _, err = sweep.communicate(timeout=300)  # the stages' clean-up, then Ray's
        print(f"sweep: exit {sweep.returncode} {time.monotonic() - sent:.1f} s after the signal")
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    return sweep.returncode, err.strip().splitlines(), running[0]


@pytest.mark.slow
def test_ctrl_c_or_sigterm_stops_a_sweep_with_one_line_and_the_next_run_finishes(stopped, swept):
    """Ctrl-C (twice, to the whole process group) and SIGTERM (to the driver): the running
    point is cancelled, its training's run ends KILLED, its clone is removed, nothing of it
    runs on, the Ray runtime's private directory is gone, no other point starts; one line,
    exit 130 or 143. The next run of the sweep runs every point."""
    repo, stops = stopped
    client = client_for(repo)
    for name, code, _ in STOPS:
        status, err, run, trials, ray, left = stops[name]
        assert status == code, err
        assert err[-1] == (
            f"sweep: error: stopped by {name}: 1 running point(s) cancelled (t-beta7), 0 of 3 "
            "finished; run the sweep again to run the rest"
        ), err
        assert f"sweep: {name}: stopping the running points; no new one starts" in err
        assert not any(f"{p} started" in line for p in POINTS[1:] for line in err), err
        assert client.get_run(run).info.status == "KILLED"
        assert trials == [] and ray == [], (trials, ray)
        assert left == [], f"still running in the project 30 s after the sweep stopped: {left}"
    _, done = swept  # (its results file may since hold a later run's)
    assert done.returncode == 0, done.stderr[-3000:]
    for point in POINTS:
        assert f"sweep: {point} done on node " in done.stderr, done.stderr[-3000:]
