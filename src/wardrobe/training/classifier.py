"""The train_classifier stage: a small Fashion-MNIST classifier, tracked as the MLflow run
`classifier`. Its features score the images the AE and the VAE generate (stage evaluate)."""

from __future__ import annotations

from pathlib import Path

import keras

from wardrobe.checks.verdict import require_passed
from wardrobe.dataset import load_splits
from wardrobe.errors import WardrobeError
from wardrobe.models.classifier import build_classifier
from wardrobe.params import ClassifierParams
from wardrobe.training.loop import seed_everything
from wardrobe.training.session import Trained, training_session


class BelowThreshold(WardrobeError):
    """A trained model missed the quality its params require."""


def train(
    params: ClassifierParams, seed: int, data_dir: Path, checks: Path, out_dir: Path
) -> Trained:
    """Train the classifier on the labels and write out_dir: classifier.keras, history.csv,
    run.json; refuse a model below classifier.min_accuracy on the test split."""
    digests = require_passed(checks, data_dir)
    data = load_splits(data_dir)
    seed_everything(seed, params.deterministic)
    classifier = build_classifier(params.filters, params.features, params.dropout)
    classifier.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    with training_session(
        "classifier", params, seed, data, digests, out_dir, data_dir=data_dir
    ) as session:
        history = session.fit(classifier, target="labels")
        accuracy = float(history["val_accuracy"].iloc[-1])
        if not accuracy >= params.min_accuracy:  # a weak classifier's features would mislead
            raise BelowThreshold(
                f"classifier: test accuracy {accuracy:.4f} is below classifier.min_accuracy "
                f"{params.min_accuracy:g}; train longer (classifier.epochs) or lower the "
                "threshold in params.yaml"
            )
        session.save(history, {"classifier": classifier})
    return session.trained
