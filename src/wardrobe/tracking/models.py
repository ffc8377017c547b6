"""Keras in MLflow: per-epoch metrics, models logged so they load back in a new process, and
the registry alias `candidate` on the newest decoder."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import keras

from wardrobe.tracking.store import store_errors

log = logging.getLogger(__name__)

CANDIDATE_ALIAS = "candidate"


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
    (`promote` then moves the alias). Loading a model with custom layers back needs their
    module imported first (`import wardrobe.models.vae` registers the VAE's)."""
    import mlflow
    import tensorflow as tf
    from mlflow.exceptions import MlflowException

    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    info = mlflow.keras.log_model(
        model, name=name, signature=keras_signature(model), pip_requirements=requirements
    )
    if registered_name is None:
        return LoggedModel(name, info.model_uri)
    # The client registers quietly; MLflow's `registered_model_name=` prints to stderr.
    client = mlflow.MlflowClient()
    try:
        client.create_registered_model(registered_name)
    except MlflowException as exc:  # registered by an earlier training
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        registered_name, info.model_uri, run_id=info.run_id, model_id=info.model_id
    ).version
    log.info("%s: registered as %s version %s", name, registered_name, version)
    return LoggedModel(name, info.model_uri, registered_name, str(version))


def promote(models: list[LoggedModel]) -> None:
    """Point the alias `candidate` at the new registered versions (the last step of a
    successful training, so it never names a failed run's model)."""
    import mlflow

    client = mlflow.MlflowClient()
    for model in models:
        if model.registered_name and model.version:
            doing = f"could not set {model.registered_name}@{CANDIDATE_ALIAS}"
            with store_errors(mlflow.get_tracking_uri(), doing):
                client.set_registered_model_alias(
                    model.registered_name, CANDIDATE_ALIAS, model.version
                )


def run_record(run: Any, uri: str, models: list[LoggedModel]) -> dict[str, Any]:
    """What run.json holds: enough for later stages to log into the same run."""
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": uri,
        "models": [asdict(m) for m in models],
    }
