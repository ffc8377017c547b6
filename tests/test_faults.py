"""Faults while a stage runs: signals (to the stage, to its parent, SIGKILL), tracking-store
faults (corrupt, locked, read-only, full), data that is not the checked data, and exceptions
nobody expected. Each ends with one line and a non-zero exit, ends its run KILLED or FAILED,
and leaves the outputs as they were, or as DVC expects them; no signal is lost."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    MAKE_IN_COPY,
    QUICK,
    ROOT,
    VENV_BIN,
    assert_one_line_error,
    client_for,
    dvc,
    memory_cgroup,
    repo_env,
    run_script,
    stage_env,
    train,
    write_params,
    write_verdict,
)
from wardrobe import processes
from wardrobe.dataset import save_split
from wardrobe.fsio import atomic_dir
from wardrobe.tracking.store import TrackingError

TRAIN_AE = ("--data", "data", "--checks", "checks/summary.json", "--out", "models/ae")
EXIT_WITHIN_S = 30  # after a signal; a stage that hangs on exit fails here
AS_DVC_STAGE = (
    "its outputs were not written; `dvc checkout train_ae` restores the ones dvc.lock records"
)


def stage_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "pipeline" / f"{script}.py"), *args]


class Stage:
    """A stage script running in the background, its stdout and stderr read into `output`."""

    def __init__(self, command: list[str], cwd: Path, env: dict | None = None) -> None:
        """`env`: the stage's environment (`stage_env`) updated with these values."""
        self.process = subprocess.Popen(
            command, cwd=cwd, env=stage_env(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def following(cls, process: subprocess.Popen) -> Stage:
        """Read an already started process (stdout piped, stderr into it)."""
        stage = cls.__new__(cls)
        stage.process, stage.lines, stage.closed = process, [], threading.Event()
        threading.Thread(target=stage._read, daemon=True).start()
        return stage

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
        self.closed.set()  # every process holding the pipe has exited

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(line.startswith(text) for line in self.lines):
            assert self.process.poll() is None or not self.closed.is_set(), self.output
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output}"
            time.sleep(0.1)

    def wait_closed(self, timeout_s: float = EXIT_WITHIN_S) -> None:
        assert self.closed.wait(timeout_s), f"still running after {timeout_s} s:\n{self.output}"


def long_training(project: Path) -> None:
    """params.yaml: an AE training that runs for minutes unless stopped."""
    write_params(project, project / "params.yaml", ae={"epochs": 1000, "batch_size": 10})


def published(project: Path) -> dict[str, bytes]:
    """models/ae's files."""
    return {p.name: p.read_bytes() for p in sorted((project / "models" / "ae").iterdir())}


def statuses(project: Path) -> list[str]:
    client = client_for(project)
    experiment = client.get_experiment_by_name("wardrobe").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    return [r.info.status for r in runs]


def leftovers(directory: Path) -> list[str]:
    """Temporary files and directories beside the outputs (`fsio.atomic_dir`'s)."""
    return sorted(p.name for p in directory.glob(".*") if p.name.endswith((".tmp", ".old")))


@pytest.mark.parametrize(
    "sig, dvc_stage, restore",
    [
        (signal.SIGINT, None, "its outputs were left as they were"),
        (signal.SIGTERM, None, "its outputs were left as they were"),
        # DVC deletes a stage's outputs before running it: the line says how to get them back
        (signal.SIGTERM, "train_ae", AS_DVC_STAGE),
    ],
    ids=["SIGINT", "SIGTERM", "SIGTERM-under-dvc"],
)
def test_a_signal_kills_the_run_publishes_nothing_and_exits_promptly(
    project, sig, dvc_stage, restore
):
    train(project, "ae")
    before = published(project)
    long_training(project)
    stage = Stage(stage_command("train_ae", *TRAIN_AE), project, {"DVC_STAGE": dvc_stage or ""})
    stage.wait_for("Epoch 2/")
    stage.process.send_signal(sig)
    stage.wait_closed()
    assert stage.process.wait() == 130
    assert stage.lines[-1] == f"train_ae: interrupted; {restore}\n"
    assert "Traceback" not in stage.output
    assert published(project) == before
    assert statuses(project) == ["KILLED", "FINISHED"], stage.output
    assert leftovers(project / "models") == []


@pytest.mark.parametrize("shell", [None, "/bin/sh", "/bin/bash"])
def test_a_dvc_stage_stops_when_the_process_that_started_it_dies(project, shell):
    """What a killed `dvc repro` does to its stage, which it runs through `$SHELL -c` (dash
    waits for its command, bash becomes it): the stage gets SIGTERM."""
    train(project, "ae")
    before = published(project)
    long_training(project)
    stage = orphaned_stage(project, shell, {"DVC_STAGE": "train_ae"})
    stage.wait_closed()
    assert stage.lines[-1] == f"train_ae: interrupted; {AS_DVC_STAGE}\n"
    assert published(project) == before
    assert statuses(project) == ["KILLED", "FINISHED"], stage.output


INTERRUPTED_LOGGING = """
import os, random, signal, sys, threading
import mlflow
from wardrobe.tracking.runs import tracked_run

def interrupt(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, interrupt)
mlflow.set_experiment("interrupted")
delays, ids = random.Random(0), []
for _ in range(int(sys.argv[1])):
    timer = threading.Timer(delays.uniform(0.1, 0.5), os.kill, (os.getpid(), signal.SIGTERM))
    try:
        with tracked_run("logging", {"seed": 0}, {}) as run:
            ids.append(run.info.run_id)
            timer.start()
            for step in range(10**9):
                mlflow.log_metrics({"loss": 1 / (step + 1), "step": step}, step=step)
    except KeyboardInterrupt:
        pass
print(*(mlflow.get_run(run_id).info.status for run_id in ids))
"""


def test_an_interrupt_inside_a_store_call_still_ends_the_run_killed(tmp_path):
    """SIGTERM while the training logs to SQLite (each epoch does) lands inside a store call
    about half the time; the statement it cut short must not keep the run from ending KILLED.
    Twelve interrupts at random moments: a run left RUNNING in any fails the test."""
    env = stage_env({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_LOGGING, "12"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["KILLED"] * 12, result.stderr[-3000:]
    assert "could not end MLflow run" not in result.stderr


def test_a_stage_run_by_hand_outlives_its_parent(project):
    """Outside DVC (a stage started with nohup from a shell that then exits) it trains on."""
    long_training(project)
    stage = orphaned_stage(project, None, {})
    epochs = sum(line.startswith("Epoch ") for line in stage.lines)
    stage.wait_for(f"Epoch {epochs + 2}/")
    assert statuses(project) == ["RUNNING"]


def orphaned_stage(project: Path, shell: str | None, env: dict) -> Stage:
    """train_ae started by a launcher process (through `shell -c` when given) that is killed
    once the training runs; the stage is killed when the test ends."""
    command = stage_command("train_ae", *TRAIN_AE)
    if shell:
        command = [shell, "-c", shlex.join(command)]
    launcher = (
        "import os, subprocess, time\n"
        f"child = subprocess.Popen({command!r}, start_new_session=True)\n"
        "print('pid', child.pid, flush=True)\n"
        "time.sleep(3600)\n"
    )
    stage = Stage([sys.executable, "-c", launcher], project, env)
    stage.wait_for("Epoch 2/")
    stage.process.kill()  # the parent only; its child keeps the output pipe open
    stage.process.wait()
    ORPHANS.append(int(next(line for line in stage.lines if line.startswith("pid ")).split()[1]))
    return stage


ORPHANS: list[int] = []  # process groups of stages that outlive their test


@pytest.fixture(autouse=True)
def _kill_orphans() -> Iterator[None]:
    yield
    while ORPHANS:
        with contextlib.suppress(OSError):
            os.killpg(ORPHANS.pop(), signal.SIGKILL)


def test_a_killed_trainings_run_and_staging_directory_are_cleaned_by_the_next(project):
    long_training(project)
    stage = Stage(stage_command("train_ae", *TRAIN_AE), project)
    stage.wait_for("Epoch 2/")
    stage.process.kill()  # SIGKILL: no handler runs
    stage.wait_closed()
    assert statuses(project) == ["RUNNING"]
    [staging] = leftovers(project / "models")
    assert staging.startswith(f".ae.{processes.host()}+{stage.process.pid}.")
    # nothing published: no model directory, no registered model, no logged model named
    assert [p.name for p in (project / "models").iterdir()] == [staging]
    assert client_for(project).search_registered_models() == []
    assert not (project / "models" / staging / "run.json").exists()

    write_params(project, project / "params.yaml", ae=QUICK)
    train(project, "ae")
    assert statuses(project) == ["FINISHED", "FAILED"]
    assert leftovers(project / "models") == []


def test_an_interrupt_after_the_models_are_logged_writes_nothing(project, monkeypatch):
    """The last moment before the directory swap: the logged models stay in their KILLED run
    (nothing names them), models/ is as it was, nothing staged is left beside it."""
    import wardrobe.training.ae as ae

    def save_then_interrupt(staging, *args, **kwargs):
        save(staging, *args, **kwargs)
        assert (staging / "run.json").is_file()
        raise KeyboardInterrupt

    save = ae.save
    monkeypatch.setattr(ae, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(project, "ae")
    assert statuses(project) == ["KILLED"]
    assert list((project / "models").iterdir()) == []
    assert client_for(project).search_registered_models() == []


LOST_IN_A_FINALIZER = """
import os, signal, sys, time
from wardrobe import processes

processes.handle_interrupts()

class Finalized:
    def __del__(self):  # the signal's handler runs here, where a raise is dropped
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass

try:
    Finalized()
    print("finalized", flush=True)
    time.sleep(5)
    print("not interrupted", flush=True)
except KeyboardInterrupt as exc:
    print("interrupted by", exc, flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # the process group's Ctrl-C, during the clean-up
    time.sleep(0.2)
    print("clean-up finished", flush=True)
"""


def test_a_signal_that_lands_in_a_finalizer_is_delivered_again(tmp_path):
    """Python drops what a finalizer raises (TensorFlow frees an epoch's functions in
    `__del__` as the next epoch begins): the interrupt comes again once it has returned, and
    a second signal during the clean-up does not cut that short."""
    result = subprocess.run(
        [sys.executable, "-c", LOST_IN_A_FINALIZER], cwd=tmp_path, env=stage_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["finalized", "interrupted by SIGTERM", "clean-up finished"], result.stderr
    assert "Exception ignored" not in result.stderr


def test_an_interrupt_a_library_swallowed_comes_again_until_it_is_reached(tmp_path):
    """One SIGTERM, and code that catches the interrupt and goes on (C code that clears
    errors does so silently): the interrupt comes again, every `RESEND_S`, until the code
    that ends the work says it has it; then no more. (The old handler ignored every signal
    after the first: that stage trained on.)"""
    code = (
        "import os, signal, time\n"
        "from wardrobe import processes\n"
        "processes.handle_interrupts()\n"
        "for swallowed in range(3):\n"
        "    try:\n"
        "        if not swallowed: os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "    except BaseException:\n"
        "        print('swallowed', flush=True)  # a library that goes on\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    time.sleep(5); print('not interrupted')\n"
        "except KeyboardInterrupt as exc:\n"
        "    print(f'interrupted by {exc} after {time.monotonic() - start:.1f} s')\n"
        "    processes.interrupt_reached()\n"
        "time.sleep(3 * processes.RESEND_S)\n"
        "print('no more')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=stage_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[:3] == ["swallowed"] * 3 and lines[-1] == "no more", result.stdout + result.stderr
    # Sent again every RESEND_S (0.5 s): under a loaded 2-core machine the watcher thread can
    # wait a few seconds for a core, so the bound is generous; "not interrupted" (the whole
    # 5 s sleep) is the failure this guards against.
    found = re.fullmatch(r"interrupted by SIGTERM after ([\d.]+) s", lines[3])
    assert found and float(found.group(1)) < 4.0, lines


def test_stale_staging_of_dead_processes_only_is_removed(tmp_path):
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has this pid
    host = processes.host()
    (tmp_path / "out").mkdir()
    names = {
        "dead": f".out.{host}+{dead}.x1y2z3.tmp",
        "dead_old": f".out.{host}+{dead}.old",
        "alive": f".out.{host}+{os.getpid()}.a1b2c3.tmp",
        "other_host": f".out.elsewhere+1+{dead}.q1w2e3.tmp",
        "dotted_host": f".out.{host}.{dead}+{os.getpid()}.r1t2y3.tmp",
        "other_output": f".output.{host}+{dead}.u1i2o3.tmp",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    with atomic_dir(tmp_path / "out") as staging:
        (staging / "file").write_text("new")
    kept = {k for k, v in names.items() if (tmp_path / v).exists()}
    assert kept == {"alive", "other_host", "dotted_host", "other_output"}
    assert (tmp_path / "out" / "file").read_text() == "new"


def test_an_output_moved_aside_by_a_killed_swap_is_moved_back(tmp_path):
    """SIGKILL between atomic_dir's two renames leaves the old output beside its path only."""
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    old = tmp_path / f".out.{processes.host()}+{dead}.old"
    old.mkdir()
    (old / "file").write_text("previous")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out"):
        raise RuntimeError  # a failed write: the previous output is what remains
    assert (tmp_path / "out" / "file").read_text() == "previous"
    assert not old.exists()


def test_process_identity_tells_a_reused_pid_apart():
    me = processes.identity()
    assert not processes.gone(me)
    host, pid, started = me.rsplit(":", 2)
    assert processes.gone(f"{host}:{pid}:{int(started) + 1}")  # same pid, another process
    assert not processes.gone(f"another-host:{pid}:{started}")  # cannot tell: left alone
    assert not processes.gone("not an identity")


DVC_LIKE = """
import subprocess, sys, time
stage = subprocess.Popen(["sleep", "600"])  # a stage that has not yet set up its signals
print(stage.pid, flush=True)
time.sleep(600)  # dvc, waiting for it; SIGTERM ends dvc alone
"""
STARTER = """
import subprocess, sys
from wardrobe.processes import tied
print(subprocess.run(tied([sys.executable, "-c", *sys.argv[1:]])).returncode, flush=True)
"""


def test_a_tied_command_ends_with_all_it_started_when_its_starter_dies():
    """A trial's command (`processes.tied`): when the process that ran it dies (a Ray worker on
    a dead node), so does what the command started, even a stage that does not follow its
    parent yet (a stage's Python sets that up after it starts; the parent-death signal alone
    ends only `dvc`, and the stage would train on under an orphaned shell)."""
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, DVC_LIKE], env=stage_env({}), stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    stage = int(starter.stdout.readline())
    try:
        assert processes.alive(stage)
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + EXIT_WITHIN_S
        while processes.alive(stage) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes.alive(stage), "the stage outlived the process that ran its dvc"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stage, signal.SIGKILL)


COMMAND = """
import sys, time
from wardrobe import processes
processes.handle_interrupts()
seen, prints = sys.argv[1], sys.argv[2] == "prints"
try:
    open(seen + ".up", "w").close()
    end = time.monotonic() + 60  # then it gives up by itself
    while time.monotonic() < end:  # a training: its progress lines, or nothing for a while
        if prints:
            print("x" * 100, flush=True)
        else:
            time.sleep(0.1)
    print("finished")
except BaseException as exc:
    with open(seen, "w") as fh:
        fh.write(type(exc).__name__)
"""
TRIAL_STARTER = """
import _thread, os, signal, sys, threading, time
from pathlib import Path
from wardrobe.sweep.trial import _run
command, seen, prints, cancelled = sys.argv[1:]
if cancelled == "cancelled":
    # a Ray worker handles SIGINT whatever it inherited (a suite started with `&` ignores
    # it), and interrupt_main() does nothing where SIGINT is ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def cancel():  # as Ray cancels a running task: interrupt_main() from another thread
        while not Path(seen + ".up").exists():
            time.sleep(0.05)
        _thread.interrupt_main()
    threading.Thread(target=cancel, daemon=True).start()
try:
    _run([sys.executable, "-c", command, seen, prints], Path.cwd(), dict(os.environ), "w")
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def start_trial(seen: Path, prints: bool, cancelled: bool, **popen) -> subprocess.Popen:
    """A trial's `_run` of a command that marks `seen`.up once running and writes to `seen`
    the exception that ended it; the command prints progress lines or nothing, and the
    trial is cancelled as Ray cancels one, or not."""
    return subprocess.Popen(
        [sys.executable, "-c", TRIAL_STARTER, COMMAND, str(seen),
         "prints" if prints else "silent", "cancelled" if cancelled else "running"],
        env=stage_env({}), cwd=seen.parent, start_new_session=True, **popen,
    )  # fmt: skip


def test_a_trials_command_that_loses_its_starter_is_interrupted_not_broken(tmp_path):
    """A dead node's trial: its Ray worker, which reads the command's output, dies while the
    stage prints progress. The stage must see the group's SIGTERM (and end its run KILLED),
    not a BrokenPipeError first (which ends it FAILED): through a pipe, that race went to the
    pipe in 2 of 5 tries; 8 tries."""
    for attempt in range(8):
        seen = tmp_path / f"seen-{attempt}"
        starter = start_trial(seen, prints=True, cancelled=False)
        deadline = time.monotonic() + EXIT_WITHIN_S
        while not Path(f"{seen}.up").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # printing
        starter.kill()
        starter.wait()
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen.exists(), f"try {attempt}: the writer did not end within {EXIT_WITHIN_S} s"
        assert seen.read_text() == "KeyboardInterrupt", f"try {attempt}: {seen.read_text()}"


def test_a_cancelled_trial_stops_its_silent_command(tmp_path):
    """A stopped sweep: Ray raises KeyboardInterrupt in the trial's thread only when that
    thread runs Python. A trial blocked in wait() on a command that prints nothing would
    not hear it until the command ended (a whole training, its run FINISHED); the trial must
    stop it at once, and the command get the SIGTERM that ends its run KILLED."""
    seen = tmp_path / "seen"  # the command gives up by itself after 60 s
    starter = start_trial(seen, prints=False, cancelled=True, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = starter.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        out = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(starter.pid, signal.SIGKILL)
        starter.wait()
    assert out is not None, f"the cancelled trial did not stop its command in {EXIT_WITHIN_S} s"
    assert out.split() == ["interrupted"] and seen.read_text() == "KeyboardInterrupt"


def test_a_tied_command_gives_its_exit_status_and_its_output():
    done = subprocess.run(
        [sys.executable, "-c", STARTER, "print('out'); raise SystemExit(3)"],
        env=stage_env({}), capture_output=True, text=True, timeout=EXIT_WITHIN_S,
    )  # fmt: skip
    assert done.stdout.split() == ["out", "3"], done.stderr
    killed = subprocess.run(
        [sys.executable, "-c", STARTER, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        env=stage_env({}), capture_output=True, text=True, timeout=EXIT_WITHIN_S,
    )  # fmt: skip
    assert killed.stdout.split() == [str(128 + signal.SIGKILL)], killed.stderr


@pytest.mark.slow
def test_sigterm_to_dvc_repro_stops_the_training_and_dvc_checkout_restores(retrained_copy):
    """A cancelled CI job: SIGTERM to the `dvc` process only, during a training that DVC runs
    through /bin/sh. The stage stops, publishes nothing, and `dvc checkout` restores what
    dvc.lock records, without --force."""
    repo = retrained_copy
    status_before = dvc(repo, "status").stdout
    params = (repo / "params.yaml").read_text()
    write_params(repo, repo / "params.yaml", vae={"epochs": 1000})
    dvc_run = subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro", "train_vae"], cwd=repo,
        env=repo_env(repo, {"SHELL": "/bin/sh"}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    stage = Stage.following(dvc_run)
    stage.wait_for("Epoch 2/")
    dvc_run.terminate()
    stage.wait_closed()
    assert dvc_run.wait() != 0
    assert stage.lines[-1] == (
        "train_vae: interrupted; its outputs were not written; `dvc checkout train_vae` "
        "restores the ones dvc.lock records\n"
    ), stage.output
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and running_in(pid, repo)]
    client = client_for(repo)
    [last] = client.search_runs(
        [client.get_experiment_by_name("wardrobe").experiment_id],
        "attributes.run_name = 'vae'", order_by=["attributes.start_time DESC"], max_results=1,
    )  # fmt: skip
    assert last.info.status == "KILLED"
    assert leftovers(repo / "models") == []

    (repo / "params.yaml").write_text(params)
    restored = dvc(repo, "checkout", "train_vae")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert dvc(repo, "status").stdout == status_before


@pytest.mark.slow
def test_a_failed_evaluate_or_plots_leaves_the_reports_as_they_were(retrained_copy):
    """A corrupt VAE file: `dvc repro -s evaluate@vae` fails with one line, then `dvc repro -s
    plots@vae` does. The reports git holds (metrics.json, class_shares.json), the evaluation
    runs and the AE's evaluation and figures are byte for byte what they were; the VAE's
    evaluation and figures, which DVC removes before their stages run (they are not
    persistent, so that its run cache restores them), `dvc checkout` brings back."""
    repo = retrained_copy
    reports = repo / "reports"
    kept = [reports / n for n in ("metrics.json", "class_shares.json", "evaluation_runs.json")]
    kept += [reports / "evaluation" / "ae.json", *sorted((reports / "figures" / "ae").iterdir())]
    vae = [reports / "evaluation" / "vae.json", *sorted((reports / "figures" / "vae").iterdir())]
    before = {path: path.read_bytes() for path in kept + vae}
    model = repo / "models" / "vae" / "vae.keras"
    model.unlink()  # a new file: the DVC cache's copy stays as it is
    model.write_bytes(b"not a Keras file")
    for stage in ("evaluate@vae", "plots@vae"):
        if stage == "plots@vae":  # the evaluation it reads back, so that the model is the fault
            assert dvc(repo, "checkout", "reports/evaluation/vae.json").returncode == 0
        failed = dvc(repo, "repro", "-s", stage)
        assert failed.returncode != 0, failed.stdout
        prefix = stage.split("@")[0]
        errors = [line for line in failed.stderr.splitlines() if f"{prefix}: error:" in line]
        assert len(errors) == 1 and str(model.relative_to(repo)) in errors[0], failed.stderr
        assert {path: path.read_bytes() for path in kept} == {p: before[p] for p in kept}, stage
    restored = dvc(repo, "checkout", "--force")
    assert restored.returncode == 0, restored.stderr
    assert {path: path.read_bytes() for path in kept + vae} == before
    assert dvc(repo, "status", "--json").stdout.strip() == "{}"


def processes_of(repo: Path, needle: str) -> list[int]:
    """The pids whose command line holds `needle` and that run in `repo` or below it."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if needle in cmdline and cwd.startswith(str(repo)):
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_killed_queue_worker_is_named_by_make_queue_and_the_printed_recovery_works(
    retrained_copy,
):
    """SIGKILL to the `dvc queue` worker while its experiment trains: the experiment stays
    "Running" with no worker and never lands. `make queue` says so in one line; the commands
    it prints bring the experiment back, its finished training restored by the run cache."""
    repo = retrained_copy

    def queue(*args: str) -> subprocess.CompletedProcess:
        return dvc(repo, "queue", *args)

    def start_worker() -> None:  # its worker keeps the output it inherits: none to wait on
        started = subprocess.run(
            [str(VENV_BIN / "dvc"), "queue", "start", "-j", "1"], cwd=repo, env=repo_env(repo),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        assert started.returncode == 0

    def settled() -> str:
        deadline = time.monotonic() + 600
        while "Queued" in (status := queue("status").stdout) or "Running" in status:
            assert time.monotonic() < deadline, status
            time.sleep(2)
        return status

    def make_queue() -> subprocess.CompletedProcess:
        return subprocess.run(
            [*MAKE_IN_COPY, "queue"],
            cwd=repo, env=repo_env(repo), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    setting = ("-n", "lost", "-S", "vae.epochs=3")
    try:
        assert dvc(repo, "exp", "run", "--queue", *setting).returncode == 0
        start_worker()
        deadline = time.monotonic() + 300
        while not processes_of(repo / ".dvc" / "tmp" / "exps", "pipeline/train_vae.py"):
            assert time.monotonic() < deadline, queue("status").stdout
            time.sleep(0.5)
        [worker] = processes_of(repo, "exp queue-worker")
        os.kill(worker, signal.SIGKILL)
        while processes_of(repo, "exp exec-run"):  # its training goes on, and ends
            assert time.monotonic() < deadline
            time.sleep(1)
        status = queue("status").stdout
        assert "Running" in status and "0 active" in status, status

        lost = make_queue()
        assert lost.returncode != 0
        [line] = [ln for ln in lost.stderr.splitlines() if not ln.startswith("make")]
        assert line.startswith("queue: error: experiment lost shows Running but no queue "
                               "worker runs (a worker was killed)"), line  # fmt: skip
        for step in ("`dvc queue kill lost`", "`dvc queue remove lost`", "`dvc queue start`"):
            assert step in line, line
        assert "lost" not in dvc(repo, "exp", "list").stdout

        assert queue("kill", "lost").returncode == 0  # the recovery the line prints
        assert queue("remove", "lost").returncode == 0
        assert dvc(repo, "exp", "run", "--queue", *setting).returncode == 0
        start_worker()
        assert "Success" in settled()
        logs = queue("logs", "lost").stdout
        assert "Stage 'train_vae' is cached - skipping run" in logs, logs
        assert "lost" in dvc(repo, "exp", "list").stdout
        again = make_queue()
        assert again.returncode == 0 and "Worker status" in again.stdout, again.stderr
    finally:
        queue("stop", "--kill")


def running_in(pid: str, repo: Path) -> bool:
    """Whether process `pid` runs a pipeline script of `repo`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return "pipeline/" in cmdline and cwd.startswith(str(repo))


# The tracking store's faults. The stage runs in a new process: MLflow caches its database
# engines per URI.


@pytest.fixture
def mount(tmp_path) -> Iterator[callable]:
    """mount(size): a tmpfs of `size` at a new directory (needs root, or skips)."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", point],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(
                f"a read-only or full disk is made with a tmpfs mount, which failed: "
                f"{done.stderr.strip()}"
            )
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", point], check=False)


def new_store(path: Path) -> str:
    """An MLflow store at path, its schema created (by another process)."""
    uri = f"sqlite:///{path}"
    code = "import mlflow, sys; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", code, uri], check=True, env=stage_env())
    return uri


def assert_store_fault(project: Path, uri: str, cause: str, fix: str) -> None:
    """The training refuses the store before any work, with the message its stage prints
    after `train_ae: error: ` (test_a_corrupt_store_… runs the stage itself)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(TrackingError) as refused:
            train(project, "ae")
    line = str(refused.value)
    assert f"tracking store {uri} {cause}" in line and fix in line, line
    assert "\n" not in line and "mlflow.store" not in line, line
    assert not (project / "models").exists() or leftovers(project / "models") == []
    assert not (project / "models" / "ae").exists()


def test_a_corrupt_store_is_named_with_the_fix(project):
    """The stage as DVC runs it: one line, exit 1, nothing written."""
    (project / "broken.db").write_bytes(b"this is not an SQLite database" * 100)
    uri = f"sqlite:///{project / 'broken.db'}"
    cause, fix = "is corrupt (file is not a database)", "move it aside"
    result = run_script(project, "train_ae", *TRAIN_AE, env={"MLFLOW_TRACKING_URI": uri})
    line = assert_one_line_error(result, "train_ae", f"tracking store {uri} {cause}", fix)
    assert "mlflow.store" not in result.stderr and len(result.stderr.splitlines()) < 8, line
    assert not (project / "models").exists() or leftovers(project / "models") == []
    assert_store_fault(project, uri, cause, fix)  # and the same message in-process


def test_a_locked_store_is_named_with_the_fix(project):
    uri = new_store(project / "locked.db")
    holder = sqlite3.connect(project / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert_store_fault(project, uri, "is locked by another process", "tracking server")
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(
    "fault, cause, fix",
    [
        ("read-only", "is read-only", "make the database file and its directory writable"),
        ("full", "is on a full disk", "free disk space"),
    ],
)
def test_a_read_only_or_full_store_is_named_with_the_fix(project, mount, fault, cause, fix):
    where = mount("2m")
    uri = new_store(where / "mlflow.db")
    if fault == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", where], check=True)
    else:
        with open(where / "filler", "wb") as fh, pytest.raises(OSError):
            fh.write(b"\0" * 4_000_000)
    assert_store_fault(project, uri, cause, fix)


@pytest.mark.parametrize("model", ["ae", "vae", "classifier"])
def test_a_batch_larger_than_the_free_memory_is_one_line_and_the_size_it_names_trains(
    project, model
):
    """Each training stage with one batch of 5,000 images in a container-like memory limit of
    2 GiB (TensorFlow would fail to allocate, then segfault): one line naming its batch size
    and about how many fit, exit 1, no run, nothing written. Then the stage again in the same
    limit with the batch size that line named: it trains."""
    rng = np.random.default_rng(0)
    images = rng.random((5000, 32, 32, 1), dtype=np.float32)
    save_split(project / "data" / "train.npz", images, np.arange(5000, dtype=np.uint8) % 10)
    write_verdict(project / "checks" / "summary.json", project / "data")
    param = f"{model}.batch_size"
    args = ("--data", "data", "--checks", "checks/summary.json", "--out", f"models/{model}")

    def train_in(limit: int, batch_size: int) -> subprocess.CompletedProcess:
        write_params(project, project / "params.yaml", **{model: {"batch_size": batch_size}})
        with memory_cgroup(limit) as procs:
            return subprocess.run(
                [sys.executable, str(ROOT / "pipeline" / f"train_{model}.py"), *args],
                cwd=project, capture_output=True, text=True, timeout=600, env=stage_env(),
                preexec_fn=lambda: procs.write_text(str(os.getpid())),
            )  # fmt: skip

    limit = 2 * 2**30
    refused = train_in(limit, 5000)
    line = assert_one_line_error(
        refused, f"train_{model}", f"out of memory: one batch of 5000 images ({param}) needs",
        f"GiB is free; lower {param} (about", "fits here) or free memory",
    )  # fmt: skip
    print(line)
    assert not (project / "models").exists()
    assert not (project / "mlflow.db").exists() or statuses(project) == []

    fits = int(re.search(r"\(about (\d+) fits here\)", line).group(1))
    assert 100 <= fits < 5000, line  # a batch that trains, smaller than the refused one
    trained = train_in(limit, fits)
    assert trained.returncode == 0, (fits, trained.stderr[-3000:])
    assert (project / "models" / model).is_dir()
    assert statuses(project) == ["FINISHED"]


# Data the checks did not pass, and exceptions nobody expected.


def test_training_refuses_data_changed_after_the_checks(project):
    images = np.load(project / "data" / "train.npz")["images"] * 255  # unscaled pixels
    save_split(project / "data" / "train.npz", images, np.arange(200, dtype=np.uint8) % 10)
    result = run_script(project, "train_ae", *TRAIN_AE)
    assert_one_line_error(
        result,
        "train_ae",
        "data is not the data the checks passed (DVC hash",
        "dvc repro validate",
    )
    assert not (project / "models").exists() and not (project / "mlflow.db").exists()


def test_an_unexpected_exception_is_one_line_with_its_traceback_saved(project):
    """28x28 images (checked by a verdict written for them) reach Keras, which refuses them."""
    for split, n in (("train", 200), ("test", 100)):
        images = np.zeros((n, 28, 28, 1), np.float32)
        save_split(project / "data" / f"{split}.npz", images, np.arange(n, dtype=np.uint8) % 10)
    write_verdict(project / "checks" / "summary.json", project / "data")
    result = run_script(project, "train_ae", *TRAIN_AE)
    line = assert_one_line_error(result, "train_ae", "unexpected ValueError: ", "(traceback in ")
    saved = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert "Traceback (most recent call last)" in saved.read_text()
    saved.unlink()
    assert statuses(project) == ["FAILED"]
    assert not (project / "models" / "ae").exists()


@pytest.mark.parametrize(
    "raised, needles",
    [
        ("MemoryError()", ("out of memory", "lower the batch sizes")),
        ("__import__('tensorflow').errors.ResourceExhaustedError(None, None, 'OOM when "
         "allocating tensor with shape[60000,32,32,32]')", ("out of memory", "lower the batch")),
        ("OSError(28, 'No space left on device', 'models/x')",
         ("cannot use models/x (No space left on device); free disk space",)),
        ("OSError(13, 'Permission denied', 'data')",
         ("cannot use data (Permission denied); make the path writable",)),
        ("OSError('first line\\nsecond line')", ("cannot use a file (first line); check",)),
        ("RuntimeError('boom\\nsecond line')", ("unexpected RuntimeError: boom (traceback",)),
    ],
    ids=["MemoryError", "ResourceExhausted", "disk-full", "permission", "OSError-two-lines",
         "RuntimeError"],
)  # fmt: skip
def test_the_stage_runner_gives_one_line_for_any_exception(tmp_path, raised, needles):
    code = (
        "from wardrobe.cli import run_stage\n"
        f"def main(argv):\n    raise {raised}\n"
        "run_stage('stage', main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env=stage_env(), timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, "stage", *needles)


def test_an_error_that_an_interrupt_caused_is_reported_as_the_interrupt(tmp_path):
    """C code that a signal's KeyboardInterrupt cuts short may raise another error instead
    (TensorFlow: a SystemError, a ValueError): the stage was still interrupted."""
    code = (
        "import os, signal, time\n"
        "from wardrobe.cli import run_stage\n"
        "def main(argv):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    raise SystemError('bad argument to internal function')\n"
        "run_stage('stage', main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env=stage_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 130, result.stderr
    assert (
        result.stderr.splitlines()[-1] == "stage: interrupted; its outputs were left as they were"
    )


def test_an_output_path_that_cannot_be_made_is_one_line(project):
    (project / "blocked").write_text("a file where a directory should be")
    args = (*TRAIN_AE[:-1], "blocked/ae")
    result = run_script(project, "train_ae", *args)
    assert_one_line_error(result, "train_ae", "cannot use ", "blocked")
    assert (project / "blocked").read_text() == "a file where a directory should be"


def test_a_read_only_output_directory_is_one_line(project, mount):
    where = mount("1m")
    subprocess.run(["mount", "-o", "remount,ro", where], check=True)
    result = run_script(project, "train_ae", *TRAIN_AE[:-1], str(where / "ae"))
    assert_one_line_error(result, "train_ae", f"cannot use {where}", "make the path writable")
