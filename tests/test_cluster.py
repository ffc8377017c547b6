"""Sweeps on a Ray cluster: `make cluster` (a head and two worker nodes, each its own processes
on 127.0.0.1, token auth), a bare git repository as the project's origin, the team stack's S3
store as the DVC remote and its MLflow server as the tracking store. One sweep of three tiny
points, during which the worker node running a trial's training is killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    MAKE_IN_COPY,
    TINY_RUN,
    VENV_BIN,
    Stack,
    commit,
    dvc,
    free_port,
    project_repo,
    repo_env,
    shown_experiments,
    start_stack,
    write_params,
)

pytestmark = pytest.mark.slow

SWEEP = """name: c
grid:
  vae.beta: [7, 3000, 50]
"""
BETAS = {"c-beta7": 7, "c-beta3000": 3000, "c-beta50": 50}
POINTS = tuple(BETAS)
# starts with c-beta50, once c-beta7 has computed the data and the AE; once its node is dead,
# the other node runs c-beta50 and then it, one after the other
KILLED = "c-beta3000"
GONE_WITHIN_S = 30  # what the dead node's trial started, after the node died


def processes() -> dict[int, tuple[str, str]]:
    """pid -> (command line, working directory) of every process that can be read."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry)] = (
                    cmdline.decode(errors="replace"),
                    os.readlink(f"/proc/{entry}/cwd"),
                )
            except OSError:
                continue
    return found


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_node(node: str) -> list[int]:
    """SIGKILL a worker node as a machine that loses power would lose it: its raylet, the
    Ray workers it started and its agents (those naming its node id). What the trial started
    (git, dvc, the stage) is left to stop by itself."""
    running = processes()
    ours = [pid for pid, (cmd, _) in running.items()
            if f"--node_id={node}" in cmd or f"--node-id={node}" in cmd]  # fmt: skip
    raylets = [pid for pid in ours if "raylet" in running[pid][0]]
    assert raylets, f"no raylet of node {node}"
    targets = set(ours) | {c for r in raylets for c in children(r)}
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(targets)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """A team stack of this module's own (conftest's is the session's): the cluster's tests
    and test_stack's can run on two xdist workers at once."""
    yield from start_stack(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(stack: Stack, tmp_path_factory):
    """`make cluster` (WORKERS=2) in a project copy, its nodes started with the stack's client
    settings in their environment (S3 keys, the MLflow login), as a real node's would hold
    them; yields (the project, the client environment of `.cluster/env` and the stack's)."""
    work = tmp_path_factory.mktemp("cluster")
    repo = project_repo(work / "project")
    state = work / "state"
    settings = {"CLUSTER_DIR": str(state), "CLUSTER_PORT": str(free_port()), "WORKERS": "2"}
    env = repo_env(repo, {**stack.client_env, **settings})
    make = [*MAKE_IN_COPY, "-o", f"{VENV_BIN.parent}/.sweep-installed"]
    up = subprocess.run([*make, "cluster"], cwd=repo, env=env, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    client: dict[str, str] = {}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        exports = [line.removeprefix("export ") for line in (state / "env").read_text().split("\n")
                   if line.startswith("export ")]  # fmt: skip
        client = {**stack.client_env, **dict(line.split("=", 1) for line in exports)}
        assert client["RAY_AUTH_MODE"] == "token" and Path(client["RAY_AUTH_TOKEN_PATH"]).is_file()
        yield repo, client
    finally:
        # from a shell that sourced .cluster/env, as the docs say: the client's own processes
        # (this make, its shell) hold the token's path too, and are not the cluster's to stop
        down = subprocess.run([*make, "cluster-down"], cwd=repo, env={**env, **client},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert down.returncode == 0 and "cluster: stopped" in down.stderr, down.stderr
    token = client["RAY_AUTH_TOKEN_PATH"].encode()
    left = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if token in _environ(pid)]  # fmt: skip
    assert left == [], f"make cluster-down left {[(pid, processes().get(pid)) for pid in left]}"


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    """The sweep run against the cluster from a project whose origin is a bare repository and
    whose DVC remote is the stack's S3 store. When KILLED's training has started, its node is
    killed. Yields the project, the client environment, the sweep's exit status and stderr,
    the killed node and what its trial had started."""
    repo, client = cluster
    origin = tmp_path_factory.mktemp("origin") / "wardrobe.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    write_params(repo, repo / "params.yaml", **TINY_RUN)
    (repo / "sweeps" / "c.yaml").write_text(SWEEP)
    commit(repo, "a tiny pipeline and its cluster sweep")
    for command in (["git", "remote", "add", "origin", str(origin)],
                    ["git", "push", "-q", "origin", "main"]):  # fmt: skip
        subprocess.run(command, cwd=repo, check=True, capture_output=True)
    added = dvc(repo, "remote", "add", "--local", "-d", "stack", "s3://dvc/", env=client)
    assert added.returncode == 0, added.stderr

    sweep = subprocess.Popen(
        [sys.executable, "-m", "wardrobe.sweep", "run", "sweeps/c.yaml"], cwd=repo,
        env=repo_env(repo, client), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []  # stderr, read as it comes; stdout (the table) read beside it
    out: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(sweep.stderr), daemon=True),
               threading.Thread(target=lambda: out.extend(sweep.stdout), daemon=True)]  # fmt: skip
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 900
    node = None
    while node is None:
        assert sweep.poll() is None and time.monotonic() < deadline, "".join(lines)
        started = [x for x in lines if x.startswith(f"sweep: {KILLED} started on node ")]
        node = started[0].split()[-1] if started else None
        time.sleep(0.1)
    # its VAE's training: the stage's MLflow run is RUNNING in the server (a stage killed
    # before it starts its run leaves none; tests/test_faults.py kills one that early)
    import mlflow

    server = mlflow.MlflowClient(tracking_uri=client["MLFLOW_TRACKING_URI"])
    training = f"tags.dvc_exp_name = '{KILLED}' and attributes.run_name = 'vae'"

    def vae_running() -> bool:
        experiment = server.get_experiment_by_name("wardrobe")
        runs = server.search_runs([experiment.experiment_id], training) if experiment else []
        return any(r.info.status == "RUNNING" for r in runs)

    while not vae_running():
        assert sweep.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)
    started_by_trial = {
        pid: p for pid, p in processes().items()
        if "pipeline/train_vae.py" in p[0] and f"/{KILLED}-" in p[1]
    }  # fmt: skip
    assert started_by_trial, "the VAE's run is RUNNING, but no train_vae runs in the trial"
    clone = next(iter(started_by_trial.values()))[1]
    killed = kill_node(node)
    died = time.monotonic()
    left, gone_s = {}, None
    while time.monotonic() - died < GONE_WITHIN_S:
        left = {pid: p for pid, p in processes().items()
                if pid not in killed and p[1].startswith(clone)}  # fmt: skip
        if not left:
            gone_s = round(time.monotonic() - died, 1)
            break
        time.sleep(0.5)
    sweep.wait(timeout=max(1, deadline - time.monotonic()))
    for reader in readers:
        reader.join(timeout=10)
    stdout = "".join(out)
    return {"repo": repo, "client": client, "returncode": sweep.returncode, "stdout": stdout,
            "stderr": "".join(lines), "node": node, "left": left,
            "gone_s": gone_s}  # fmt: skip


def test_a_cluster_sweep_runs_on_two_nodes_and_survives_a_dead_one(swept):
    """Every point done, on at least two nodes; the trial of the killed node started again on
    another and finished; nothing its first attempt started kept running."""
    stderr = swept["stderr"]
    print("\n".join(x for x in stderr.splitlines() if x.startswith("sweep: ")))
    print(f"killed node {swept['node']}; its trial's processes gone in {swept['gone_s']} s")
    assert swept["returncode"] == 0, stderr[-4000:]
    assert swept["left"] == {}, (
        f"still running {GONE_WITHIN_S} s after its node died: {swept['left']}"
    )
    results = json.loads((swept["repo"] / "reports" / "sweeps" / "c.json").read_text())
    points = {p["point"]: p for p in results["points"]}
    assert set(points) == set(POINTS) and len(results["points"]) == len(POINTS)  # none twice
    assert all(p["status"] == "done" for p in points.values()), points
    nodes = {p["node"] for p in points.values()}
    assert len(nodes | {swept["node"]}) >= 2, nodes
    for point in POINTS:
        ended = [x for x in stderr.splitlines() if x.startswith(f"sweep: {point} done on node ")]
        assert len(ended) == 1, (point, stderr[-4000:])
    again = [
        x for x in stderr.splitlines() if x.startswith(f"sweep: {KILLED} started again on node ")
    ]
    assert again and again[0].split()[-1] != swept["node"], stderr[-4000:]
    assert points[KILLED]["node"] != swept["node"]
    # the shared run cache, through the S3 remote: the data and the AE once, at the first
    first = points[POINTS[0]]["ran"]
    assert "train_ae" in first and "preprocess" in first, first
    for point in POINTS[1:]:  # the AE's evaluation and figures too
        ran = set(points[point]["ran"])
        assert not {"preprocess", "train_ae", "reference", "evaluate@ae", "plots@ae"} & ran, (
            point, ran,
        )  # fmt: skip


def test_each_point_has_one_finished_set_of_runs_in_the_server(swept):
    """One FINISHED VAE run and its evaluations per point in the stack's MLflow server; the
    killed attempt's run ended KILLED (its stage got SIGTERM from `processes.tied` as its node
    died), not FAILED (a BrokenPipeError from the dead worker's pipe, before that signal), not
    FINISHED and not RUNNING."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=swept["client"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    for point in POINTS:
        runs = client.search_runs([experiment], f"tags.dvc_exp_name = '{point}'")
        finished = [r.info.run_name for r in runs if r.info.status == "FINISHED"]
        # Each point's own: its VAE's; the AE's and the classifier's at the first point. The
        # rest it restored from the run cache.
        first = ["ae", "ae/eval", "classifier", "classifier/eval"] if point == POINTS[0] else []
        assert sorted(finished) == sorted(["vae", "vae/eval", *first]), (point, finished)
        others = {r.info.status for r in runs if r.info.status != "FINISHED"}
        assert others <= ({"KILLED"} if point == KILLED else set()), (point, others)
        assert all(r.data.tags.get("sweep") == "c" for r in runs), point
    killed = client.search_runs([experiment], f"tags.dvc_exp_name = '{KILLED}'")
    assert any(r.info.status == "KILLED" for r in killed), [r.info.status for r in killed]


def test_a_fresh_clone_pulls_every_point_and_shows_its_metrics(swept, tmp_path):
    clone = tmp_path / "clone"
    origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=swept["repo"], text=True,
                            capture_output=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run(["git", "clone", "-q", origin, str(clone)], check=True)
    client = swept["client"]
    assert (
        dvc(clone, "remote", "add", "--local", "-d", "stack", "s3://dvc/", env=client).returncode
        == 0
    )
    listed = dvc(clone, "exp", "list", "origin", "--name-only", env=client)
    assert set(listed.stdout.split()) == set(POINTS), listed.stdout + listed.stderr
    for point in POINTS:
        pulled = dvc(clone, "exp", "pull", "origin", point, env=client)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    exps = shown_experiments(clone, client)
    assert set(POINTS) <= set(exps), sorted(exps)
    for point in POINTS:
        data = exps[point]
        assert data["params"]["params.yaml"]["data"]["vae"]["beta"] == BETAS[point]
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        assert metrics["vae"]["test"]["bce"] > 0, point
    applied = dvc(clone, "exp", "apply", KILLED, env=client)
    assert applied.returncode == 0, applied.stderr
    assert (clone / "models" / "vae" / "vae.keras").is_file()  # its outputs, from the S3 store


def test_the_same_sweep_again_runs_nothing(swept):
    again = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep", "run", "sweeps/c.yaml"], cwd=swept["repo"],
        env=repo_env(swept["repo"], swept["client"]), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    for point in POINTS:
        assert (
            f"sweep: {point} skipped: its experiment is already on the git remote" in again.stderr
        )
    assert "Running stage" not in again.stdout + again.stderr
