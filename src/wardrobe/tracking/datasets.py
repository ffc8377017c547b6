"""The processed splits as MLflow datasets, logged as run inputs, named by what DVC knows.

A dataset's digest is DVC's hash of the processed-data directory (`<md5>.dir`, computed from
the files by `dataset.data_digest`: what dvc.lock records for them); its source is the file's
path in the repository. With the run's `git_commit` tag, that leads to exactly the data a run
saw: `git checkout <commit> && dvc checkout data/processed`.

Contexts: a training run logs the train split as `training` and the test split as
`validation` (Keras' validation data); an evaluation run logs the test split as `evaluation`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NAMES = {"train": "fashion-mnist-train", "test": "fashion-mnist-test"}
TRAINING_CONTEXTS = {"train": "training", "test": "validation"}
EVALUATION_CONTEXT = "evaluation"
# How a store reports the insert that lost the race (SQLite, PostgreSQL through SQLAlchemy).
DUPLICATE_INSERT = ("UNIQUE constraint failed", "UniqueViolation", "duplicate key value")


def split_datasets(
    data: Mapping[str, tuple[np.ndarray, np.ndarray]],
    data_dir: str | os.PathLike[str],
    digest: str,
) -> dict[str, Any]:
    """{split: MLflow dataset} of the (images, labels) splits read from data_dir, whose DVC
    hash is `digest`."""
    import mlflow

    try:
        where = Path(data_dir).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        where = Path(data_dir).resolve().as_posix()
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and
        warnings.simplefilter("ignore", UserWarning)  # says the path is ambiguous
        return {
            split: mlflow.data.from_numpy(
                images, targets=labels, source=f"{where}/{split}.npz", name=NAMES[split],
                digest=digest,
            )
            for split, (images, labels) in data.items()
        }  # fmt: skip


def log_datasets(
    client: Any,
    run_id: str,
    datasets: Mapping[str, Any],
    contexts: Mapping[str, str],
    models: Sequence[Any] = (),
) -> None:
    """Log each split's dataset (`datasets`) as an input of the run with its context, and the
    `models` as its model inputs. Tried once more when the store loses a race: it looks a
    dataset up, then inserts it, so two runs logging the same new dataset at once can both
    find it missing and the second insert fails; on the retry it is found."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = [
        DatasetInput(
            datasets[split]._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        )
        for split, context in contexts.items()
    ]
    for attempt in (1, 2):
        try:
            client.log_inputs(run_id, datasets=inputs, models=list(models) or None)
            return
        except MlflowException as exc:
            if attempt == 2 or not any(m in str(exc) for m in DUPLICATE_INSERT):
                raise
            log.debug("logging the inputs of run %s again: %s", run_id, exc)
