"""A small Fashion-MNIST classifier. It is not one of the lecture's models: evaluate uses its
feature layer to score generated images (a Frechet distance, as FID does with Inception) and
its predictions to see which classes a decoder generates."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from wardrobe.dataset import PROCESSED_SHAPE
from wardrobe.params import NUM_CLASSES

FEATURES_LAYER = "features"


def build_classifier(
    filters: Sequence[int], features: int, dropout: float, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """Image -> class probabilities: 3x3 convolutions with 2x2 max pooling, a ReLU feature
    layer named `features`, dropout and a softmax."""
    inputs = keras.Input(shape=PROCESSED_SHAPE, name="image")
    x = inputs
    for i, n in enumerate(filters):
        x = layers.Conv2D(n, 3, activation="relu", padding="same", name=f"conv_{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(features, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="classifier")


def feature_model(classifier: keras.Model) -> keras.Model:
    """Image -> (features, class probabilities), for scoring images in one pass."""
    return keras.Model(
        classifier.inputs,
        [classifier.get_layer(FEATURES_LAYER).output, classifier.output],
        name="classifier_features",
    )
