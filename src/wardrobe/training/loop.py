"""What every training stage (AE, VAE, classifier) shares: seeding, the tf.data input
pipeline, the one training loop (the callbacks that stop a diverging run and time each epoch,
the per-epoch history) and saving the trained parts to their directory and their MLflow run."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from wardrobe.errors import WardrobeError
from wardrobe.fsio import write_json
from wardrobe.tracking.models import LoggedModel, keras_signature, log_keras_model, run_record

log = logging.getLogger(__name__)


class TrainingDiverged(WardrobeError):
    """A loss or metric became NaN or infinite."""


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


@dataclass(frozen=True)
class Trained:
    """What a training stage reports when it is done."""

    run_id: str
    seconds: float  # training and validation, every epoch
    last_epoch: dict[str, float]  # the history's last row


def save(
    staging: Path,
    run: Any,
    history: pd.DataFrame,
    parts: Mapping[str, keras.Model],
    images: np.ndarray,
) -> Trained:
    """Write a trained model into `staging`: history.csv, one `<part>.keras` per part, and
    run.json (`tracking.models.run_record`); log each part to the active run as a logged
    model whose input example is the first of `images` (or, for a decoder, the latent
    origin), and history.csv as an artifact."""
    import mlflow

    history.to_csv(staging / "history.csv", index=False, float_format="%.6g")
    logged: list[LoggedModel] = []
    for stem, part in parts.items():
        part.save(staging / f"{stem}.keras")
        [spec] = keras_signature(part).inputs.inputs
        takes = tuple(spec.shape[1:])
        example = images[:1] if takes == images.shape[1:] else np.zeros((1, *takes), np.float32)
        logged.append(log_keras_model(part, stem, example))
    seconds = float(history["epoch_seconds"].sum())
    mlflow.log_metric("train_seconds", seconds)
    mlflow.log_artifact(str(staging / "history.csv"))
    write_json(staging / "run.json", run_record(run, mlflow.get_tracking_uri(), logged))
    log.info(
        "%s: %s logged to MLflow run %s", run.info.run_name, ", ".join(parts), run.info.run_id
    )
    return Trained(run.info.run_id, seconds, history.iloc[-1].to_dict())
