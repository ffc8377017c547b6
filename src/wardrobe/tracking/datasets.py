"""The processed splits as MLflow datasets, logged as run inputs, named by what DVC knows.

A dataset's digest is DVC's hash of the processed-data directory as dvc.lock records it
(`<md5>.dir`), once the files there are checked against the listing DVC keeps in its cache;
its source is the file's path in the repository. With the run's `git_commit` tag, that leads
to exactly the data a run saw: `git checkout <commit> && dvc checkout data/processed`. Where
dvc.lock does not describe the files (a stage run outside DVC, an edited file), the digest is
the first 32 hex digits of the SHA-256 over the files' own SHA-256 digests, and the run's
`processed_data_dvc` tag says so.

Contexts: a training run logs the train split as `training` and the test split as
`validation` (Keras' validation data); an evaluation run logs the test split as `evaluation`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger(__name__)

NAMES = {"train": "fashion-mnist-train", "test": "fashion-mnist-test"}
TRAINING_CONTEXTS = {"train": "training", "test": "validation"}
EVALUATION_CONTEXT = "evaluation"
NOT_IN_DVC = "not in dvc.lock"  # the processed_data_dvc tag when DVC's hash does not apply
# How a store reports the insert that lost the race (SQLite, PostgreSQL through SQLAlchemy).
DUPLICATE_INSERT = ("UNIQUE constraint failed", "UniqueViolation", "duplicate key value")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(digests: Mapping[str, str]) -> str:
    """One SHA-256 over the data files' own SHA-256 digests (train, then test)."""
    digest = hashlib.sha256()
    for file_digest in digests.values():
        digest.update(file_digest.encode())
    return digest.hexdigest()


def dvc_hash(data_dir: str | os.PathLike[str], root: str | os.PathLike[str] = ".") -> str | None:
    """DVC's hash of data_dir (`<md5>.dir`) as `root`/dvc.lock records it, if the files in
    data_dir are exactly those of the listing DVC keeps for that hash; else None."""
    root, data_dir = Path(root).resolve(), Path(data_dir).resolve()
    try:
        relative = data_dir.relative_to(root).as_posix()
        stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
        recorded = [
            out.get("md5")
            for stage in stages.values()
            for out in stage.get("outs", [])
            if out.get("path") == relative
        ]
    except (ValueError, OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if len(recorded) != 1 or not str(recorded[0]).endswith(".dir"):
        return None
    md5 = str(recorded[0])
    listing = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    try:
        entries = {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}
        present = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
        if present != set(entries):
            return None
        if any(_md5(data_dir / rel) != digest for rel, digest in entries.items()):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return md5


@dataclass(frozen=True)
class SplitDatasets:
    """The MLflow datasets of the splits in one processed-data directory."""

    datasets: Mapping[str, Any]  # split -> mlflow.data.Dataset
    dvc_hash: str | None

    def tags(self) -> dict[str, str]:
        return {"processed_data_dvc": self.dvc_hash or NOT_IN_DVC}


def split_datasets(
    data: Mapping[str, tuple[np.ndarray, np.ndarray]],
    data_dir: str | os.PathLike[str],
    fingerprint: str,
) -> SplitDatasets:
    """MLflow datasets of the (images, labels) splits read from data_dir; `fingerprint` is
    the SHA-256 over the files' digests, the fallback digest."""
    import mlflow

    found = dvc_hash(data_dir)
    if found is None:
        log.info(
            "%s is not the data dvc.lock records (or there is no dvc.lock); its MLflow "
            "datasets carry the files' SHA-256 instead of DVC's hash", data_dir,
        )  # fmt: skip
    digest = found or fingerprint[:32]
    try:
        where = Path(data_dir).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        where = Path(data_dir).resolve().as_posix()
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and
        warnings.simplefilter("ignore", UserWarning)  # says the path is ambiguous
        datasets = {
            split: mlflow.data.from_numpy(
                images,
                targets=labels,
                source=f"{where}/{split}.npz",
                name=NAMES[split],
                digest=digest,
            )
            for split, (images, labels) in data.items()
        }
    return SplitDatasets(datasets, found)


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
