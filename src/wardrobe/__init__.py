"""Wardrobe: the autoencoder / VAE lecture on Fashion-MNIST as a reproducible pipeline."""

import os
import sys

__version__ = "0.1.0"

# MLflow (since 3.2) sends anonymous usage data unless told not to, from its client, its server
# and its UI: every process of the project that imports this package tells it not to, as the
# Makefile, the stack, the cluster and the container do for the processes they start.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)


class _KerasExtras:
    """Keras imports scikit-learn (for its scikit-learn wrappers) and matplotlib.pyplot (for its
    image galleries) when they are installed, and does without them when they are not; no stage
    uses either, and together they are about a fifth of `import keras`. This finder answers
    ImportError to those imports when keras itself asks, and stays out of every other import:
    the plots stage's own matplotlib.pyplot, scikit-learn anywhere else."""

    absent = ("sklearn", "matplotlib.pyplot")

    def find_spec(self, name, path=None, target=None):
        if not any(name == a or name.startswith(a + ".") for a in self.absent):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith(
            ("importlib", "_frozen_importlib")
        ):
            frame = frame.f_back
        importer = "" if frame is None else frame.f_globals.get("__name__", "")
        if importer == "keras" or importer.startswith("keras."):
            raise ModuleNotFoundError(f"{name} is not loaded for keras", name=name)
        return None


if not any(isinstance(finder, _KerasExtras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KerasExtras())
