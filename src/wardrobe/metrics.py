"""The metric math, pure NumPy (no Keras, no files): reconstruction losses, KL, Gaussian fits,
the Frechet distance, latent statistics and class shares: the lecture's claims as numbers.

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

from typing import Any

import numpy as np

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


def class_distribution(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of each class among predicted labels."""
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def entropy_bits(shares: np.ndarray) -> float:
    """Shannon entropy in bits: log2(10) = 3.32 when ten classes are equally common, 0 when
    one class takes all."""
    p = np.asarray(shares, dtype=np.float64)
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)) + 0.0)
