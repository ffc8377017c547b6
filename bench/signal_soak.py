"""Signal soak: does every training stage stop after one SIGTERM or SIGINT, whenever it comes?

Each trial starts the real `train_ae` stage on a tiny project (its own directory, git
repository and SQLite store), sends one signal at a random moment of the training, and counts
the stage as *lost* when it has not exited within 30 s (it is then killed). The moment is,
every other trial, a random 0 to 4 s after the first epoch began, or a random 0 to 0.2 s after
epoch 2 to 5 began (where the previous epoch's dataset iterator and TensorFlow functions are
freed: their finalizers run Python code that a signal's handler can interrupt). Trials also
alternate:
  by hand    `python pipeline/train_ae.py …`, the signal sent to the stage;
  under DVC  `dvc repro train_ae` in a DVC project whose stage runs the same script, the signal
             sent to the stage (SIGTERM: a stopped job) or to the whole process group (SIGINT:
             Ctrl-C in the terminal, which reaches `dvc` and the stage together);
and SIGTERM / SIGINT. The first half of the trials runs on a quiet machine, the second half
beside one busy-looping process per core (`--load` sets how many), which shifts when Python
gets to run a signal's handler.

    python bench/signal_soak.py                   # 25 quiet + 25 loaded trials
    python bench/signal_soak.py --trials 10 --json soak.json

The count of lost stages must be 0. It prints one line per trial and a summary; `--json`
writes the trials too.

A lost signal is rare at the stage's scale (the moment must fall in a finalizer), so
`--in-process N` also measures the mechanism itself, N times quiet and N times loaded: one
process installs the stages' handling (`processes.handle_interrupts`), trains a tiny AE with
the pipeline's loop while a callback frees a traced TensorFlow function after every batch (so
that TensorFlow's finalizer of functions, `ConcreteFunctionGarbageCollector.__del__`, where a
lost interrupt was seen, runs often, as it does when Keras retraces), sends itself SIGTERM at
a random moment 0 to 1 s into training, and counts the interrupts that never reached the
training loop within 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from wardrobe.checks.verdict import CHECKED_KEY
from wardrobe.dataset import data_digest, save_split

ROOT = Path(__file__).resolve().parents[1]
EXIT_WITHIN_S = 30
STAGE_ARGS = ["--data", "data", "--checks", "checks/summary.json", "--out", "models/ae"]


def make_project(path: Path) -> Path:
    """A tiny project: 20 train / 10 test images, passed checks, an AE that trains for
    minutes in epochs of two batches (so that epoch boundaries, where TensorFlow's finalizers
    run, take much of the time), a git repository, a one-stage dvc.yaml and an MLflow store
    with its schema."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["ae"].update(epochs=1000, batch_size=10)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        images = np.zeros((n, 32, 32, 1), np.float32)
        images[:, 2:30, 2:30] = rng.random((n, 28, 28, 1), dtype=np.float32) ** 3
        save_split(path / "data" / f"{split}.npz", images, np.arange(n, dtype=np.uint8) % 10)
    (path / "checks").mkdir()
    verdict = {"success": True, CHECKED_KEY: data_digest(path / "data")}
    (path / "checks" / "summary.json").write_text(json.dumps(verdict))
    script = ROOT / "pipeline" / "train_ae.py"
    stage = {"cmd": f"{sys.executable} {script} {' '.join(STAGE_ARGS)}", "deps": ["data"]}
    stage["outs"] = ["models/ae"]
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train_ae": stage}}))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for command in (["git", "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-qm", "x"]):
        subprocess.run(command, cwd=path, check=True, capture_output=True)
    subprocess.run(["dvc", "init", "-q"], cwd=path, check=True, env=environment())
    store = f"from wardrobe.tracking.store import check_store; check_store('sqlite:///{path}/mlflow.db')"
    subprocess.run([sys.executable, "-c", store], cwd=path, check=True, env=environment())
    return path


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def stage_pid(launcher: subprocess.Popen) -> int | None:
    """The training's pid: the launcher itself, or (under DVC) the descendant running the
    stage script."""
    pending, script = [launcher.pid], "pipeline/train_ae.py"
    while pending:
        pid = pending.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        if any(part.decode(errors="replace").endswith(script) for part in cmdline):
            return pid
        pending.extend(int(c) for c in children)
    return None


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def trial(work: Path, index: int, dvc: bool, sig: signal.Signals, rng: random.Random) -> dict:
    project = work / f"trial{index}"
    shutil.copytree(work / "template", project, symlinks=True)
    if dvc:
        command = [str(Path(sys.executable).parent / "dvc"), "repro", "train_ae"]
    else:
        command = [sys.executable, str(ROOT / "pipeline" / "train_ae.py"), *STAGE_ARGS]
    launcher = subprocess.Popen(
        command, cwd=project, env=environment(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(launcher.stdout), daemon=True)
    reader.start()
    at_epoch_start = index % 4 >= 2
    epoch = rng.randint(2, 5) if at_epoch_start else 1
    deadline = time.monotonic() + 300
    while not any(line.startswith(f"Epoch {epoch}/") for line in lines):
        if launcher.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the stage did not start training:\n" + "".join(lines))
        time.sleep(0.01)
    delay = rng.uniform(0, 0.2) if at_epoch_start else rng.uniform(0, 4)
    time.sleep(delay)
    pid = stage_pid(launcher)
    sent = time.monotonic()
    if dvc and sig == signal.SIGINT:
        os.killpg(launcher.pid, sig)  # Ctrl-C: dvc and the stage together
    else:
        os.kill(pid, sig)
    while running(pid) and time.monotonic() - sent < EXIT_WITHIN_S:
        time.sleep(0.05)
    exited = not running(pid)
    seconds = time.monotonic() - sent
    if not exited:
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    reader.join(timeout=5)
    output = "".join(lines)
    result = {
        "trial": index, "mode": "dvc" if dvc else "by hand", "signal": sig.name,
        "epoch": epoch, "delay_s": round(delay, 3), "exited": exited, "exit_s": round(seconds, 2),
        "returncode": launcher.returncode,
        "interrupted_line": "train_ae: interrupted" in output,
        "exception_ignored": output.count("Exception ignored"),
    }  # fmt: skip
    if not exited:
        result["output_tail"] = output[-2000:]
    shutil.rmtree(project, ignore_errors=True)
    return result


def in_process(trials: int, rng: random.Random) -> dict[str, int]:
    """Interrupts sent in this process: how many reached the training loop, how many were
    lost, and how many became another exception (a stage reports those as interrupted too:
    `processes.interrupted()`)."""
    import keras
    import tensorflow as tf

    from wardrobe import processes
    from wardrobe.models.autoencoder import build_autoencoder
    from wardrobe.training.loop import fit

    processes.handle_interrupts()
    images = np.random.default_rng(0).random((20, 32, 32, 1), dtype=np.float32)
    counts = {"interrupted": 0, "lost": 0, "other": 0}

    class SignalAmidFinalizers(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.sent = 0.0

        def on_train_begin(self, logs: object = None) -> None:
            self.sent = time.monotonic() + (delay := rng.uniform(0, 1))
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            traced = tf.function(lambda x: x + 1)
            traced(tf.constant(1.0))
            del traced  # its concrete function's finalizer runs Python code
            if time.monotonic() - self.sent > 5:
                self.model.stop_training = True  # the interrupt never came

    for _ in range(trials):
        autoencoder, _, _ = build_autoencoder(2, (8, 8, 8))
        autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
        try:
            fit(autoencoder, (images, None), (images[:10], None), epochs=1000, batch_size=10,
                seed=0, target="images", callbacks=[SignalAmidFinalizers()],
                verbose=0)  # fmt: skip
            counts["lost"] += 1
        except KeyboardInterrupt:
            counts["interrupted"] += 1
        except Exception:  # C code that the interrupt cut short raised instead
            counts["other"] += 1
        processes.interrupt_reached()  # as the stage's runner says it, ending the repeats
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(0.1)  # a repeat sent as this trial's interrupt arrived lands here
    return counts


def burn(stop: multiprocessing.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i * i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25, help="trials quiet, then as many loaded")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the trials here")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="also N interrupts in this process, quiet and loaded")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    mechanism = {}
    with tempfile.TemporaryDirectory(prefix="wardrobe-soak-") as work:
        (Path(work) / "template").mkdir()
        make_project(Path(work) / "template")
        for phase in ("quiet", "loaded"):
            stop = multiprocessing.Event()
            burners = [
                multiprocessing.Process(target=burn, args=(stop,), daemon=True)
                for _ in range(args.load if phase == "loaded" else 0)
            ]
            for burner in burners:
                burner.start()
            try:
                if args.in_process:
                    mechanism[phase] = in_process(args.in_process, rng)
                    print(f"in process, {phase}: {mechanism[phase]}", flush=True)
                for _ in range(args.trials):
                    n = len(results)
                    sig = (signal.SIGTERM, signal.SIGINT)[(n // 4) % 2]
                    result = {"phase": phase, **trial(Path(work), n, n % 2 == 1, sig, rng)}
                    results.append(result)
                    print(json.dumps({k: v for k, v in result.items() if k != "output_tail"}),
                          flush=True)  # fmt: skip
            finally:
                stop.set()
                for burner in burners:
                    burner.join()
    lost = [r for r in results if not r["exited"]]
    lost_in_process = sum(m["lost"] for m in mechanism.values())
    if mechanism:
        print(f"in process: {lost_in_process} of {2 * args.in_process} interrupts lost")
    print(
        f"signal soak: {len(lost)} of {len(results)} stages did not exit within "
        f"{EXIT_WITHIN_S} s of their signal ({sum(r['phase'] == 'quiet' for r in lost)} quiet, "
        f"{sum(r['phase'] == 'loaded' for r in lost)} under load); slowest exit "
        f"{max((r['exit_s'] for r in results if r['exited']), default=0):.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"in_process": mechanism, "trials": results}, indent=2))
    sys.exit(1 if lost or lost_in_process else 0)


if __name__ == "__main__":
    main()
