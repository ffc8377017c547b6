"""Run a sweep's points as DVC experiments, scheduled by Ray.

Ray core tasks, one per point (not Ray Tune: a trial here is a `dvc exp run` in a clone, not a
function reporting results, and Tune's searchers and checkpoints would have nothing to do). A
task asks for one CPU and is retried by Ray when its node dies (`max_retries`); the dead
attempt's `dvc exp run` dies with it (`wardrobe.sweep.trial`).

- **Local default** (no `RAY_ADDRESS`): an embedded Ray runtime on this machine, at most
  `parallel` trials at once; the clones come from the project itself, share its DVC cache (run
  cache included), log to its tracking store and push their experiments back into it.
- **A cluster** (`RAY_ADDRESS`, e.g. from `make cluster`): the clones come from the project's
  git remote `origin` and push their experiments there; their inputs come from, and their
  outputs and run cache go to, the DVC remote; runs go to `MLFLOW_TRACKING_URI`.

Ray runs with token authentication on every node (`RAY_AUTH_MODE=token`): the embedded runtime
gets a token of its own, generated into `.sweep/ray-token` (0600).
"""

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wardrobe import catalogue
from wardrobe.errors import WardrobeError
from wardrobe.fsio import write_json, write_secret
from wardrobe.gitstate import PIPELINE, changed, git, head
from wardrobe.processes import environment_tool
from wardrobe.sweep.order import outside, pipeline, waits
from wardrobe.sweep.spec import Sweep
from wardrobe.sweep.trial import Outcome, Trial, run_trial
from wardrobe.tracking.runs import flatten

STATE = Path(".sweep")  # git-ignored: the embedded runtime's token, the trials' clones
RESULTS = Path("reports/sweeps")  # <sweep name>.json: every point's params and metrics
MAX_RETRIES = 3  # attempts after a node dies under a trial
HEAD_TIMEOUT_S = 5  # to reach the Ray head's port before ray.init
# The metrics the summary table shows, as dotted keys of metrics.json.
HEADLINE = tuple(catalogue.headline())


class SweepRunError(WardrobeError):
    """A sweep that cannot start: the line says why and what to do."""


CANCEL_WAIT_S = 120  # for the running trials to stop their commands and remove their clones


class SweepInterrupted(WardrobeError):
    """Ctrl-C or SIGTERM stopped the sweep: its running points were cancelled, the others
    not started; `signum` gives the exit status (128 + it)."""

    def __init__(self, line: str, signum: int) -> None:
        super().__init__(line)
        self.signum = signum


class Interrupts:
    """SIGINT and SIGTERM to the sweep's driver, kept instead of raised: the sweep then starts
    no point, cancels the running ones (their stages end their runs KILLED, their clones are
    removed), stops Ray and writes what it has. A second signal changes nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._before: dict[int, Any] = {}

    def install(self) -> None:
        """Take both signals (again after ray.init, which installs handlers of its own)."""
        for sig in self.SIGNALS:
            before = signal.signal(sig, self._keep)
            self._before.setdefault(sig, before)

    def restore(self) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _keep(self, signum: int, frame: Any) -> None:
        if not self.received:
            say(f"{signal.Signals(signum).name}: stopping the running points; no new one starts")
        self.received.append(signum)

    @property
    def first(self) -> int | None:
        return self.received[0] if self.received else None


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([environment_tool("dvc"), *args], cwd=root, capture_output=True,
                          text=True, check=False)  # fmt: skip


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1].strip() if lines else f"exit {done.returncode}"


def require_committed(root: Path, sweep: Sweep) -> str:
    """The commit every trial clones, or SweepRunError naming what is not committed."""
    commit = head(root)
    if commit is None:
        raise SweepRunError(f"{root} has no git commit: a sweep runs a commit; commit first")
    try:
        sweep.path.resolve().relative_to(root.resolve())
    except ValueError:
        raise SweepRunError(
            f"{sweep.path} is outside the project {root}: a sweep runs what a commit holds; "
            "put the file in the project (e.g. sweeps/) and commit it"
        ) from None
    differ = changed(root, (*PIPELINE, str(sweep.path)))
    if differ:
        raise SweepRunError(
            f"uncommitted changes to {', '.join(differ[:5])}: every trial clones commit "
            f"{commit[:7]}, so they would not run; commit them (or stash them), then run the "
            "sweep"
        )
    return commit


@dataclass(frozen=True)
class Place:
    """Where the trials run and what they share."""

    address: str | None  # a Ray head, or None for the embedded runtime
    git_remote: str
    cache_dir: str | None
    env: Mapping[str, str]
    dvc_remote: tuple[str, str | None] | None = None


def local_place(root: Path) -> Place:
    """The local default: the project is the git remote, its cache the trials' cache, its
    tracking store theirs (the experiment made here first, so that its artifacts go beside
    the project's store, not into a clone)."""
    from wardrobe.tracking.store import configure

    uri = configure(root=root)
    cache = _dvc(root, "cache", "dir")
    if cache.returncode != 0:
        raise SweepRunError(f"dvc cache dir failed: {_last_line(cache)}")
    return Place(None, str(root), cache.stdout.strip(), {"MLFLOW_TRACKING_URI": uri})


def require_head(address: str) -> None:
    """SweepRunError at once when nothing answers at the Ray head's address: `ray.init` would
    wait for minutes. ("auto" and other forms without a port are left to Ray.)"""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=HEAD_TIMEOUT_S):
            pass
    except OSError as exc:
        raise SweepRunError(
            f"the Ray head at {address} is unreachable ({exc.strerror or exc}); start it "
            "(make cluster, then source .cluster/env), fix RAY_ADDRESS, or unset it to run on "
            "this machine"
        ) from None


def cluster_place(root: Path, address: str, commit: str) -> Place:
    """A cluster: the Ray head must answer, the git remote `origin` must hold the commit, and
    the DVC remote the commit's outputs (pushed here first, with the run cache)."""
    require_head(address)
    url = git(root, "remote", "get-url", "origin")
    if url.returncode != 0:
        raise SweepRunError(
            "the project has no git remote origin: a cluster's nodes clone the sweep's commit "
            "from it; add one (git remote add origin URL) and push the commit"
        )
    remote = url.stdout.strip()
    fetched = git(root, "fetch", "-q", "origin")
    if fetched.returncode != 0:
        raise SweepRunError(
            f"the git remote origin ({remote}) is unreachable: {_last_line(fetched)}; fix the "
            "URL (git remote set-url origin URL) or the network"
        )
    if not git(root, "branch", "-r", "--contains", commit).stdout.strip():
        raise SweepRunError(
            f"commit {commit[:7]} is not on the git remote origin ({remote}): the nodes clone "
            "it from there; git push it first"
        )
    storage = dvc_remote(root)
    pushed = _dvc(root, "push", "--run-cache")
    if pushed.returncode != 0:
        raise SweepRunError(
            f"dvc push to the DVC remote failed: {_last_line(pushed)}; the trials read their "
            "inputs from it: configure and start it (make stack; docs/sweeps.md)"
        )
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI",) if os.environ.get(k)}
    return Place(address, remote, None, env, storage)


def dvc_remote(root: Path) -> tuple[str, str | None]:
    """The default DVC remote's URL and S3 endpoint, as this project configures them."""
    default = _dvc(root, "remote", "default")  # exit 1, "No default remote set", when none
    name = default.stdout.strip() if default.returncode == 0 else ""
    if not name:
        raise SweepRunError(
            "no default DVC remote is configured: a cluster's trials read their inputs from it "
            "and push their outputs to it; add one (dvc remote add -d NAME URL; docs/sweeps.md)"
        )
    url = _dvc(root, "config", f"remote.{name}.url").stdout.strip()
    endpoint = _dvc(root, "config", f"remote.{name}.endpointurl").stdout.strip() or None
    return url, endpoint


def ray_token(root: Path) -> None:
    """Token authentication for every Ray process this one starts or connects to: the
    caller's token (RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN) if set, else the project's own."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = root / STATE / "ray-token"
    write_secret(path)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)


def start_ray(place: Place, parallel: int, temp_dir: str) -> Any:
    """Connect to the cluster, or start the embedded runtime: on 127.0.0.1 only, its session
    files under `temp_dir` (a private directory; Ray makes its own 0777), no dashboard."""
    if place.address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # one node: bind loopback only
    import ray

    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        if place.address is None:
            ray.init(address="local", num_cpus=parallel, include_dashboard=False,
                     _temp_dir=temp_dir, **kwargs)  # fmt: skip
        else:
            ray.init(address=place.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        where = place.address or "the embedded runtime"
        raise SweepRunError(
            f"Ray at {where} could not be reached: {str(exc).strip().splitlines()[-1]}; start "
            "it (make cluster) or unset RAY_ADDRESS to run on this machine"
        ) from None
    return ray


def _task(ray: Any) -> Any:
    @ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
    def trial_task(trial: Trial, progress: Any) -> Outcome:
        node = ray.get_runtime_context().get_node_id()[:8]
        progress.started.remote(trial.point, node)
        return run_trial(trial, node)

    return trial_task


def _progress(ray: Any) -> Any:
    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self) -> None:
            self.events: list[tuple[str, str]] = []

        def started(self, point: str, node: str) -> None:
            self.events.append((point, node))

        def drain(self) -> list[tuple[str, str]]:
            events, self.events = self.events, []
            return events

    # On the driver's own node: a worker node that dies takes its trials, not the progress.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return Progress.options(scheduling_strategy=here).remote()


def say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)


def cancel(ray: Any, running: Mapping[Any, Trial], why: str) -> list[Outcome]:
    """Cancel the running trials and wait until each has stopped its commands and removed its
    clone (Ray raises KeyboardInterrupt in the task: wardrobe.sweep.trial); a trial still
    running after CANCEL_WAIT_S is killed with its worker. The outcomes say `interrupted`."""
    for ref in running:
        ray.cancel(ref, force=False)
    pending, deadline = list(running), time.monotonic() + CANCEL_WAIT_S
    while pending and time.monotonic() < deadline:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
    for ref in pending:
        ray.cancel(ref, force=True)
    for trial in running.values():
        say(f"{trial.point} interrupted: {why}")
    return [Outcome(t.point, "-", 0.0, "interrupted", why) for t in running.values()]


def schedule(
    ray: Any,
    trials: Sequence[Trial],
    parallel: int,
    order: Mapping[str, set[str]],
    interrupts: Interrupts | None = None,
) -> list[Outcome]:
    """Run the trials, at most `parallel` at once, each once the points it waits for have
    finished (`order.waits`: the earlier points that first compute one of its stages, which
    it then restores from the run cache). Print a line as each trial starts and ends. Once
    `interrupts` holds a signal, start nothing more and cancel what runs."""
    task, progress = _task(ray), _progress(ray)
    waiting, running, outcomes = list(trials), {}, []
    finished: set[str] = set()
    starts: dict[str, float] = {}
    while waiting or running:
        if interrupts is not None and interrupts.first is not None:
            name = signal.Signals(interrupts.first).name
            return outcomes + cancel(ray, running, f"the sweep was stopped ({name})")
        ready = [t for t in waiting if order.get(t.point, set()) <= finished]
        for trial in ready[: max(0, parallel - len(running))]:
            waiting.remove(trial)
            running[task.remote(trial, progress)] = trial
        done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for point, node in ray.get(progress.drain.remote()):
            again = " again" if point in starts else ""
            starts[point] = time.perf_counter()
            say(f"{point} started{again} on node {node}")
        for ref in done:
            trial = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the task failed past its retries (its node died)
                line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                # Ctrl-C in a terminal reaches Ray's workers too, before the driver's handler
                stopped = isinstance(exc, ray.exceptions.TaskCancelledError) or (
                    "KeyboardInterrupt" in str(exc)
                )
                outcome = Outcome(
                    trial.point, "-", 0.0, "interrupted" if stopped else "failed", line
                )
            outcomes.append(outcome)
            finished.add(trial.point)
            if outcome.status == "done":
                ran = ", ".join(outcome.ran) or "nothing: every stage from the caches"
                say(f"{outcome.point} done on node {outcome.node} in {outcome.seconds:.0f} s "
                    f"(ran {ran})")  # fmt: skip
            elif outcome.status == "skipped":
                say(f"{outcome.point} skipped: its experiment is already on the git remote")
            elif outcome.status == "interrupted":
                say(f"{outcome.point} interrupted: {outcome.error}")
            else:
                say(f"{outcome.point} failed on node {outcome.node}: {outcome.error}")
    return outcomes


def table(sweep: Sweep, outcomes: Sequence[Outcome]) -> str:
    """`dvc exp show`-style: a row per point, its grid values, status and headline metrics."""
    by_point = {o.point: o for o in outcomes}
    grid_keys = [k for axis in sweep.axes for k in axis.keys]
    head_row = ["point", "status", *grid_keys, *HEADLINE]
    rows = [head_row]
    for point in sweep.points:
        found = by_point.get(point.name)
        metrics = flatten(found.metrics) if found else {}
        rows.append([
            point.name, found.status if found else "-",
            *(json.dumps(point.values[k]) for k in grid_keys),
            *(f"{metrics[k]:.4g}" if k in metrics else "-" for k in HEADLINE),
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head_row))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def run(
    root: Path, sweep: Sweep, parallel: int | None = None, address: str | None = None
) -> list[Outcome]:
    """Run every point of `sweep` not yet on the git remote; write reports/sweeps/<name>.json
    (every point's params, status and metrics) and return the outcomes."""
    commit = require_committed(root, sweep)
    stages = pipeline(root)
    order = waits(sweep.points, stages)
    kept = outside(stages, sweep.stages)
    address = address or os.environ.get("RAY_ADDRESS") or None
    place = cluster_place(root, address, commit) if address else local_place(root)
    ray_token(root)
    # Ray makes its session directory 0777 (and its parents' modes stay): it gets one inside a
    # directory of this user's only, removed when the sweep ends. Short: Ray's Unix sockets
    # lie up to 88 characters below the temporary directory, and a socket's path has at most
    # 107 (a longer TMPDIR gives way to /tmp).
    base = tempfile.gettempdir()
    private = tempfile.mkdtemp(prefix="wardrobe-ray-", dir=base if len(base) <= 19 else "/tmp")
    temp_dir = os.path.join(private, "r")
    interrupts = Interrupts()
    interrupts.install()
    try:
        ray = start_ray(place, parallel or os.cpu_count() or 1, temp_dir)
    except BaseException:
        interrupts.restore()
        shutil.rmtree(private, ignore_errors=True)
        raise
    interrupts.install()
    try:
        # the default: what the cores allow (this machine's, or the cluster's)
        parallel = parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
        work_root = str(root / STATE / "trials") if address is None else "/tmp/wardrobe-trials"
        trials = [
            Trial(sweep.name, p.name, tuple(p.set_args()), commit, place.git_remote,
                  work_root, place.cache_dir, dict(place.env), place.dvc_remote, sweep.stages,
                  kept)
            for p in sweep.points
        ]  # fmt: skip
        where = f"on {address}" if address else f"on this machine, {parallel} at once"
        say(f"{len(trials)} points of {sweep.path} at commit {commit[:7]}, {where}")
        start = time.perf_counter()
        outcomes = schedule(ray, trials, parallel, order, interrupts)
    finally:
        ray.shutdown()
        shutil.rmtree(private, ignore_errors=True)
        interrupts.restore()
    print(table(sweep, outcomes))
    values = {p.name: dict(p.values) for p in sweep.points}
    write_json(root / RESULTS / f"{sweep.name}.json", {
        "sweep": str(sweep.path), "commit": commit,
        "seconds": round(time.perf_counter() - start, 1),
        "points": [{**asdict(o), "params": values[o.point]} for o in outcomes],
    })  # fmt: skip
    if interrupts.first is not None:
        stopped = [o.point for o in outcomes if o.status == "interrupted"]
        finished = sum(o.status in ("done", "skipped") for o in outcomes)
        raise SweepInterrupted(
            f"stopped by {signal.Signals(interrupts.first).name}: {len(stopped)} running "
            f"point(s) cancelled ({', '.join(stopped) or 'none'}), {finished} of "
            f"{len(sweep.points)} finished; run the sweep again to run the rest",
            interrupts.first,
        )
    return outcomes
