"""MLflow: where runs go, what they are tagged with, and how models are logged.

The default store is an SQLite file `mlflow.db` at the project root (artifacts in `mlartifacts/`
beside it); `MLFLOW_TRACKING_URI` points every run at a shared server instead. Paths are
absolute and resolved from the *project's* root, also when DVC runs a stage in a temporary copy
under `.dvc/tmp/exps/`, so runs of `dvc exp run --temp` and `dvc queue` land in the same store.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

from wardrobe.errors import WardrobeError

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "wardrobe"
REACHABILITY_TIMEOUT_S = 10.0
CANDIDATE_ALIAS = "candidate"

# MLflow's HTTP client otherwise retries an unreachable server for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class TrackingError(WardrobeError):
    """The tracking store cannot be reached or written."""


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The project's root: the directory holding dvc.yaml, outside any DVC temporary copy."""
    path = Path(start or Path.cwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for candidate in (path, *path.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return path


def tracking_uri(root: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set, else sqlite:///<project root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)


def default_tracking_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def artifact_root(root: Path | None = None) -> str:
    return ((root or project_root()) / "mlartifacts").as_uri()


def check_reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Fail fast, with the URI and the fix, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server that has no /health page, or wants credentials
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
            "MLFLOW_TRACKING_URI, or unset it to track into the project's mlflow.db"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unwritable(exc: OSError) -> TrackingError:
    """A file of the run (an artifact, a model) could not be written."""
    where = exc.filename or "a run file"
    return TrackingError(
        f"cannot write {where} ({exc.strerror or exc}); make the path writable (in Docker, "
        "mount the project at the same path as on the host) and run the stage again"
    )


def configure(experiment: str | None = None) -> str:
    """Point MLflow at the project's store and experiment; return the tracking URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = project_root()
    uri = tracking_uri(root)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    # The project's own store keeps artifacts beside it; any other store decides for itself.
    location = artifact_root(root) if uri == default_tracking_uri(root) else None
    try:
        if mlflow.get_experiment_by_name(name) is None:
            try:
                mlflow.create_experiment(name, artifact_location=location)
            except MlflowException as exc:  # created meanwhile by a parallel stage
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        mlflow.set_experiment(name)
    except MlflowException as exc:
        raise TrackingError(
            f"MLflow tracking store {uri} refused the experiment '{name}': {_first_line(exc)}"
        ) from None
    return uri


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def run_tags(data_sha256: str) -> dict[str, str]:
    """Git commit and dirtiness of the stage's work tree, the DVC experiment, the data hash."""
    here = Path.cwd()
    commit = _git(here, "rev-parse", "HEAD")
    status = _git(here, "status", "--porcelain", "--untracked-files=no")
    tags = {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "processed_data_sha256": data_sha256,
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"ae": {"filters": (32, 64)}} -> {"ae.filters": "[32, 64]"}: MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def training_run(
    run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[Any]:
    """An MLflow run that ends FINISHED, FAILED (an exception) or KILLED (an interrupt).

    Errors of the tracking store itself (a server gone, "database is locked") become a
    one-line TrackingError naming the store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def refused(exc: MlflowException) -> TrackingError:
        return TrackingError(
            f"MLflow tracking store {mlflow.get_tracking_uri()} failed: {_first_line(exc)}; "
            "check the store (a tracking server for parallel runs) and run the stage again"
        )

    def end(status: str) -> None:
        with contextlib.suppress(Exception):
            mlflow.end_run(status)

    try:
        run = mlflow.start_run(run_name=run_name, tags=dict(tags))
    except MlflowException as exc:
        raise refused(exc) from None
    try:
        mlflow.log_params(flatten(params))
        yield run
    except KeyboardInterrupt:
        end("KILLED")
        raise
    except MlflowException as exc:
        end("FAILED")
        raise refused(exc) from None
    except OSError as exc:
        end("FAILED")
        raise unwritable(exc) from None
    except BaseException:
        end("FAILED")
        raise
    try:
        mlflow.end_run("FINISHED")
    except MlflowException as exc:
        raise refused(exc) from None


class EpochMetrics(keras.callbacks.Callback):
    """Logs every epoch's train and validation metrics to the active MLflow run (the one
    mechanism for per-epoch metrics: no autolog beside it)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        import mlflow

        if logs:
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


@dataclass(frozen=True)
class LoggedModel:
    name: str
    model_uri: str
    registered_name: str | None = None
    version: str | None = None


def keras_signature(model: keras.Model) -> Any:
    """The model's input and output tensors as an MLflow signature (batch dimension free).

    A subclassed model (the VAE) has no symbolic tensors of its own: it maps its encoder's
    input to its decoder's output."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    functional = model if getattr(model, "outputs", None) else None
    inputs = (functional or model.encoder).inputs
    outputs = (functional or model.decoder).outputs
    # Several outputs (the VAE encoder's z_mean, z_log_var, z) need names: their layers'.
    output_names = functional.output_names if functional and len(outputs) > 1 else None

    def schema(tensors: list[Any], names: list[str] | None) -> Schema:
        return Schema(
            [
                TensorSpec(np.dtype(t.dtype), (-1, *t.shape[1:]), names[i] if names else None)
                for i, t in enumerate(tensors)
            ]
        )

    return ModelSignature(
        inputs=schema(list(inputs), None), outputs=schema(list(outputs), output_names)
    )


def log_keras_model(
    model: keras.Model, name: str, registered_name: str | None = None
) -> LoggedModel:
    """Log a Keras model to the active run and optionally register a new version of it
    (`promote` then moves the alias). Loading it back needs `import wardrobe.models` first
    (the custom layers' registration)."""
    import mlflow
    import tensorflow as tf

    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    info = mlflow.keras.log_model(
        model,
        name=name,
        signature=keras_signature(model),
        pip_requirements=requirements,
        registered_model_name=registered_name,
    )
    version = str(info.registered_model_version) if registered_name else None
    return LoggedModel(name, info.model_uri, registered_name, version)


def promote(models: list[LoggedModel]) -> None:
    """Point the alias `candidate` at the new registered versions (the last step of a
    successful training, so it never names a failed run's model)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    for model in models:
        if model.registered_name and model.version:
            try:
                client.set_registered_model_alias(
                    model.registered_name, CANDIDATE_ALIAS, model.version
                )
            except MlflowException as exc:
                raise TrackingError(
                    f"could not set {model.registered_name}@{CANDIDATE_ALIAS} in "
                    f"{mlflow.get_tracking_uri()}: {_first_line(exc)}"
                ) from None


def run_record(run: Any, uri: str, models: list[LoggedModel]) -> dict[str, Any]:
    """What run.json holds: enough for later stages to log into the same run."""
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": uri,
        "models": [asdict(m) for m in models],
    }


def log_to_recorded_run(
    record: Mapping[str, Any],
    metrics: Mapping[str, float] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    artifact_path: str | None = None,
) -> bool:
    """Add metrics and/or a directory of artifacts to the finished run a training stage
    recorded in its run.json, without changing the run's status. The run is looked up in
    the current store (`tracking_uri()`); when that store does not hold it (models restored
    from a DVC cache that another store's runs made), log a warning and return False."""
    import time

    import mlflow
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    check_reachable(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = str(record["run_id"])
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(
                f"MLflow tracking store {uri} failed: {_first_line(exc)}; check the store "
                "and run the stage again"
            ) from None
        log.warning(
            "MLflow run %s (%s) is not in %s; its results are written to files only",
            run_id, record.get("run_name", "?"), uri,
        )  # fmt: skip
        return False
    try:
        if metrics:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            )
        if artifacts is not None:
            client.log_artifacts(run_id, str(artifacts), artifact_path)
    except MlflowException as exc:
        raise TrackingError(
            f"MLflow tracking store {uri} failed while logging to run {run_id}: "
            f"{_first_line(exc)}; check the store and run the stage again"
        ) from None
    except OSError as exc:
        raise unwritable(exc) from None
    return True
