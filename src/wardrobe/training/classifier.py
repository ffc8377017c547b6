"""The train_classifier stage: a small Fashion-MNIST classifier, tracked as the MLflow run
`classifier`. Its features score the images the AE and the VAE generate (stage evaluate)."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_dir
from wardrobe.memory import require_batch_fits
from wardrobe.models.classifier import build_classifier
from wardrobe.params import ClassifierParams
from wardrobe.tracking.models import EpochMetrics
from wardrobe.tracking.runs import training_run
from wardrobe.training.loop import Trained, fit, save, seed_everything


class BelowThreshold(WardrobeError):
    """A trained model missed the quality its params require."""


def train(
    params: ClassifierParams, seed: int, data_dir: Path, checks: Path, out_dir: Path
) -> Trained:
    """Train the classifier on the labels and write out_dir: classifier.keras, history.csv,
    run.json; refuse a model below classifier.min_accuracy on the test split (the run ends
    FAILED and out_dir is left as it was, as for any failure)."""
    digest = require_passed(checks, data_dir)  # DVC's hash of the data the checks passed
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    classifier = build_classifier(params.filters, params.features, params.dropout)
    classifier.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    samples = len(data["train"][0])
    require_batch_fits(classifier, params.batch_size, samples, "classifier.batch_size")
    # The new out_dir takes the old one's place as the block ends, before the run FINISHES.
    with (
        training_run("classifier", params, seed, data, data_dir, digest) as run,
        atomic_dir(out_dir) as staging,
    ):
        history = fit(
            classifier, data["train"], data["test"], epochs=params.epochs,
            batch_size=params.batch_size, seed=seed, target="labels",
            callbacks=[EpochMetrics()],
        )  # fmt: skip
        accuracy = float(history["val_accuracy"].iloc[-1])
        if not accuracy >= params.min_accuracy:  # a weak classifier's features would mislead
            raise BelowThreshold(
                f"classifier: test accuracy {accuracy:.4f} is below classifier.min_accuracy "
                f"{params.min_accuracy:g}; train longer (classifier.epochs) or lower the "
                "threshold in params.yaml"
            )
        trained = save(staging, run, history, {"classifier": classifier}, data["test"][0])
    return trained
