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

from collections.abc import Callable
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


def _observations(samples: np.ndarray) -> np.ndarray:
    """The samples as float64 rows, at least two of them (a covariance needs two)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D array of at least two rows, got shape {x.shape}")
    return x


def gaussian_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance matrix (rows are observations)."""
    x = _observations(samples)
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
    mean1: np.ndarray,
    cov1: np.ndarray,
    mean2: np.ndarray,
    cov2: np.ndarray,
    root1: np.ndarray | None = None,
) -> float:
    """|mean1 - mean2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)): the squared 2-Wasserstein
    distance between two Gaussians, as FID computes it.

    tr (cov1 cov2)^(1/2) is the sum of the square roots of the eigenvalues of the symmetric
    matrix cov1^(1/2) cov2 cov1^(1/2), which stays exact when a covariance is singular (a
    feature that is always 0, such as a ReLU unit that never fires). `root1`: cov1^(1/2)
    (`psd_sqrt(cov1)`), when a caller compares many Gaussians with one reference (at 4,096
    features the root costs as much as the rest)."""
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = psd_sqrt(cov1) if root1 is None else root1
    middle = root1 @ cov2 @ root1
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    return _wasserstein(mean1, mean2, np.trace(cov1), np.trace(cov2), trace_root)


def _wasserstein(
    mean1: np.ndarray, mean2: np.ndarray, trace1: float, trace2: float, trace_root: float
) -> float:
    """|mean1 - mean2|^2 + tr cov1 + tr cov2 - 2 tr (cov1 cov2)^(1/2), round-off below 0 as 0."""
    diff = mean1 - mean2
    return float(max(diff @ diff + trace1 + trace2 - 2 * trace_root, 0.0))


def frechet_distance_of_samples(
    x1: np.ndarray,
    x2: np.ndarray,
    reference: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> float:
    """`frechet_distance` of the Gaussians fitted to two sets of samples (rows), by the cheaper
    of two exact routes. With A1, A2 the centred samples over sqrt(n - 1), cov1 cov2 =
    A1' A1 A2' A2 has the nonzero eigenvalues of (A2 A1')(A2 A1')', so tr (cov1 cov2)^(1/2)
    is the sum of the singular values of the n2 x n1 matrix A2 A1', and tr cov = |A|^2:
    about n1 n2 d work, where the covariances' route costs about d^3. With fewer samples than
    features (4,096 features against 520 test images, say) that is seconds, not minutes.
    `reference` returns x1's (mean, covariance, `psd_sqrt` of the covariance), for a caller
    that compares many sets with one reference; only the covariances' route calls it."""
    x1, x2 = _observations(x1), _observations(x2)
    (n1, features), n2 = x1.shape, len(x2)
    if n1 * n2 >= features * features:
        mean1, cov1, root1 = reference() if reference else (*gaussian_fit(x1), None)
        return frechet_distance(mean1, cov1, *gaussian_fit(x2), root1)
    mean1, mean2 = x1.mean(axis=0), x2.mean(axis=0)
    a1, a2 = (x1 - mean1) / np.sqrt(n1 - 1), (x2 - mean2) / np.sqrt(n2 - 1)
    trace_root = np.sum(np.linalg.svd(a2 @ a1.T, compute_uv=False))
    return _wasserstein(mean1, mean2, np.sum(a1 * a1), np.sum(a2 * a2), trace_root)


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


# --- quality and coverage of a generated set ------------------------------------------------
# A Frechet distance mixes two failures: samples unlike any real image (quality) and real
# images no sample resembles (coverage). These metrics separate them, on the same features.

NEIGHBOURS = 5  # k of the k-nearest-neighbour balls (Kynkaenniemi et al. 2019; Naeem et al. 2020)
KID_SUBSETS = 50  # subsets KID is averaged over ...
KID_SUBSET_SIZE = 1000  # ... of this many samples from each set (fewer if a set is smaller)
_CHUNK = 1024  # rows of a distance matrix held at once: 1024 x 10,000 float64 = 82 MB


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a and of b, clipped at 0."""
    d = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _chunks(x: np.ndarray):
    for start in range(0, len(x), _CHUNK):
        yield x[start : start + _CHUNK]


def knn_radii(x: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest other row: the radius of the
    ball around it that, together with the others, approximates the set's manifold."""
    x = np.asarray(x, dtype=np.float64)
    if not 0 < k < len(x):
        raise ValueError(f"k must be between 1 and {len(x) - 1} for {len(x)} rows, got {k}")
    # k + 1: the row itself, at distance 0, is its own nearest neighbour. Each chunk's column
    # is copied out: a view would keep the chunk's whole distance matrix alive (memory
    # quadratic in len(x): 15 GB at 100,000 rows).
    return np.concatenate(
        [np.partition(_sq_distances(c, x), k, axis=1)[:, k].copy() for c in _chunks(x)]
    )


def _within(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each point, how many of the centres' balls contain it."""
    return _balls(points, centres, radii)[0]


def _balls(
    points: np.ndarray, centres: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """In one pass over the distances: for each point, how many of the centres' balls contain
    it; for each centre, whether its nearest point lies in its ball."""
    counts, nearest = [], np.full(len(centres), np.inf)
    for c in _chunks(points):
        d = _sq_distances(c, centres)
        counts.append((d <= radii).sum(axis=1))
        nearest = np.minimum(nearest, d.min(axis=0))
    return np.concatenate(counts), nearest <= radii


def manifold_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    k: int = NEIGHBOURS,
    real_radii: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision and recall (Kynkaenniemi et al. 2019), density and coverage (Naeem et al.
    2020) of a generated set `fake` against a real set, on k-nearest-neighbour balls.

    - precision: the share of generated samples inside some real sample's ball (quality);
    - recall: the share of real samples inside some generated sample's ball (diversity);
    - density: how many real balls contain a generated sample, on average, divided by k: 1 for
      samples distributed like the real ones ((k+1)/k for a copy of the real set), above 1
      where they crowd into dense regions, below where they stray;
    - coverage: the share of real samples whose ball holds a generated sample (robust to
      outliers, unlike recall).

    `real_radii` (knn_radii(real, k)) saves recomputing them for several generated sets."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k)
    inside, covered = _balls(fake, real, real_radii)
    return {
        "precision": float(np.mean(inside > 0)),
        "recall": float(np.mean(_within(real, fake, fake_radii) > 0)),
        "density": float(inside.sum() / (k * len(fake))),
        "coverage": float(np.mean(covered)),
    }


def far_share(points: np.ndarray, reference: np.ndarray, k: int = NEIGHBOURS) -> float:
    """The share of points outside every k-nearest-neighbour ball of the reference set: in a
    latent space, the samples that fall in the gaps between the embeddings of real images."""
    reference = np.asarray(reference, np.float64)
    inside = _within(np.asarray(points, np.float64), reference, knn_radii(reference, k))
    return float(np.mean(inside == 0))


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kernel_distance(
    real: np.ndarray,
    fake: np.ndarray,
    rng: np.random.Generator,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> tuple[float, float]:
    """The kernel inception distance (Binkowski et al. 2018) on these features: the unbiased
    estimate of the squared MMD with the cubic polynomial kernel (x.y/d + 1)^3, averaged over
    random subsets drawn without replacement; returns (mean, standard deviation over the
    subsets). Unbiased, so it is near 0 for two samples of one distribution at any size, and
    may be slightly negative."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"need at least 2 samples in each set, got {len(real)} and {len(fake)}")
    estimates = np.empty(subsets)
    # When a subset is the whole of both sets (as many reconstructions as test images, fewer
    # than subset_size), every subset is the same sets in another order: one estimate serves
    # all (the subsets are still drawn, so the generator moves on as it would).
    whole = m == len(real) == len(fake)
    for s in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        if whole and s > 0:
            estimates[s] = estimates[0]
            continue
        kxx, kyy, kxy = (
            _polynomial_kernel(x, x),
            _polynomial_kernel(y, y),
            _polynomial_kernel(x, y),
        )
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates[s] = within - 2.0 * kxy.mean()
    return float(estimates.mean()), float(estimates.std(ddof=1) if subsets > 1 else 0.0)


def generation_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    rng: np.random.Generator,
    real_radii: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision, recall, density, coverage (k = NEIGHBOURS) and KID (mean and spread over
    subsets) of fake against real."""
    kid, kid_std = kernel_distance(real, fake, rng)
    found = manifold_metrics(real, fake, NEIGHBOURS, real_radii)
    return {**found, "kid": kid, "kid_std": kid_std}


def bce_floor(targets: np.ndarray) -> float:
    """The BCE of a perfect reconstruction: the targets' own entropy (grey pixels cost even
    when predicted exactly), with Keras' clipping."""
    return binary_crossentropy(targets, targets)
