"""Keras in MLflow: per-epoch metrics, and models logged to their training's run (with a
signature and an input example) so that they load back in a new process. Trainings register
nothing: `wardrobe.promote` is the registry's one writer."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import keras

log = logging.getLogger(__name__)


class EpochMetrics(keras.callbacks.Callback):
    """Logs every epoch's train and validation metrics to the active MLflow run (the one
    mechanism for per-epoch metrics: no autolog beside it)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        import mlflow

        if logs:
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


@dataclass(frozen=True)
class LoggedModel:
    name: str  # the part: "decoder", "vae", ...
    model_uri: str  # models:/<model id>


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


def log_keras_model(model: keras.Model, name: str, input_example: Any) -> LoggedModel:
    """Log a Keras model to the active run as the logged model `name`. Loading a model with
    custom layers back needs their module imported first (`import wardrobe.models.vae`
    registers the VAE's)."""
    import mlflow
    import tensorflow as tf

    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    info = mlflow.models.Model.log(
        artifact_path=None, name=name, flavor=_KerasFlavor, model=model,
        signature=keras_signature(model),
        input_example=input_example, pip_requirements=requirements,
        # MLflow would load the saved model back and predict the example (a second per
        # model, and only a warning when it fails): tests/test_training.py loads every logged
        # model back in a new process instead
        validate_serving_input=False,
    )  # fmt: skip
    return LoggedModel(name, info.model_uri)


class _KerasFlavor:
    """`mlflow.keras` for `Model.log`, as `mlflow.keras.log_model` passes it, but with the
    model's directory made first: MLflow's Keras flavor writes the input example before it
    creates that directory, and fails (mlflow/mlflow#16183)."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> None:
        import mlflow

        os.makedirs(path, exist_ok=True)
        kwargs.pop("validate_serving_input", None)  # Model.log's, not the flavor's
        mlflow.keras.save_model(path=path, **kwargs)


def run_record(run: Any, uri: str, models: list[LoggedModel]) -> dict[str, Any]:
    """What run.json holds: the run, for later stages to log against, and its logged models
    (`wardrobe.promote` registers the decoder's)."""
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": uri,
        "models": [asdict(m) for m in models],
    }
