"""Evaluation runs: each `evaluate` creates, per model, a child run `<model>/eval` of the run
that trained it, holding the evaluate params and seed, the test set as its `evaluation`
input, the evaluated model as its model input, and the test metrics linked to both (MLflow
3 shows them on the logged model's page). `plots` logs its figures into the same run. The
training runs are not written to after training, so two evaluations of one model (say, an
experiment that changes only `evaluate.generated`) are two runs side by side in the UI."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from wardrobe.tracking.datasets import EVALUATION_CONTEXT, log_datasets
from wardrobe.tracking.runs import end_cut_short, flatten, recorded_run, run_tags
from wardrobe.tracking.store import store_errors, tracking_uri

log = logging.getLogger(__name__)


def model_id(record: Mapping[str, Any]) -> str | None:
    """The MLflow logged model of the whole trained model (the first a training logs:
    autoencoder, vae, classifier), from its run.json record."""
    models = record.get("models") or []
    uri = str(models[0].get("model_uri", "")) if models else ""
    return uri.removeprefix("models:/") or None


def log_evaluation(
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    metrics: Mapping[str, float],
    datasets: Mapping[str, Any],
    digest: str,
) -> dict[str, str] | None:
    """Create the evaluation run of the training run `record` names, log into it, and end it
    FINISHED; `datasets` holds the test split's MLflow dataset, whose DVC hash is `digest`.
    Return its record ({"run_id", "run_name"}, what `plots` logs into). None (and
    a warning) when the store does not hold the training run (models restored from another
    store's DVC cache): the results are in files only."""
    import mlflow
    from mlflow.entities import LoggedModelInput, Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=uri)
    parent = recorded_run(client, record)
    if parent is None:
        return None
    trained = parent.info.run_name
    linked = model_id(record)
    test = datasets["test"]
    tags = {
        **run_tags(digest),
        MLFLOW_PARENT_RUN_ID: parent.info.run_id,  # the training run it evaluates
    }
    name = f"{trained}/eval"
    with store_errors(uri, f"failed while logging the evaluation of {trained}"):
        run_id = client.create_run(parent.info.experiment_id, run_name=name, tags=tags).info.run_id
        try:
            logged = flatten({"seed": seed, "evaluate": params})
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in logged.items()])
            models = [LoggedModelInput(linked)] if linked else []
            log_datasets(client, run_id, datasets, {"test": EVALUATION_CONTEXT}, models)
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric(k, float(v), now, 0, model_id=linked, dataset_name=test.name,
                           dataset_digest=test.digest)
                    for k, v in metrics.items()
                ],
            )  # fmt: skip
        except BaseException as exc:
            end_cut_short(run_id, exc, functools.partial(client.set_terminated, run_id))
            raise
        client.set_terminated(run_id, "FINISHED")
    log.info("%s: evaluation run %s (%s)", trained, run_id, name)
    return {"run_id": run_id, "run_name": name}
