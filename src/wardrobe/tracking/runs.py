"""MLflow runs: a training run that always ends with the right status, its tags, and logging
later results (test metrics, figures) into a run a training recorded in its run.json."""

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

from wardrobe import processes
from wardrobe.errors import first_line
from wardrobe.tracking.store import store_errors, tracking_uri

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


def run_tags(data_sha256: str) -> dict[str, str]:
    """Git commit and dirtiness of the stage's work tree, the DVC experiment, the data hash,
    and the process that runs it (so a run it leaves RUNNING when killed can be ended)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "processed_data_sha256": data_sha256,
        PROCESS_TAG: processes.identity(),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def delete_run_versions(run_id: str) -> None:
    """Delete the registered model versions of a run that did not publish its models (failed,
    interrupted, killed). A store that refuses is logged, not raised: the run's own error is
    the one to report."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        for version in client.search_model_versions(f"run_id = '{run_id}'"):
            client.delete_model_version(version.name, version.version)
            log.info("deleted %s version %s of unpublished run %s", version.name,
                     version.version, run_id)  # fmt: skip
    except Exception as exc:
        log.warning("could not delete the model versions of run %s: %s", run_id, first_line(exc))


def end_abandoned_runs() -> list[str]:
    """End as FAILED the runs of the active experiment that a process of this host left
    RUNNING when it was killed (SIGKILL, a power cut), and delete the model versions they
    registered: their `wardrobe.process` tag names a process that no longer runs. Returns
    their ids."""
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
                delete_run_versions(run.info.run_id)
                log.warning(
                    "MLflow run %s (%s) was left RUNNING by a process that no longer runs; "
                    "ended it as FAILED", run.info.run_id, run.info.run_name,
                )  # fmt: skip
                ended.append(run.info.run_id)
    return ended


def end_cut_short(run_id: str, exc: BaseException, end: Callable[[str], object]) -> None:
    """End run `run_id` with `end(status)`: KILLED when `exc` is an interrupt (Ctrl-C,
    SIGTERM), FAILED for any other exception. The frames `exc` unwound are cleared first: an
    interrupt that lands inside a store call, while SQLite runs a statement, leaves that
    statement open in those frames, and its lock makes every write (this one too) wait out the
    busy timeout and fail, leaving the run RUNNING. A store that still refuses is logged, not
    raised: `exc` is the error to report."""
    status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
    traceback.clear_frames(exc.__traceback__)
    try:
        end(status)
    except Exception as error:
        log.warning("could not end MLflow run %s as %s: %s", run_id, status, first_line(error))


@contextlib.contextmanager
def training_run(
    run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[Any]:
    """An MLflow run that ends FINISHED, FAILED (an exception) or KILLED (an interrupt); the
    store's own errors, inside the block too, become one-line TrackingErrors."""
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
