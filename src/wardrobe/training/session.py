"""What every training stage does around its model: one MLflow run and one staging directory, so
that a training publishes all of models/<name>/ (the .keras files, history.csv, run.json), its
logged models and the registry alias `candidate`, or none of it.

    with training_session("vae", params, seed, data, digests, out_dir) as session:
        history = session.fit(vae, target=None)
        session.save(history, {"vae": vae, "encoder": encoder, "decoder": decoder},
                     register=["decoder"])

Any failure inside the block (divergence, a model below its threshold, an interrupt, the
tracking store) marks the run FAILED or KILLED and leaves out_dir as it was.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from wardrobe.dataset import SPLITS
from wardrobe.fsio import atomic_dir, write_json
from wardrobe.params import TrainingParams
from wardrobe.processes import uninterrupted
from wardrobe.tracking.datasets import (
    TRAINING_CONTEXTS,
    data_fingerprint,
    log_datasets,
    split_datasets,
)
from wardrobe.tracking.models import (
    EpochMetrics,
    LoggedModel,
    log_keras_model,
    promote,
    run_record,
)
from wardrobe.tracking.runs import (
    delete_run_versions,
    end_abandoned_runs,
    end_cut_short,
    run_tags,
    training_run,
)
from wardrobe.tracking.store import configure
from wardrobe.training.loop import Target, fit

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]  # (images, labels)


@dataclass(frozen=True)
class Trained:
    """What a training stage reports when it is done."""

    run_id: str
    seconds: float  # in fit: training and validation, every epoch
    last_epoch: dict[str, float]  # the history's last row


@contextlib.contextmanager
def training_session(
    name: str,
    params: TrainingParams,
    seed: int,
    data: Mapping[str, Split],
    data_digests: Mapping[str, str],
    out_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
) -> Iterator[TrainingSession]:
    """A training's MLflow run (named `name`, with `params` logged under `name.` and `seed`,
    tagged with the data's digests, the splits read from data_dir logged as its `training`
    and `validation` inputs, CPU and memory logged as system metrics) and a staging directory
    that replaces out_dir when the block ends without an error.

    Publishing is done whole or not at all: before it (the block), any failure or interrupt
    ends the run FAILED or KILLED and deletes the model versions it registered; the
    publication itself (run FINISHED, out_dir swapped, alias moved) is not interrupted."""
    import mlflow

    uri = configure()
    end_abandoned_runs()
    fingerprint = data_fingerprint(data_digests)
    inputs = split_datasets(data, data_dir, fingerprint)
    tags = {**run_tags(fingerprint), **inputs.tags()}
    logged_params = {
        "seed": seed,
        name: params.model_dump(),
        "data": {f"{split}_images": len(data[split][0]) for split in SPLITS},
    }
    session: TrainingSession | None = None
    run_ended = False
    with contextlib.ExitStack() as publishing:
        try:
            with atomic_dir(out_dir) as staging:
                with training_run(name, logged_params, tags) as run:
                    log_datasets(
                        mlflow.MlflowClient(), run.info.run_id, inputs.datasets,
                        TRAINING_CONTEXTS,
                    )  # fmt: skip
                    session = TrainingSession(name, params, seed, data, staging, run, uri)
                    yield session
                    publishing.enter_context(uninterrupted(f"publishing {name}"))
                run_ended = True  # FINISHED; the directory swap comes next
        except BaseException as exc:
            if session is not None:
                run_id = session.run.info.run_id
                delete_run_versions(run_id)
                if run_ended:  # the swap failed: the run published nothing after all
                    client = mlflow.MlflowClient()
                    end_cut_short(run_id, exc, functools.partial(client.set_terminated, run_id))
            raise
        promote(session.logged)  # last: the alias never names a failed training's model
    log.info("%s: models and run.json written to %s", name, out_dir)


@dataclass
class TrainingSession:
    """One training inside its run: `fit`, then `save`."""

    name: str
    params: TrainingParams
    seed: int
    data: Mapping[str, Split]
    staging: Path
    run: Any
    uri: str
    logged: list[LoggedModel] = field(default_factory=list)
    trained: Trained | None = None

    def fit(self, model: keras.Model, target: Target) -> pd.DataFrame:
        """Train the compiled model on the train split with the test split as validation
        data (params' epochs and batch size), logging every epoch; return the history."""
        import mlflow

        start = time.perf_counter()
        history = fit(
            model, self.data["train"], self.data["test"], epochs=self.params.epochs,
            batch_size=self.params.batch_size, seed=self.seed, target=target,
            callbacks=[EpochMetrics()],
        )  # fmt: skip
        seconds = time.perf_counter() - start
        mlflow.log_metric("train_seconds", seconds)
        self.trained = Trained(self.run.info.run_id, seconds, history.iloc[-1].to_dict())
        return history

    def save(
        self,
        history: pd.DataFrame,
        parts: Mapping[str, keras.Model],
        register: Sequence[str] = (),
    ) -> None:
        """Write history.csv and one .keras file per part to the staging directory, log them
        to the run (the parts named in `register` also as new versions of the registered
        model `wardrobe-<name>-<part>`), and write run.json."""
        import mlflow

        history.to_csv(self.staging / "history.csv", index=False, float_format="%.6g")
        for stem, part in parts.items():
            part.save(self.staging / f"{stem}.keras")
        self.logged = [
            log_keras_model(
                part, stem, f"wardrobe-{self.name}-{stem}" if stem in register else None
            )
            for stem, part in parts.items()
        ]
        mlflow.log_artifact(str(self.staging / "history.csv"))
        write_json(self.staging / "run.json", run_record(self.run, self.uri, self.logged))
