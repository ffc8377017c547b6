"""`make ui` (python -m wardrobe.ui): the MLflow UI over the project's own tracking store
(mlflow.db), on 127.0.0.1, after the one line with the link to the training runs. A port that
is taken stops it with one line naming the port and UI_PORT.

It answers only its own names, 127.0.0.1:PORT and localhost:PORT: a page whose name resolves to
127.0.0.1 (DNS rebinding) gets 403, and so does a write from another origin (MLflow's own
security middleware, given the exact names: its default allows any name that starts like a
private address).

It starts no job runner: MLflow's server runs its GenAI jobs (scorers, prompt optimisation,
trace rollups), which the project has none of, in eight more Python processes, about 30
CPU-seconds at each start (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true starts them)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from wardrobe.errors import WardrobeError
from wardrobe.fsio import project_root
from wardrobe.ownnames import names
from wardrobe.ports import require_free_port
from wardrobe.processes import environment_tool
from wardrobe.tracking.store import DEFAULT_EXPERIMENT, default_tracking_uri

DEFAULT_PORT = 5000
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def ui_link(port: int, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """The MLflow UI's page of the experiment's training runs, on the project's own store.
    MLflow 3.17's UI opens an experiment on its GenAI overview (traces, token usage) unless
    the link names the workflow type, `machine_learning` ("Model training"); the experiment
    tag it reads too (`mlflow.experimentKind`) decides only where no workflow type is set."""
    import sqlite3

    root = project_root()
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{root / 'mlflow.db'}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT experiment_id FROM experiments WHERE name = ?", (experiment,)
            ).fetchone()
    except sqlite3.Error:
        found = None
    page = f"experiments/{found[0]}/runs" if found else "experiments"
    return f"http://127.0.0.1:{port}/#/{page}?workflowType=machine_learning"


def own_names(port: int) -> list[str]:
    """The MLflow server's options that make it answer only 127.0.0.1:PORT and localhost:PORT
    and refuse writes from any other origin."""
    hosts = names(port)
    origins = [f"http://{host}" for host in hosts]
    return ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(origins)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wardrobe.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        require_free_port(args.port, "the MLflow UI", "UI_PORT")
    except WardrobeError as exc:
        print(f"ui: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"ui: the training runs: {ui_link(args.port)}", flush=True)
    mlflow = environment_tool("mlflow")
    os.environ.setdefault(JOB_EXECUTION, "false")
    command = [mlflow, "ui", "--backend-store-uri", default_tracking_uri(),
               "--host", "127.0.0.1", "--port", str(args.port), *own_names(args.port)]  # fmt: skip
    os.execv(mlflow, command)


if __name__ == "__main__":
    main()
