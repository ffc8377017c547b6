"""MLflow runs: a training's run (its params, tags and datasets) that always ends with the
right status, and logging later results (figures) into a run that a stage recorded."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wardrobe import processes
from wardrobe.errors import first_line
from wardrobe.tracking.datasets import TRAINING_CONTEXTS, log_datasets, split_datasets
from wardrobe.tracking.store import configure, store_errors, tracking_uri

log = logging.getLogger(__name__)

PROCESS_TAG = "wardrobe.process"  # <host>:<pid>:<start time> of the process running the run


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"ae": {"filters": (32, 64)}} -> {"ae.filters": "[32, 64]"}: MLflow params and metrics
    are flat, and a list is one value."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path.cwd(), capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


SWEEP_VARIABLE = "WARDROBE_SWEEP"  # set by wardrobe.sweep for the stages of its trials
SWEEP_TAG = "sweep"


def run_tags(data_digest: str) -> dict[str, str]:
    """Git commit and dirtiness of the stage's work tree, the DVC experiment, DVC's hash of
    the data it read, and the process that runs it (so a run it leaves RUNNING when killed
    can be ended)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "processed_data_dvc": data_digest,
        PROCESS_TAG: processes.identity(),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get(SWEEP_VARIABLE):  # a sweep's trial: its point is the experiment's name
        tags[SWEEP_TAG] = os.environ[SWEEP_VARIABLE]
    return tags


def end_abandoned_runs() -> list[str]:
    """End as FAILED the runs of the active experiment that a process of this host left
    RUNNING when it was killed (SIGKILL, a power cut): their `wardrobe.process` tag names a
    process that no longer runs. Returns their ids."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    host = processes.host().replace("'", "")
    with store_errors(uri, "could not list unfinished runs"):
        running = mlflow.search_runs(
            filter_string=(
                f"attributes.status = 'RUNNING' and tags.`{PROCESS_TAG}` LIKE '{host}:%'"
            ),
            output_format="list",
        )
        ended = []
        for run in running:
            if processes.gone(run.data.tags.get(PROCESS_TAG, "")):
                mlflow.MlflowClient().set_terminated(run.info.run_id, "FAILED")
                log.warning(
                    "MLflow run %s (%s) was left RUNNING by a process that no longer runs; "
                    "ended it as FAILED", run.info.run_id, run.info.run_name,
                )  # fmt: skip
                ended.append(run.info.run_id)
    return ended


def end_cut_short(run_id: str, exc: BaseException, end: Callable[[str], object]) -> None:
    """End run `run_id` with `end(status)`: KILLED when `exc` is an interrupt (Ctrl-C,
    SIGTERM, or what C code cut short by one raised), FAILED for any other exception. The
    frames `exc` unwound are cleared first: an interrupt that lands inside a store call, while
    SQLite runs a statement, leaves that statement open in those frames, and its lock makes
    every write (this one too) wait out the busy timeout and fail, leaving the run RUNNING. A
    store that still refuses is logged, not raised: `exc` is the error to report."""
    killed = isinstance(exc, KeyboardInterrupt) or processes.interrupted()
    status = "KILLED" if killed else "FAILED"
    traceback.clear_frames(exc.__traceback__)
    try:
        end(status)
    except Exception as error:
        log.warning("could not end MLflow run %s as %s: %s", run_id, status, first_line(error))


@contextlib.contextmanager
def tracked_run(
    run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[Any]:
    """An MLflow run of the active experiment that ends FINISHED, FAILED (an exception) or
    KILLED (an interrupt), with CPU and memory logged as system metrics; the store's own
    errors, inside the block too, become one-line TrackingErrors."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    with store_errors(uri):
        run = mlflow.start_run(run_name=run_name, tags=dict(tags), log_system_metrics=True)
    try:
        with store_errors(uri):
            mlflow.log_params(flatten(params))
            yield run
    except BaseException as exc:
        end_cut_short(run.info.run_id, exc, mlflow.end_run)
        raise
    with store_errors(uri):
        mlflow.end_run("FINISHED")


@contextlib.contextmanager
def training_run(
    name: str,
    params: BaseModel,
    seed: int,
    data: Mapping[str, tuple[Any, Any]],
    data_dir: str | os.PathLike[str],
    digest: str,
) -> Iterator[Any]:
    """The run of one training, named `name` (`tracked_run`) in the project's store: `params`
    logged under `name.`, the seed and the split sizes, tagged (`run_tags`) with `digest`,
    DVC's hash of data_dir, and the splits logged as its `training` and `validation` inputs.
    Runs that killed trainings left RUNNING are ended first (`end_abandoned_runs`)."""
    import mlflow

    configure()
    end_abandoned_runs()
    logged = {
        "seed": seed,
        name: params.model_dump(),
        "data": {f"{split}_images": len(images) for split, (images, _) in data.items()},
    }
    datasets = split_datasets(data, data_dir, digest)
    with tracked_run(name, logged, run_tags(digest)) as run:
        client = mlflow.MlflowClient()
        log_datasets(client, run.info.run_id, datasets, TRAINING_CONTEXTS)
        yield run


def recorded_run(client: Any, record: Mapping[str, Any]) -> Any | None:
    """The run a record (run.json, or an evaluation's entry) names, from the client's store;
    None, with a warning, when that store does not hold it (models restored from a DVC
    cache that another store's runs made)."""
    from mlflow.exceptions import MlflowException

    uri = client.tracking_uri
    run_id = str(record["run_id"])
    with store_errors(uri):
        try:
            return client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    log.warning(
        "MLflow run %s (%s) is not in %s; its results are written to files only",
        run_id, record.get("run_name", "?"), uri,
    )  # fmt: skip
    return None


def log_to_recorded_run(
    record: Mapping[str, Any], artifacts: str | os.PathLike[str], artifact_path: str
) -> bool:
    """Add a directory of artifacts to the finished run a record names, without changing the
    run's status. The run is looked up in the current store (`tracking_uri()`); when that
    store does not hold it, log a warning and return False."""
    import mlflow

    uri = tracking_uri()  # the callers have checked it first (`store.check_store`)
    client = mlflow.MlflowClient(tracking_uri=uri)
    if recorded_run(client, record) is None:
        return False
    run_id = str(record["run_id"])
    with store_errors(uri, f"failed while logging to run {run_id}"):
        client.log_artifacts(run_id, str(artifacts), artifact_path)
    return True
