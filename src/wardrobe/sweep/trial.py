"""One point of a sweep, run where a scheduler placed it: a clone of the sweep's commit of its
own, `dvc exp run -n <point> -S ...` in it, the experiment pushed to the git remote, the clone
removed. Nothing here knows about Ray; `wardrobe.sweep.run` schedules `run_trial`.

- The clone comes from the git remote (on a cluster a URL every node reaches; on this machine
  the project itself), checked out at the sweep's commit.
- Its inputs: with `cache_dir` (the local default) the project's DVC cache, run cache included,
  is the clone's; without it (a cluster) `dvc exp run --pull` fetches what a stage reads, and
  what the run cache restores, from the DVC remote, and `dvc exp push --run-cache` sends what
  the trial made back there.
- A point already on the git remote is not run again.
- Each command, `dvc exp run` and its stages included, dies with the process that runs the
  trial (`wardrobe.processes.tied`), the stages ending their MLflow runs KILLED: a trial whose
  node dies leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wardrobe.processes import environment_tool, tied
from wardrobe.tracking.runs import SWEEP_VARIABLE


@dataclass(frozen=True)
class Trial:
    sweep: str
    point: str
    set_args: tuple[str, ...]
    commit: str
    git_remote: str  # the clone's origin, where the experiment is pushed
    work_root: str  # the directory the clone is made in
    cache_dir: str | None = None  # a shared DVC cache; None: the DVC remote's
    env: Mapping[str, str] = field(default_factory=dict)  # for the stages, over the node's
    # Without a shared cache: the DVC remote's URL and S3 endpoint (none for a path). The
    # project's remote may be configured only locally (.dvc/config.local, not in a clone);
    # its keys come from the node's environment, never through the scheduler.
    dvc_remote: tuple[str, str | None] | None = None
    targets: tuple[str, ...] = ()  # `dvc exp run`'s (the sweep's stages:); none: every stage
    # The stages the targets do not reach: their entries of the commit's dvc.lock stay
    kept: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    point: str
    node: str
    seconds: float
    status: str  # "done", "skipped" (already on the remote) or "failed"
    error: str | None = None  # the one line that says why it failed
    metrics: Mapping[str, Any] = field(default_factory=dict)
    ran: tuple[str, ...] = ()  # the stages `dvc exp run` ran (the others came from caches)
    started: float = 0.0  # wall-clock time (time.time()) the trial started and ended
    ended: float = 0.0


class TrialFailed(Exception):
    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


POLL_S = 0.2  # how soon a trial's command hears that the sweep stopped
STOP_WAIT_S = 60  # for a command told to stop (its stages end their runs) before it is killed


def _run(args: Sequence[str], cwd: Path, env: Mapping[str, str], what: str) -> str:
    """Run a command to its end; its output, or TrialFailed with the line that says why.

    Its output goes to temporary files, not pipes: when the process running the trial dies
    (a dead node's Ray worker), a pipe's reader goes with it, and the stage's next progress
    line would raise BrokenPipeError before the group's SIGTERM arrives, ending its run
    FAILED; a file takes the writes, and the stage ends its run KILLED.

    Interrupted (Ray cancels the task with a KeyboardInterrupt when the sweep is stopped), it
    sends the command SIGTERM, which its `tied` wrapper passes to every process the command
    started: the stages end their MLflow runs KILLED; only after STOP_WAIT_S is the group
    killed. subprocess.run would SIGKILL the wrapper alone and leave its group running. It
    polls: Ray raises the interrupt only when this thread runs Python, which a blocking wait()
    does not until the command ends."""

    def output() -> Any:
        return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    with output() as out, output() as err:
        process = subprocess.Popen(
            tied(args), cwd=cwd, env=dict(env), stdout=out, stderr=err, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while process.poll() is None:  # not wait(): Ray's interrupt lands between calls
                time.sleep(POLL_S)
        except BaseException:
            process.terminate()
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the wrapper leads its group
                process.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise TrialFailed(f"{what} failed: {error_line(stdout + stderr)}")
    return stdout


def error_line(output: str) -> str:
    """The line of a command's output that names the cause: a stage's own one-line error
    (`<stage>: error: ...`) when there is one, else DVC's or git's last error line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit): ", line)]
    if raised and not any(": error: " in line for line in lines):
        return raised[-1]  # a traceback's last line: what a stage raised before its handler
    for marker in (": error: ", "ERROR: ", "fatal: ", "error: "):
        found = [line for line in lines if marker in line]
        if found:
            return found[0] if marker == ": error: " else found[-1]
    return lines[-1] if lines else "no output"


def ran_stages(output: str) -> tuple[str, ...]:
    return tuple(
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    )


def shown_experiments(shown: str) -> dict[str, dict]:
    """`dvc exp show --json`'s output as {experiment name: its data (params, metrics)}."""
    found = {}
    for baseline in json.loads(shown):
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    found[rev["name"]] = rev.get("data") or {}
    return found


def on_remote(dvc: str, clone: Path, env: Mapping[str, str], point: str) -> bool:
    """Whether the git remote already holds this point's experiment on the clone's commit."""
    listed = _run([dvc, "exp", "list", "origin", "--name-only"], clone, env, "dvc exp list")
    return point in listed.split()


def forget_locked(lock: Path, keep: Sequence[str] = ()) -> None:
    """Remove every stage's entry from dvc.lock but those of the stages in `keep`, which the
    trial does not run: the experiment's lock keeps them as the commit had them, so that
    `dvc exp apply` finds every stage's outputs (the commit's, for those), and `dvc status`
    says which are out of date."""
    if not lock.exists():
        return
    locked = yaml.safe_load(lock.read_text()) or {}
    stages = {name: entry for name, entry in (locked.get("stages") or {}).items() if name in keep}
    if not stages:
        lock.unlink()
        return
    tmp = lock.with_name(f"{lock.name}.tmp")
    tmp.write_text(yaml.safe_dump({**locked, "stages": stages}, sort_keys=False))
    tmp.replace(lock)


def run_trial(trial: Trial, node: str | None = None) -> Outcome:
    start, started = time.perf_counter(), time.time()
    node = node or socket.gethostname()
    env = {**os.environ, **trial.env, SWEEP_VARIABLE: trial.sweep}
    env.pop("DVC_EXP_NAME", None)
    dvc, git = environment_tool("dvc"), shutil.which("git") or "git"
    Path(trial.work_root).mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix=f"{trial.point}-", dir=trial.work_root))
    # The stages run this environment's python (the stage commands say `python`) and import
    # the commit's code, from the clone, not the environment's install.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(clone / "src"), env.get("PYTHONPATH")]))

    def outcome(status: str, error: str | None = None, **kw: Any) -> Outcome:
        seconds = time.perf_counter() - start
        return Outcome(trial.point, node, seconds, status, error, **kw, started=started,
                       ended=time.time())  # fmt: skip

    try:
        _run([git, "clone", "-q", "--no-checkout", trial.git_remote, str(clone)], clone.parent,
             env, "git clone")  # fmt: skip
        _run([git, "checkout", "-q", trial.commit], clone, env, f"git checkout {trial.commit}")
        if on_remote(dvc, clone, env, trial.point):
            # its metrics, from the experiment itself (git only: no DVC remote involved)
            _run([dvc, "exp", "pull", "--no-cache", "origin", trial.point], clone, env,
                 "dvc exp pull")  # fmt: skip
            shown = _run([dvc, "exp", "show", "--json"], clone, env, "dvc exp show")
            data = shown_experiments(shown).get(trial.point, {})
            metrics = data.get("metrics", {}).get("reports/metrics.json", {}).get("data", {})
            return outcome("skipped", metrics=metrics)
        if trial.cache_dir:
            _run([dvc, "cache", "dir", "--local", trial.cache_dir], clone, env, "dvc cache dir")
        else:
            if trial.dvc_remote:
                url, endpoint = trial.dvc_remote
                _run([dvc, "remote", "add", "--local", "-f", "-d", "sweep", url], clone, env,
                     "dvc remote add")  # fmt: skip
                if endpoint:
                    _run([dvc, "remote", "modify", "--local", "sweep", "endpointurl", endpoint],
                         clone, env, "dvc remote modify")  # fmt: skip
        # A stage whose deps and params match the commit's dvc.lock is restored only from the
        # outputs that lock names; when they are not in the cache (a fresh clone, a new node),
        # DVC runs the stage again, even when its run cache holds the same stage run by an
        # earlier trial (dvc/stage/cache.py, StageCache.restore). Without its lock entry, a
        # stage is looked up in the run cache; `dvc exp run` writes the entry anew.
        forget_locked(clone / "dvc.lock", keep=trial.kept)
        # --pull: what a stage reads, and what the run cache restores, comes from the remote
        pull = [] if trial.cache_dir else ["--pull"]
        done = _run([dvc, "exp", "run", *pull, "-n", trial.point, *trial.set_args,
                     *trial.targets], clone, env, "dvc exp run")  # fmt: skip
        push = [dvc, "exp", "push", "origin", trial.point]
        push += ["--no-cache"] if trial.cache_dir else ["--run-cache"]
        _run(push, clone, env, "dvc exp push")
        metrics = json.loads((clone / "reports" / "metrics.json").read_text())
        return outcome("done", metrics=metrics, ran=ran_stages(done))
    except TrialFailed as exc:
        return outcome("failed", exc.line)
    finally:
        shutil.rmtree(clone, ignore_errors=True)
