"""Serving under a burst: how much memory does the model server take, and does SIGTERM stop it?

Starts each server on a free port of 127.0.0.1 over the champion of a project's tracking store
(after `make repro`, a commit of dvc.lock and `make promote`), side by side in one run:
  mlflow     `mlflow models serve --env-manager local`, as `make serve` ran it before;
  wardrobe   `python -m wardrobe.serve` (`make serve` now: MLflow's scoring server behind the
             guard of wardrobe.serve: its limits, its own names, two predictions at once).
For each: the memory of its processes (RSS, summed over the process tree, sampled every 0.1 s)
idle, then under a burst: one request of 100,000 latent vectors (4.3 MB of JSON), then 50
requests of 200 vectors from 10 threads at once; then SIGTERM to the server's process, and
the seconds until it exits (killed after 30 s). Every loop is bounded in count and time, and a
server whose memory passes 60% of the machine's is killed (the figures say so).

    python bench/serve_memory.py --project /path/to/promoted/project --model vae
    python bench/serve_memory.py --project … --servers wardrobe     # one of them
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

BIG = 100_000
SMALL, REQUESTS, THREADS = 200, 50, 10
MIB = 2**20
CAP_SHARE = 0.6  # of the machine's memory: a server past it is killed, and the run says so


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return 0


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # no answer (timed out, connection reset)


def measure(command: list[str], project: Path, port: int) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",  # mlflow runs uvicorn:
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    server = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve_memory: {command[:4]} did not start") from None
                time.sleep(0.5)
        time.sleep(2)
        idle = tree_rss(server.pid)
        peak, sampling, capped = idle, True, False
        cap = psutil.virtual_memory().total * CAP_SHARE

        def sample() -> None:
            nonlocal peak, capped
            while sampling:
                peak = max(peak, tree_rss(server.pid))
                if peak > cap and not capped:  # stop it before it takes the machine
                    capped = True
                    os.killpg(server.pid, signal.SIGKILL)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rng = __import__("random").Random(0)
        big = json.dumps({"inputs": [[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(BIG)]})
        small = json.dumps({"inputs": [[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(SMALL)]})
        start = time.monotonic()
        big_status = post(f"{url}/invocations", big.encode())
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            statuses = list(pool.map(lambda _: post(f"{url}/invocations", small.encode()),
                                     range(REQUESTS)))  # fmt: skip
        burst_s = time.monotonic() - start
        after = tree_rss(server.pid)
        sampling = False
        sampler.join()
        term = time.monotonic()
        stopped_s = None
        if not capped:
            os.kill(server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
                stopped_s = round(time.monotonic() - term, 1)
        return {
            "idle MiB": round(idle / MIB), "peak MiB": round(peak / MIB),
            "after MiB": round(after / MIB), "burst s": round(burst_s, 1),
            "big request": big_status,
            "small requests": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "SIGTERM -> exit s": stopped_s,
            "killed at the memory cap": capped,
        }  # fmt: skip
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="a promoted project")
    parser.add_argument("--model", choices=("ae", "vae"), default="vae")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=("mlflow", "wardrobe"),
        default=["mlflow", "wardrobe"],
        help="which to measure, in this order",
    )
    args = parser.parse_args()
    project = args.project.resolve()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    model = f"models:/wardrobe-{args.model}-decoder@champion"
    results = {}
    for name in args.servers:
        port = free_port()
        command = (
            [mlflow, "models", "serve", "-m", model, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)]
            if name == "mlflow"
            else [sys.executable, "-m", "wardrobe.serve", "--model", args.model,
                  "--port", str(port)]
        )  # fmt: skip
        results[name] = measure(command, project, port)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
