"""A Ray cluster on 127.0.0.1 to run sweeps on: a head and N worker nodes, each its own
processes (`ray start`), with token authentication on every node.

    python tools/cluster.py up [--workers N] [--port P]   # make cluster (WORKERS, CLUSTER_PORT)
    python tools/cluster.py down                         # make cluster-down

State in CLUSTER_DIR (default .cluster/, 0700): the token (0600, generated at the first `up`)
and `env` (0600), which gives a client the cluster: `source .cluster/env` sets RAY_ADDRESS,
RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH (the token travels by its path, never on a command line
or in an environment). The head runs no tasks (0 CPUs) and no dashboard; each worker node
offers one CPU. `down` stops exactly this cluster's processes: those its `ray start` commands
started, marked by WARDROBE_CLUSTER_NODE (this state directory) in their environment, and
what those started. Not other Ray processes on the machine, and not its clients, which hold
the token's path too (a shell that sourced `.cluster/env`, the `make cluster-down` it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from wardrobe.errors import WardrobeError  # noqa: E402
from wardrobe.fsio import write_secret  # noqa: E402
from wardrobe.ports import require_free_port  # noqa: E402
from wardrobe.processes import alive, environment_tool, start_time  # noqa: E402

START_TIMEOUT_S = 60
NODE_MARK = "WARDROBE_CLUSTER_NODE"  # in the environment of the nodes' processes only


def fail(line: str) -> None:
    print(f"cluster: error: {line}", file=sys.stderr)
    sys.exit(1)


def say(line: str) -> None:
    print(f"cluster: {line}", file=sys.stderr, flush=True)


def state_dir() -> Path:
    path = Path(os.environ.get("CLUSTER_DIR") or ROOT / ".cluster").resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def token_path(state: Path) -> Path:
    path = state / "token"
    if write_secret(path):
        say(f"generated the cluster's token into {path}")
    return path


def ray_env(token: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1"}  # fmt: skip


def ours(state: Path) -> dict[int, str | None]:
    """This cluster's processes, as pid -> start time: those whose environment carries its
    node mark (what its `ray start` commands started, and what those start in turn), and
    their descendants. A Ray worker or agent renames itself (setproctitle), which can
    overwrite what /proc shows of its environment, mark included: it is found as a child of
    its raylet."""
    marker = f"{NODE_MARK}={state}".encode()
    marked, children = set(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry))
        if marker in environ:
            marked.add(int(entry))
    found, todo = set(), list(marked)
    while todo:
        pid = todo.pop()
        if pid not in found and pid != os.getpid():
            found.add(pid)
            todo.extend(children.get(pid, []))
    return {pid: start_time(pid) for pid in found}


def alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes the head counts alive (asked from a fresh process: ray.init once)."""
    probe = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else 0


def start(args: list[str], env: dict[str, str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run([environment_tool("ray"), "start", *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    if done.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        fail(f"{what} did not start (see {log}): {lines[-1] if lines else done.returncode}")


def up(workers: int, port: int) -> None:
    state = state_dir()
    token = token_path(state)
    env = ray_env(token)
    address = f"127.0.0.1:{port}"
    if ours(state):
        say(f"already running at {address}; make cluster-down stops it")
        return
    try:
        require_free_port(port, "the Ray head", "CLUSTER_PORT")
    except WardrobeError as exc:
        fail(str(exc))
    temp = Path(tempfile.mkdtemp(prefix="wardrobe-cluster-"))  # short: socket paths are bounded
    (state / "temp-dir").write_text(str(temp))
    log = state / "cluster.log"
    common = ["--temp-dir", str(temp), "--disable-usage-stats"]
    nodes = {**env, NODE_MARK: str(state)}  # what `down` stops: the nodes, not their clients
    start(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
           "--include-dashboard=false", *common], nodes, "the Ray head", log)  # fmt: skip
    for i in range(workers):
        start([f"--address={address}", "--num-cpus=1", *common], nodes, f"worker node {i + 1}",
              log)  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while alive_nodes(address, env) < workers + 1:
        if time.monotonic() > deadline:
            fail(f"the cluster has fewer than {workers + 1} nodes after {START_TIMEOUT_S} s "
                 f"(see {log})")  # fmt: skip
        time.sleep(1)
    envfile = state / "env"
    fd = os.open(envfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"export RAY_ADDRESS={address}\nexport RAY_AUTH_MODE=token\n"
                  f"export RAY_AUTH_TOKEN_PATH={token}\n")  # fmt: skip
    say(f"a head and {workers} worker nodes at {address}; source {envfile} to use it")


def down() -> None:
    state = state_dir()
    known = ours(state)  # once a raylet is gone, its children are no longer found as such

    def running() -> list[int]:
        known.update(ours(state))
        return sorted(pid for pid, started in known.items() if alive(pid, started))

    pids = running()
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while (pids := running()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids:
            break
    temp = state / "temp-dir"
    if temp.exists():
        shutil.rmtree(temp.read_text().strip(), ignore_errors=True)
        temp.unlink()
    (state / "env").unlink(missing_ok=True)
    say("stopped" if not pids else f"could not stop {pids}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="tools/cluster.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("up")
    start_cmd.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 2)))
    start_cmd.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT", 6390)))
    commands.add_parser("down")
    args = parser.parse_args()
    if args.command == "up":
        if args.workers < 1:
            parser.error(f"--workers must be at least 1, got {args.workers}")
        up(args.workers, args.port)
    else:
        down()


if __name__ == "__main__":
    main()
