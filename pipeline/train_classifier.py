"""DVC stage `train_classifier`: a small Fashion-MNIST classifier, tracked as the MLflow run
`classifier`. Its features score the images the AE and the VAE generate (stage evaluate)."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from wardrobe.cli import run_stage
from wardrobe.models.classifier import build_classifier
from wardrobe.params import ClassifierParams
from wardrobe.training import TrainingJob, run_training_stage


def build_job(params: ClassifierParams, seed: int) -> TrainingJob:
    classifier = build_classifier(params.filters, params.features, params.dropout)
    classifier.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return TrainingJob(
        run_name="classifier",
        section=params,
        seed=seed,
        model=classifier,
        parts={"classifier": classifier},
        target="labels",
        min_val_accuracy=params.min_accuracy,
    )


def summarize(params: ClassifierParams, last: Mapping[str, float]) -> str:
    return f"test accuracy {last['val_accuracy']:.4f}"


if __name__ == "__main__":
    run_stage(
        "train_classifier",
        lambda: run_training_stage(__doc__, ClassifierParams.from_raw, build_job, summarize),
    )
