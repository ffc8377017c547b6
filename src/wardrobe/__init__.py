"""Wardrobe: the autoencoder / VAE lecture on Fashion-MNIST as a reproducible pipeline."""

import os

__version__ = "0.1.0"

# MLflow (since 3.2) sends anonymous usage data unless told not to, from its client, its server
# and its UI: every process of the project that imports this package tells it not to, as the
# Makefile, the stack, the cluster and the container do for the processes they start.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
