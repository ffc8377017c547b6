"""Reconstruction losses, KL, latent statistics and generation quality: the lecture's claims as
numbers.

- Reconstruction: BCE and MSE, means over the pixels and images of the test set (the quantity
  Keras reports as the AE's `val_loss`). The VAE reconstructs from `z_mean`; its training
  objective (beta x BCE + KL) is computed with z sampled under a fixed seed.
- Latent statistics (claims 2 and 3): per-dimension mean and standard deviation of the test
  embeddings, and the KL divergence from N(0, I) of a Gaussian fitted to them.
- Generation quality (claims 2 and 3): a classifier's features of generated images against
  those of the test images (the Frechet distance, as FID computes it on Inception features),
  and the distribution of the classes it predicts for generated images.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wardrobe.data import CLASS_NAMES
from wardrobe.errors import DataError, WardrobeError

log = logging.getLogger(__name__)

EPSILON = 1e-7  # Keras clips probabilities to [EPSILON, 1 - EPSILON] in binary cross-entropy


# --- reconstruction -------------------------------------------------------------------------


def binary_crossentropy(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Mean BCE over every pixel of every image, with Keras' clipping of the predictions."""
    t = np.asarray(targets, dtype=np.float64)
    p = np.clip(np.asarray(predictions, dtype=np.float64), EPSILON, 1 - EPSILON)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def mean_squared_error(targets: np.ndarray, predictions: np.ndarray) -> float:
    diff = np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)
    return float(np.mean(diff**2))


def kl_divergence(z_mean: np.ndarray, z_log_var: np.ndarray) -> float:
    """The VAE's KL term: mean over images of KL(N(z_mean, exp(z_log_var)) || N(0, I))."""
    m = np.asarray(z_mean, dtype=np.float64)
    lv = np.asarray(z_log_var, dtype=np.float64)
    return float(np.mean(-0.5 * np.sum(1 + lv - m**2 - np.exp(lv), axis=1)))


# --- Gaussians ------------------------------------------------------------------------------


def gaussian_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance matrix (rows are observations)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D array of at least two rows, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def gaussian_kl_from_standard_normal(mean: np.ndarray, cov: np.ndarray) -> float:
    """KL(N(mean, cov) || N(0, I)) = 0.5 (tr cov + |mean|^2 - k - ln det cov)."""
    mean, cov = np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64)
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")  # a degenerate fit: the embeddings lie on a lower-dimensional set
    return float(0.5 * (np.trace(cov) + mean @ mean - len(mean) - logdet))


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (round-off
    negatives clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """|mean1 - mean2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)): the squared 2-Wasserstein
    distance between two Gaussians, as FID computes it.

    tr (cov1 cov2)^(1/2) is the sum of the square roots of the eigenvalues of the symmetric
    matrix cov1^(1/2) cov2 cov1^(1/2), which stays exact when a covariance is singular (a
    feature that is always 0, such as a ReLU unit that never fires)."""
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    diff = mean1 - mean2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_root, 0.0))


# --- summaries ------------------------------------------------------------------------------


def latent_statistics(embeddings: np.ndarray) -> dict[str, Any]:
    """Per-dimension mean and standard deviation (keys z0, z1, ...) and the KL divergence
    from N(0, I) of the Gaussian fitted to the embeddings."""
    mean, cov = gaussian_fit(embeddings)
    dims = [f"z{i}" for i in range(len(mean))]
    std = np.sqrt(np.diag(cov))
    return {
        "mean": dict(zip(dims, map(float, mean), strict=True)),
        "std": dict(zip(dims, map(float, std), strict=True)),
        "kl_from_standard_normal": gaussian_kl_from_standard_normal(mean, cov),
    }


def class_key(name: str) -> str:
    """ "T-shirt/top" -> "t_shirt_top": a class name as a metrics key."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def class_distribution(predicted: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Share of each class among predicted labels."""
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def entropy_bits(shares: np.ndarray) -> float:
    """Shannon entropy in bits: log2(10) = 3.32 when ten classes are equally common, 0 when
    one class takes all."""
    p = np.asarray(shares, dtype=np.float64)
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)) + 0.0)


# --- models ---------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """An encoder/decoder pair as the training stage saved it, with its MLflow run record."""

    name: str  # "ae" | "vae"
    encoder: Any
    decoder: Any
    run: dict[str, Any]
    beta: float | None = None  # the VAE's weight of the reconstruction term

    @property
    def variational(self) -> bool:
        return self.beta is not None

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    def encode(
        self, images: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """{"z": embeddings}; for the VAE also z_mean and z_log_var, and z is sampled from
        them with `rng` (a fixed seed gives the same z)."""
        if not self.variational:
            return {"z": self.encoder.predict(images, batch_size=batch_size, verbose=0)}
        z_mean, z_log_var, _ = self.encoder.predict(images, batch_size=batch_size, verbose=0)
        epsilon = rng.standard_normal(z_mean.shape).astype(np.float32)
        z = z_mean + np.exp(0.5 * z_log_var) * epsilon
        return {"z": z, "z_mean": z_mean, "z_log_var": z_log_var}

    def decode(self, points: np.ndarray, batch_size: int) -> np.ndarray:
        return self.decoder.predict(np.asarray(points, np.float32), batch_size=batch_size,
                                    verbose=0)  # fmt: skip

    def sample_latent(
        self, n: int, rng: np.random.Generator, embeddings: np.ndarray
    ) -> np.ndarray:
        """Points to generate from, as the lecture does: the VAE draws z ~ N(0, I); the AE,
        having no prior, draws uniformly inside the bounding box of its embeddings."""
        if self.variational:
            return rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        low, high = embeddings.min(axis=0), embeddings.max(axis=0)
        return rng.uniform(low, high, size=(n, self.latent_dim)).astype(np.float32)


def read_run_record(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "run.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run `dvc repro` to train the model") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); run `dvc repro -f` on its stage") from None
    if not isinstance(record, dict) or "run_id" not in record:
        raise DataError(f"{path}: has no run_id; run `dvc repro -f` on its stage")
    return record


def load_keras(path: Path) -> Any:
    import keras

    import wardrobe.models  # noqa: F401  (registers the custom classes)

    stage = f"train_{path.parent.name}"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro {stage}`")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot be loaded ({first}); run `dvc repro -f {stage}`"
        ) from None


def load_trained(models_dir: str | os.PathLike[str], name: str) -> TrainedModel:
    """The AE (`name="ae"`) or VAE (`"vae"`) saved under models_dir/name."""
    model_dir = Path(models_dir) / name
    run = read_run_record(model_dir)
    if name == "ae":
        return TrainedModel(
            name, load_keras(model_dir / "encoder.keras"), load_keras(model_dir / "decoder.keras"),
            run,
        )  # fmt: skip
    vae = load_keras(model_dir / "vae.keras")
    return TrainedModel(name, vae.encoder, vae.decoder, run, beta=float(vae.beta))


@dataclass
class Scorer:
    """The classifier's features and predicted classes of images, with the test set's feature
    Gaussian as the reference generated images are compared to."""

    model: Any  # image -> (features, probabilities)
    batch_size: int
    reference: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def load(cls, classifier_dir: str | os.PathLike[str], batch_size: int) -> Scorer:
        from wardrobe.models.classifier import feature_model

        classifier = load_keras(Path(classifier_dir) / "classifier.keras")
        return cls(feature_model(classifier), batch_size)

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, class probabilities)."""
        return tuple(self.model.predict(images, batch_size=self.batch_size, verbose=0))

    def distance_of_features(self, features: np.ndarray) -> float:
        """Frechet distance between features and the reference features."""
        if self.reference is None:
            raise ValueError("set the reference features first")
        return frechet_distance(*gaussian_fit(features), *self.reference)

    def distance(self, images: np.ndarray) -> float:
        """Frechet distance between the images' features and the reference features."""
        return self.distance_of_features(self.features(images)[0])

    def generation_quality(self, generated: np.ndarray) -> dict[str, Any]:
        """Frechet distance to the reference features; how confidently the classifier
        recognises the images (the mean of its top class probability); the distribution of
        the classes it predicts."""
        features, probabilities = self.features(generated)
        shares = class_distribution(probabilities.argmax(axis=1))
        return {
            "frechet_distance": self.distance_of_features(features),
            "mean_confidence": float(probabilities.max(axis=1).mean()),
            "class_entropy_bits": entropy_bits(shares),
            "top_class_share": float(shares.max()),
            "class_shares": {
                class_key(n): float(s) for n, s in zip(CLASS_NAMES, shares, strict=True)
            },
        }


# --- the evaluate stage ---------------------------------------------------------------------


def evaluate_model(
    model: TrainedModel,
    images: np.ndarray,
    scorer: Scorer,
    *,
    generated: int,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """The `<model>.test` metrics of one model on the test images."""
    rng = np.random.default_rng(seed)
    codes = model.encode(images, batch_size, rng)
    # The AE decodes its embedding; the VAE its z_mean (its best guess, no sampling noise).
    reconstructions = model.decode(codes.get("z_mean", codes["z"]), batch_size)
    metrics: dict[str, Any] = {
        "bce": binary_crossentropy(images, reconstructions),
        "mse": mean_squared_error(images, reconstructions),
        # How far reconstruction alone (blur, lost detail) moves the features.
        "frechet_distance_reconstructions": scorer.distance(reconstructions),
    }
    if model.variational:
        sampled = binary_crossentropy(images, model.decode(codes["z"], batch_size))
        kl = kl_divergence(codes["z_mean"], codes["z_log_var"])
        metrics["bce_sampled"] = sampled  # decoded from sampled z, as in training
        metrics["kl"] = kl
        metrics["loss"] = model.beta * sampled + kl
    metrics["latent"] = latent_statistics(codes["z"])
    points = model.sample_latent(generated, rng, codes["z"])
    metrics["generation"] = scorer.generation_quality(model.decode(points, batch_size))
    return metrics


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """{"test": {"bce": 0.25}} -> {"test.bce": 0.25}."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = float(value)
    return flat


class EvaluationError(WardrobeError):
    """The evaluation produced a value that is not a finite number."""


def evaluate_all(
    models_dir: str | os.PathLike[str],
    test: tuple[np.ndarray, np.ndarray],
    train_images: np.ndarray,
    *,
    generated: int,
    batch_size: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The whole `reports/metrics.json` and the run records (run.json) of the classifier and
    both models: the classifier's test accuracy and the Frechet distance between train and
    test images (the floor generated images are measured against), then each model's
    metrics. Raises EvaluationError on a non-finite value."""
    images, labels = test
    models = {name: load_trained(models_dir, name) for name in ("ae", "vae")}
    records = {name: model.run for name, model in models.items()}
    records["classifier"] = read_run_record(Path(models_dir) / "classifier")
    scorer = Scorer.load(Path(models_dir) / "classifier", batch_size)
    features, probabilities = scorer.features(images)
    scorer.reference = gaussian_fit(features)
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(train_images), min(generated, len(train_images)), False))
    train_features, _ = scorer.features(train_images[subset])
    metrics: dict[str, Any] = {
        "classifier": {
            "test": {
                "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
                "mean_confidence": float(probabilities.max(axis=1).mean()),
                "frechet_distance_train": scorer.distance_of_features(train_features),
            }
        }
    }
    for name, model in models.items():
        log.info("evaluate: %s on %d test images, %d generated", name, len(images), generated)
        metrics[name] = {
            "test": evaluate_model(
                model, images, scorer, generated=generated, batch_size=batch_size, seed=seed
            )
        }
    require_finite(metrics)
    return metrics, records


def require_finite(metrics: Mapping[str, Any]) -> None:
    """Raise EvaluationError naming every value that is NaN or infinite."""
    bad = [k for k, v in flatten_metrics(metrics).items() if not np.isfinite(v)]
    if bad:
        raise EvaluationError(
            f"{', '.join(bad)} not finite; the model collapsed or diverged: check its "
            "history.csv and retrain it with other params"
        )
