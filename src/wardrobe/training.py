"""The one training loop every training stage uses (AE, VAE, classifier): seeding, the tf.data
input pipeline, callbacks, the per-epoch history, and the atomic write of the model directory
with its MLflow run."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from wardrobe import tracking
from wardrobe.checks import require_passed
from wardrobe.data import load_split, sha256_file
from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_dir, write_json
from wardrobe.params import load_seed, read_params

log = logging.getLogger(__name__)


class TrainingDiverged(WardrobeError):
    """A loss or metric became NaN or infinite."""


class BelowThreshold(WardrobeError):
    """A trained model missed the quality its params require."""


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also make TF ops deterministic
    (it cannot be switched off again in the same process)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


Target = Literal["images", "labels"] | None


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None,
    batch_size: int,
    *,
    seed: int | None,
    target: Target,
) -> tf.data.Dataset:
    """Batches of images alone (`target=None`: a model with its own train_step, the VAE), of
    (images, images) pairs (`"images"`: a compiled reconstruction loss, the AE) or of
    (images, labels) pairs (`"labels"`: the classifier), reshuffled every epoch when `seed` is
    given. Shuffling indices and gathering whole batches keeps the per-image cost of the
    pipeline near zero: the arrays stay one tensor each in memory."""
    data = tf.constant(images)
    if target == "labels":
        if labels is None:
            raise ValueError("target='labels' needs labels")
        targets = tf.constant(labels)
    order = tf.data.Dataset.range(len(images))
    if seed is not None:
        order = order.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def gather(idx: tf.Tensor) -> Any:
        x = tf.gather(data, idx)
        if target == "images":
            return x, x
        if target == "labels":
            return x, tf.gather(targets, idx)
        return x

    batches = order.batch(batch_size).map(
        gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return batches.prefetch(tf.data.AUTOTUNE)


class TerminateOnNonFinite(keras.callbacks.Callback):
    """Keras' TerminateOnNaN watches only `loss`; this watches every logged value (the VAE
    reports total_loss, reconstruction_loss and kl_loss) and remembers where it stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.problem: str | None = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.epoch = epoch

    def check(self, logs: Mapping[str, Any] | None, where: str) -> None:
        for name, value in (logs or {}).items():
            if self.problem is None and not math.isfinite(float(value)):
                self.problem = f"{name} became {float(value)} at epoch {self.epoch + 1}{where}"
                self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.check(logs, f", batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.check(logs, "")  # the validation metrics


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `images_per_second` (training only) to each epoch's logs."""

    def __init__(self, train_images: int) -> None:
        super().__init__()
        self.train_images = train_images
        self.train_seconds = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.train_seconds = time.perf_counter() - self.start

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.start
            logs["images_per_second"] = self.train_images / max(self.train_seconds, 1e-9)


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray | None],
    val: tuple[np.ndarray, np.ndarray | None],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    target: Target,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 2,
) -> pd.DataFrame:
    """Train a compiled model on (images, labels) with the test set as validation data;
    return the per-epoch history (one row per epoch). `target` is what the model learns to
    output (see `make_dataset`). Raises TrainingDiverged when a value stops being finite."""
    watchdog = TerminateOnNonFinite()
    history = model.fit(
        make_dataset(*train, batch_size, seed=seed, target=target),
        validation_data=make_dataset(*val, batch_size, seed=None, target=target),
        epochs=epochs,
        shuffle=False,  # the dataset reshuffles itself, seeded
        callbacks=[watchdog, EpochTimer(len(train[0])), *callbacks],
        verbose=verbose,
    )
    if watchdog.problem:
        raise TrainingDiverged(
            f"training stopped: {watchdog.problem}; check the data (`dvc repro validate`) or "
            "lower the learning rate in params.yaml"
        )
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


def data_fingerprint(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One SHA-256 over the files' own SHA-256 digests, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class TrainingJob:
    """What differs between the training stages (AE, VAE, classifier); everything else is
    shared."""

    run_name: str  # "ae" | "vae" | "classifier": the MLflow run name and params.yaml section
    section: Any  # AEParams | VAEParams | ClassifierParams: epochs, batch_size, ..., logged
    seed: int
    model: keras.Model  # compiled
    parts: Mapping[str, keras.Model]  # file stem -> model saved beside history.csv
    target: Target  # what the model learns to output: see `make_dataset`
    min_val_accuracy: float | None = None  # reject the model below this validation accuracy

    @property
    def registered_decoder(self) -> str:
        return f"wardrobe-{self.run_name}-decoder"

    @property
    def params(self) -> dict[str, Any]:
        return {"seed": self.seed, self.run_name: dataclasses.asdict(self.section)}


def reject_below_threshold(job: TrainingJob, last: Mapping[str, float]) -> None:
    if job.min_val_accuracy is None:
        return
    accuracy = float(last["val_accuracy"])
    if not accuracy >= job.min_val_accuracy:
        raise BelowThreshold(
            f"{job.run_name}: test accuracy {accuracy:.4f} is below "
            f"{job.run_name}.min_accuracy {job.min_val_accuracy:g}; train longer "
            f"({job.run_name}.epochs) or lower the threshold in params.yaml"
        )


def train_and_save(
    job: TrainingJob,
    processed_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Train inside an MLflow run, log the models, then replace `out_dir` in one step.

    `out_dir` gets one `.keras` file per entry of `job.parts`, `history.csv` and `run.json`.
    Any failure (divergence, a model below its threshold, an interrupt, the tracking store)
    marks the run FAILED or KILLED and leaves `out_dir` as it was. The registry alias moves
    last, once all else succeeded."""
    import mlflow

    uri = tracking.configure()
    processed = Path(processed_dir)
    tags = tracking.run_tags(data_fingerprint([processed / "train.npz", processed / "test.npz"]))
    params = {**job.params, "data": {"train_images": len(train[0]), "test_images": len(test[0])}}
    # The run ends (FINISHED, or FAILED and re-raised) before the directory swap.
    with (
        atomic_dir(out_dir) as staging,
        tracking.training_run(job.run_name, params, tags) as run,
    ):
        start = time.perf_counter()
        history = fit(
            job.model, train, test, epochs=job.section.epochs,
            batch_size=job.section.batch_size, seed=job.seed, target=job.target,
            callbacks=[tracking.EpochMetrics()],
        )  # fmt: skip
        seconds = time.perf_counter() - start
        reject_below_threshold(job, history.iloc[-1])
        history.to_csv(staging / "history.csv", index=False, float_format="%.6g")
        for stem, part in job.parts.items():
            part.save(staging / f"{stem}.keras")
        logged = [
            tracking.log_keras_model(
                part, stem, job.registered_decoder if stem == "decoder" else None
            )
            for stem, part in job.parts.items()
        ]
        mlflow.log_metric("train_seconds", seconds)
        mlflow.log_artifact(str(staging / "history.csv"))
        record = tracking.run_record(run, uri, logged)
        write_json(staging / "run.json", record)
    tracking.promote(logged)
    log.info("%s: models and run.json written to %s", job.run_name, out_dir)
    return {"run": record, "seconds": seconds, "last_epoch": history.iloc[-1].to_dict()}


def run_training_stage(
    description: str,
    section: Callable[[Mapping[str, Any], str], Any],
    build_job: Callable[[Any, int], TrainingJob],
    summarize: Callable[[Any, Mapping[str, float]], str],
) -> None:
    """The body of a training stage script: arguments, the checks verdict, params, data,
    seeding, then `train_and_save`. `build_job(params, seed)` builds and compiles the model;
    `summarize(params, last_epoch)` is the stage's closing line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--data", required=True, help="directory of train.npz, test.npz")
    parser.add_argument("--checks", required=True, help="reports/data_checks/summary.json")
    parser.add_argument("--out", required=True, help="model directory (models/<model>)")
    args = parser.parse_args()

    require_passed(args.checks)
    raw = read_params(args.params)
    params, seed = section(raw, args.params), load_seed(raw, args.params)
    train = load_split(Path(args.data) / "train.npz")
    test = load_split(Path(args.data) / "test.npz")
    seed_everything(seed, params.deterministic)
    job = build_job(params, seed)
    result = train_and_save(job, args.data, args.out, train, test)
    print(
        f"{job.run_name}: {params.epochs} epochs in {result['seconds']:.1f} s, "
        f"{summarize(params, result['last_epoch'])}; MLflow run {result['run']['run_id']}"
    )
