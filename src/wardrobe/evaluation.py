"""The reference and evaluate stages: each model scored on the whole test set with the metric
math of `metrics`, the classifier's features standing in for Inception's (as FID uses them).
The reference stage computes what every model's evaluation shares, once per classifier and
test set; evaluate runs once per model (`evaluate@ae`, `evaluate@vae`).

- Reconstruction: BCE and MSE; the VAE decodes `z_mean`, and its training objective
  (beta x BCE + KL) is computed with z sampled under the seed.
- Latent statistics (claims 2 and 3) of the test embeddings.
- Generation (claims 2 and 3): the Frechet distance between the classifier's features of
  generated and of test images, its confidence, and the classes it predicts.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from wardrobe.dataset import CLASS_NAMES, data_digest, load_split
from wardrobe.errors import DataError, WardrobeError
from wardrobe.fsio import atomic_file, write_json
from wardrobe.memory import require_batch_fits
from wardrobe.metrics import (
    bce_floor,
    binary_crossentropy,
    class_distribution,
    class_key,
    entropy_bits,
    far_share,
    frechet_distance_of_samples,
    gaussian_fit,
    generation_metrics,
    kl_divergence,
    knn_radii,
    latent_statistics,
    mean_squared_error,
    psd_sqrt,
)
from wardrobe.models.classifier import feature_model
from wardrobe.params import EvaluateParams
from wardrobe.processes import uninterrupted
from wardrobe.tracking.datasets import split_datasets
from wardrobe.tracking.evaluations import log_evaluation
from wardrobe.tracking.runs import flatten
from wardrobe.tracking.store import check_store
from wardrobe.trained import TrainedModel, load_keras, load_trained, predict, read_run_record

log = logging.getLogger(__name__)


class EvaluationError(WardrobeError):
    """The evaluation produced a value that is not a finite number."""


REFERENCE_FILE = "reference.npz"
# The KID subsets' generator of each evaluation: [seed, 1, *stream]. The reference's is the one
# generator all three shared in turn before evaluate was split by model.
KID_STREAMS: dict[str, tuple[int, ...]] = {"classifier": (), "ae": (1,), "vae": (2,)}


def _kid_rng(seed: int, name: str) -> np.random.Generator:
    """The KID subsets' generator of one evaluation, so that a model's KID does not depend on
    which other models were evaluated before it."""
    return np.random.default_rng([seed, 1, *KID_STREAMS[name]])


@dataclass
class Reference:
    """What the reference stage computes once for every model's evaluation: the classifier's
    features of the test images, their k-nearest-neighbour radii, the BCE anchors
    (`bce_anchors`) and the DVC hash of the processed data they come from."""

    features: np.ndarray
    radii: np.ndarray
    anchors: tuple[float, float]
    digest: str

    def save(self, path: Path) -> None:
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, features=self.features, radii=self.radii,
                     anchors=np.asarray(self.anchors), digest=np.asarray(self.digest))  # fmt: skip

    @classmethod
    def load(cls, path: Path, digest: str) -> Reference:
        """The reference at `path`, which must come from the processed data whose hash is
        `digest`; a DataError naming the stage to re-run otherwise."""
        fix = "run `dvc repro reference`"
        try:
            with np.load(path) as npz:
                found = cls(npz["features"], npz["radii"], tuple(npz["anchors"].tolist()),
                            str(npz["digest"]))  # fmt: skip
        except FileNotFoundError:
            raise DataError(f"{path}: not found; {fix}") from None
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable ({exc}); {fix}") from None
        if found.digest != digest:
            raise DataError(
                f"{path}: computed from other processed data ({found.digest}, not {digest}); {fix}"
            )
        return found


@dataclass
class Scorer:
    """The classifier's features and class probabilities of images, and the test images'
    features that generated images are compared to: their Gaussian (Frechet distance), their
    k-nearest-neighbour radii (precision, recall, density, coverage) and themselves (KID)."""

    model: Any  # image -> (features, probabilities)
    batch_size: int
    real: np.ndarray  # the test images' features
    rng: np.random.Generator  # of the KID subsets, apart from the one that draws latent points
    radii: np.ndarray | None = None  # knn_radii(real), when already computed

    def __post_init__(self) -> None:
        if self.radii is None:
            self.radii = knn_radii(self.real)

    @cached_property
    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The test features' Gaussian (mean, covariance)."""
        return gaussian_fit(self.real)

    @cached_property
    def reference_root(self) -> np.ndarray:
        """The square root of the test features' covariance, for every Frechet distance that
        goes through the covariances."""
        return psd_sqrt(self.reference[1])

    def against_test(self, features: np.ndarray) -> dict[str, float]:
        """Precision, recall, density, coverage and KID of features against the test set's."""
        return generation_metrics(self.real, features, self.rng, self.radii)

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, class probabilities)."""
        return tuple(predict(self.model, images, self.batch_size))

    def distance(self, features: np.ndarray) -> float:
        """Frechet distance between features and the reference features."""
        return frechet_distance_of_samples(
            self.real, features, lambda: (*self.reference, self.reference_root)
        )

    def generation_quality(self, generated: np.ndarray) -> dict[str, Any]:
        """Frechet distance to the reference features; how confidently the classifier
        recognises the images (the mean of its top class probability); the distribution of
        the classes it predicts."""
        features, probabilities = self.features(generated)
        shares = class_distribution(probabilities.argmax(axis=1), len(CLASS_NAMES))
        return {
            **self.against_test(features),
            "frechet_distance": self.distance(features),
            "mean_confidence": float(probabilities.max(axis=1).mean()),
            "class_entropy_bits": entropy_bits(shares),
            "top_class_share": float(shares.max()),
            "class_shares": {
                class_key(n): float(s) for n, s in zip(CLASS_NAMES, shares, strict=True)
            },
        }


def evaluate_model(
    model: TrainedModel,
    images: np.ndarray,
    scorer: Scorer,
    *,
    generated: int,
    batch_size: int,
    seed: int,
    anchors: tuple[float, float],
) -> dict[str, Any]:
    """The `<model>.test` metrics of one model on the test images; `anchors` are the BCE of a
    perfect reconstruction and of the mean training image for every input (`bce_anchors`)."""
    rng = np.random.default_rng(seed)
    codes = model.encode(images, batch_size, rng)
    # The AE decodes its embedding; the VAE its z_mean (its best guess, no sampling noise).
    embeddings = codes.get("z_mean", codes["z"])
    reconstructions = model.decode(embeddings, batch_size)
    bce = binary_crossentropy(images, reconstructions)
    floor, blind = anchors
    reconstructed = scorer.features(reconstructions)[0]
    metrics: dict[str, Any] = {
        "bce": bce,
        "mse": mean_squared_error(images, reconstructions),
        # How far reconstruction alone (blur, lost detail) moves the features.
        "frechet_distance_reconstructions": scorer.distance(reconstructed),
        # The BCE's anchors: a perfect reconstruction (grey pixels cost even then), and the
        # mean training image for every input; bce_gain is the share of that gap closed.
        "bce_floor": floor,
        "bce_mean_image": blind,
        "bce_gain": (blind - bce) / (blind - floor),
        "reconstructions": scorer.against_test(reconstructed),
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
    # Claim 2: the share of latent points that fall in the gaps between test embeddings.
    metrics["generation"]["latent_far_share"] = far_share(points, embeddings)
    return metrics


def reference(
    params: EvaluateParams,
    seed: int,
    classifier_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    report_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """The reference stage: what every model's evaluation compares with, computed once per
    classifier and test set: the classifier's features of the test images and their
    k-nearest-neighbour radii, and the BCE anchors (`bce_anchors`), to out_dir/reference.npz;
    the classifier's accuracy and what real images score (the Frechet distance and the
    generation metrics of a training subset of `evaluate.generated` images), logged into the
    classifier's evaluation run and written with its id to report_path
    (`{"metrics": {"test": ...}, "run": ...}`). Returns the metrics."""
    check_store()  # fail before the work, not after
    images, labels = load_split(Path(data_dir) / "test.npz")
    train_images, _ = load_split(Path(data_dir) / "train.npz")
    record = read_run_record(classifier_dir)
    classifier = feature_model(load_keras(Path(classifier_dir) / "classifier.keras"))
    largest = max(len(images), params.generated)  # the most images one predict call gets
    require_batch_fits(classifier, params.batch_size, largest, "evaluate.batch_size", False)
    features, probabilities = predict(classifier, images, params.batch_size)
    scorer = Scorer(classifier, params.batch_size, features, _kid_rng(seed, "classifier"))
    rng = np.random.default_rng(seed)
    subset = np.sort(
        rng.choice(len(train_images), min(params.generated, len(train_images)), False)
    )
    train_features, _ = scorer.features(train_images[subset])
    metrics: dict[str, Any] = {
        "test": {
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "mean_confidence": float(probabilities.max(axis=1).mean()),
            "frechet_distance_train": scorer.distance(train_features),
            # what real images score: the reference for every generated set
            "train_reference": scorer.against_test(train_features),
        }
    }
    require_finite(metrics)
    digest = data_digest(data_dir)
    saved = Reference(features, scorer.radii, bce_anchors(images, train_images), digest)
    run = _log(record, params, seed, metrics, images, labels, data_dir, digest)
    with uninterrupted("writing the reference"):  # both, or neither
        saved.save(Path(out_dir) / REFERENCE_FILE)
        write_json(report_path, {"metrics": metrics, "run": run})
    return metrics


def evaluate(
    params: EvaluateParams,
    seed: int,
    name: str,
    models_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    reference_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """The evaluate stage of one model (`name`: ae or vae): its `<model>.test` metrics,
    scored against the reference stage's features of the test images, logged into an
    evaluation run of its own, a child of the run that trained it (`tracking.evaluations`),
    then written with the generated images' class shares and the run's id to out_path
    (`{"metrics": {"test": ...}, "class_shares": ..., "run": ...}`; `collect` merges the
    models' files into reports/). Returns the metrics; raises EvaluationError on a value that
    is not finite, before anything is logged or written."""
    check_store()  # fail before the work, not after
    images, labels = load_split(Path(data_dir) / "test.npz")
    digest = data_digest(data_dir)
    saved = Reference.load(Path(reference_dir) / REFERENCE_FILE, digest)
    model = load_trained(models_dir, name)
    classifier = feature_model(load_keras(Path(models_dir) / "classifier" / "classifier.keras"))
    largest = max(len(images), params.generated)  # the most images one predict call gets
    for part in (classifier, model.encoder, model.decoder):
        require_batch_fits(part, params.batch_size, largest, "evaluate.batch_size", False)
    scorer = Scorer(
        classifier, params.batch_size, saved.features, _kid_rng(seed, name), saved.radii
    )
    log.info("%s on %d test images, %d generated", name, len(images), params.generated)
    metrics: dict[str, Any] = {
        "test": evaluate_model(
            model,
            images,
            scorer,
            generated=params.generated,
            batch_size=params.batch_size,
            seed=seed,
            anchors=saved.anchors,
        )
    }
    require_finite(metrics)
    run = _log(model.run, params, seed, metrics, images, labels, data_dir, digest)
    shares = metrics["test"]["generation"].pop("class_shares")
    write_json(out_path, {"metrics": metrics, "class_shares": shares, "run": run})
    return metrics


def _log(
    record: dict[str, Any],
    params: EvaluateParams,
    seed: int,
    metrics: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    data_dir: str | os.PathLike[str],
    digest: str,
) -> dict[str, str] | None:
    """The evaluation run of the training run `record` names, with the test set as its
    dataset (`log_evaluation`)."""
    test_set = split_datasets({"test": (images, labels)}, data_dir, digest)
    return log_evaluation(record, params.model_dump(), seed, flatten(metrics), test_set, digest)


def bce_anchors(images: np.ndarray, train_images: np.ndarray) -> tuple[float, float]:
    """The BCE on `images` of a perfect reconstruction (grey pixels cost even then) and of
    the mean training image given for every input: the range a model's BCE reads against."""
    mean_image = train_images.mean(axis=0, dtype=np.float64)
    blind = binary_crossentropy(images, np.broadcast_to(mean_image, images.shape))
    return bce_floor(images), blind


def require_finite(metrics: dict[str, Any]) -> None:
    """Raise EvaluationError naming every value that is NaN or infinite."""
    bad = [k for k, v in flatten(metrics).items() if not np.isfinite(v)]
    if bad:
        raise EvaluationError(
            f"{', '.join(bad)} not finite; the model collapsed or diverged: check its "
            "history.csv and retrain it with other params"
        )
