"""The metric math (pure NumPy) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wardrobe.metrics import (
    KID_SUBSETS,
    NEIGHBOURS,
    bce_floor,
    binary_crossentropy,
    class_distribution,
    class_key,
    entropy_bits,
    far_share,
    frechet_distance,
    frechet_distance_of_samples,
    gaussian_fit,
    gaussian_kl_from_standard_normal,
    kernel_distance,
    kl_divergence,
    knn_radii,
    latent_statistics,
    manifold_metrics,
    mean_squared_error,
    psd_sqrt,
)


def test_binary_crossentropy_by_hand():
    targets = np.array([[0.0, 1.0], [1.0, 0.5]])
    predictions = np.array([[0.1, 0.8], [0.9, 0.5]])
    # -(log 0.9 + log 0.8 + log 0.9 + (0.5 log 0.5 + 0.5 log 0.5)) / 4
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.5)) / 4
    assert binary_crossentropy(targets, predictions) == pytest.approx(expected, rel=1e-12)
    # and what Keras computes for the same images, the loss the models train on
    import keras

    keras_bce = float(keras.ops.mean(keras.losses.binary_crossentropy(targets, predictions)))
    assert binary_crossentropy(targets, predictions) == pytest.approx(keras_bce, rel=1e-6)


def test_binary_crossentropy_clips_like_keras():
    # A confident wrong prediction costs -log(1e-7), not infinity.
    assert binary_crossentropy(np.array([1.0]), np.array([0.0])) == pytest.approx(
        -math.log(1e-7), rel=1e-6
    )


def test_binary_crossentropy_matches_keras_on_images():
    import keras

    rng = np.random.default_rng(1)
    targets = rng.random((6, 32, 32, 1), dtype=np.float32) ** 3
    predictions = rng.random((6, 32, 32, 1), dtype=np.float32)
    keras_value = float(np.mean(keras.losses.binary_crossentropy(targets, predictions)))
    assert binary_crossentropy(targets, predictions) == pytest.approx(keras_value, rel=1e-5)


def test_mean_squared_error_by_hand():
    assert mean_squared_error(np.array([[0.0, 1.0]]), np.array([[0.5, 0.0]])) == 0.625


def test_kl_divergence_by_hand():
    z_mean = np.array([[0.0, 0.0], [1.0, 0.0]])
    z_log_var = np.zeros((2, 2))
    # image 1: 0; image 2: -0.5 * (1 + 0 - 1 - 1) = 0.5; mean 0.25
    assert kl_divergence(z_mean, z_log_var) == pytest.approx(0.25)
    # one dimension with variance 2: -0.5 * (1 + ln 2 - 2) = 0.5 * (1 - ln 2)
    assert kl_divergence(np.zeros((1, 1)), np.log([[2.0]])) == pytest.approx(
        0.5 * (1 - math.log(2))
    )


def test_gaussian_kl_from_standard_normal_by_hand():
    assert gaussian_kl_from_standard_normal(np.zeros(2), np.eye(2)) == 0.0
    assert gaussian_kl_from_standard_normal(np.array([1.0, 0.0]), np.eye(2)) == pytest.approx(0.5)
    # diag(2, 1): 0.5 * (3 - 2 - ln 2)
    assert gaussian_kl_from_standard_normal(np.zeros(2), np.diag([2.0, 1.0])) == pytest.approx(
        0.5 * (1 - math.log(2))
    )
    assert gaussian_kl_from_standard_normal(np.zeros(2), np.diag([1.0, 0.0])) == math.inf


def test_frechet_distance_of_known_gaussians():
    # 1-D: N(0, 1) and N(1, 4): 1 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2)
    # 2-D: |(3, 4)|^2 + 2 * (1 + 4 - 2 * 2) = 27
    assert frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2)) == (
        pytest.approx(27)
    )
    # diagonal covariances: the sum of (sqrt(a) - sqrt(b))^2
    a, b = np.diag([1.0, 9.0, 0.25]), np.diag([4.0, 1.0, 0.0])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), b) == pytest.approx(1 + 4 + 0.25)


def test_frechet_distance_is_zero_for_the_same_gaussian_and_symmetric():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    y = rng.normal(size=(400, 5)) + 0.3
    mx, cx = gaussian_fit(x)
    my, cy = gaussian_fit(y)
    assert frechet_distance(mx, cx, mx, cx) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(mx, cx, my, cy) == pytest.approx(frechet_distance(my, cy, mx, cx))
    # with the reference's root computed once, as evaluate does
    root = psd_sqrt(cx)
    assert frechet_distance(mx, cx, my, cy, root) == pytest.approx(
        frechet_distance(mx, cx, my, cy), rel=1e-12
    )
    # Agrees with the direct formula using a general matrix square root (scipy's sqrtm).
    from scipy import linalg

    direct = (mx - my) @ (mx - my) + np.trace(cx + cy - 2 * np.real(linalg.sqrtm(cx @ cy)))
    assert frechet_distance(mx, cx, my, cy) == pytest.approx(direct, rel=1e-9)


def test_frechet_distance_with_a_singular_covariance():
    # A feature that is always 0 (a dead ReLU unit) makes the covariance singular.
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=(500, 3)), np.zeros(500)]
    assert frechet_distance(*gaussian_fit(x), *gaussian_fit(x)) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("n1, n2, features", [(30, 6, 64), (520, 10, 256), (400, 300, 5)])
def test_the_frechet_distance_of_samples_is_the_covariances_by_either_route(n1, n2, features):
    """Fewer samples than features (a rank-deficient covariance, the route through the
    samples) or more (the route through the covariances): the distance `frechet_distance`
    gives for the two fitted Gaussians, a dead feature included. (The covariances' route
    adds the square roots of its round-off eigenvalues when the rank is low: 1e-6 apart.)
    A shifted copy is exactly its shift's squared length away."""
    rng = np.random.default_rng(n1)
    mix = rng.normal(size=(features, features))
    x1 = np.maximum(rng.normal(size=(n1, features)) @ mix, 0)  # ReLU-like features
    x2 = np.maximum(rng.normal(size=(n2, features)) @ mix + 0.5, 0)
    x1[:, 0] = x2[:, 0] = 0.0
    expected = frechet_distance(*gaussian_fit(x1), *gaussian_fit(x2))
    roots = []
    fit1 = gaussian_fit(x1)
    got = frechet_distance_of_samples(
        x1, x2, lambda: roots.append(1) or (*fit1, psd_sqrt(fit1[1]))
    )
    assert got == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_of_samples(x1, x2) == got
    # the reference's covariance and root are asked for only on the covariances' route
    assert len(roots) == (n1 * n2 >= features * features)
    shift = rng.normal(size=features)
    assert frechet_distance_of_samples(x1, x1 + shift) == pytest.approx(shift @ shift, rel=1e-9)


def test_latent_statistics():
    stats = latent_statistics(np.array([[1.0, 0.0], [3.0, 2.0], [2.0, 1.0]]))
    assert stats["mean"] == {"z0": 2.0, "z1": 1.0}
    assert stats["std"] == {"z0": pytest.approx(1.0), "z1": pytest.approx(1.0)}  # ddof 1
    normal = np.random.default_rng(0).normal(size=(100_000, 2))
    assert latent_statistics(normal)["kl_from_standard_normal"] == pytest.approx(0, abs=1e-3)
    shifted = latent_statistics(normal * 2 + 1)  # N(1, 4 I): 0.5 * (8 + 2 - 2 - ln 16)
    assert shifted["kl_from_standard_normal"] == pytest.approx(0.5 * (8 - math.log(16)), rel=1e-2)


def test_class_distribution_and_entropy():
    shares = class_distribution(np.array([0, 0, 1, 9]), 10)
    assert shares.tolist() == [0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.25]
    assert entropy_bits(shares) == pytest.approx(1.5)
    assert entropy_bits(np.full(10, 0.1)) == pytest.approx(math.log2(10))
    assert entropy_bits(np.eye(10)[3]) == 0.0


def test_class_keys():
    assert class_key("T-shirt/top") == "t_shirt_top"
    assert class_key("Ankle boot") == "ankle_boot"


# --- precision, recall, density, coverage, KID: cases with known answers ---------------------


def gaussian(n: int, d: int = 8, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).standard_normal((n, d))
    points[:, 0] += shift
    return points


def test_a_copy_of_the_real_set_is_perfect_and_density_is_k_plus_one_over_k():
    real = gaussian(600)
    got = manifold_metrics(real, real.copy())
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    # each real ball holds its own centre and its k neighbours: (k + 1) N / (k N)
    assert got["density"] == pytest.approx((NEIGHBOURS + 1) / NEIGHBOURS)


def test_disjoint_sets_score_zero():
    got = manifold_metrics(gaussian(400), gaussian(300, shift=100.0, seed=1))
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_samples_from_one_of_two_clusters_have_precision_but_half_the_recall():
    cluster_a, cluster_b = gaussian(300, seed=2), gaussian(300, shift=1000.0, seed=3)
    real = np.concatenate([cluster_a, cluster_b])
    got = manifold_metrics(real, cluster_a)
    assert got["precision"] == 1.0  # every sample is a real image
    assert got["recall"] == 0.5 and got["coverage"] == 0.5  # cluster B is never generated
    assert got["density"] == pytest.approx((NEIGHBOURS + 1) / NEIGHBOURS)


def test_precision_and_coverage_fall_as_the_generated_set_moves_away():
    real = gaussian(800)
    scores = [manifold_metrics(real, gaussian(800, shift=s, seed=4)) for s in (0, 1, 2, 4, 6)]
    for key in ("precision", "recall", "density", "coverage"):
        values = [s[key] for s in scores]
        assert values == sorted(values, reverse=True) and values[-1] < 0.05 * values[0], key
    # a second sample of the same distribution: density near 1, the others near but below it
    assert scores[0]["density"] == pytest.approx(1.0, abs=0.1)
    assert all(0.9 < scores[0][key] < 1.0 for key in ("precision", "recall", "coverage"))


def kid_of_shifted_gaussians(d: int, m: float) -> float:
    """The squared MMD of N(0, I) and N(mu, I), |mu|^2 = m, under the kernel (x.y/d + 1)^3,
    from the Gaussian moments E(x.y), E(x.y)^2, E(x.y)^3."""
    return (m**3 + 6 * m**2 + 3 * (d + 2) * m) / d**3 + 3 * m**2 / d**2 + 3 * m / d


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 2.0])
def test_kid_matches_the_squared_mmd_of_two_gaussians(shift):
    real, fake = gaussian(4000, seed=5), gaussian(4000, shift=shift, seed=6)
    kid, spread = kernel_distance(real, fake, np.random.default_rng(0))
    expected = kid_of_shifted_gaussians(8, shift**2)
    # within 4 standard errors of the mean over subsets, and 0 for one distribution
    assert abs(kid - expected) < 4 * spread / np.sqrt(KID_SUBSETS) + 1e-3, (kid, expected)
    assert spread > 0


def test_kid_of_sets_smaller_than_a_subset_is_their_whole_sets_estimate():
    """Sets smaller than a subset: each subset is both whole sets, so the estimate is theirs,
    with no spread (computed once), and the generator moves on as it would."""
    real, fake = gaussian(300, seed=5), gaussian(300, shift=1.0, seed=6)
    rng = np.random.default_rng(0)
    kid, spread = kernel_distance(real, fake, rng)
    alone, _ = kernel_distance(real, fake, np.random.default_rng(1), subsets=1)
    assert kid == pytest.approx(alone, rel=1e-12) and spread == 0.0
    after = np.random.default_rng(0)
    for _ in range(2 * KID_SUBSETS):
        after.choice(300, 300, replace=False)
    assert rng.random() == after.random()


def test_kid_needs_two_samples_and_far_share_counts_the_gaps():
    with pytest.raises(ValueError, match="at least 2 samples"):
        kernel_distance(gaussian(1), gaussian(5), np.random.default_rng(0))
    reference = gaussian(500)
    assert far_share(reference[:100], reference) == 0.0
    assert far_share(gaussian(50, shift=50.0), reference) == 1.0
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        knn_radii(gaussian(5), k=5)


def test_the_bce_floor_is_the_targets_own_entropy():
    assert bce_floor(np.full((3, 4), 0.5)) == pytest.approx(np.log(2))
    assert bce_floor(np.array([[0.0, 1.0]])) == pytest.approx(0.0, abs=1e-6)


def test_the_fewest_generated_images_the_rules_allow_are_enough_for_every_metric():
    """params' MIN_GENERATED is the fewest images generation_metrics takes: it scores them
    (finite), and one fewer fails."""
    from wardrobe.metrics import generation_metrics
    from wardrobe.params import MIN_GENERATED

    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    scored = generation_metrics(real, rng.normal(size=(MIN_GENERATED, 8)), rng)
    assert all(math.isfinite(v) for v in scored.values()), scored
    with pytest.raises(ValueError):
        generation_metrics(real, rng.normal(size=(MIN_GENERATED - 1, 8)), rng)


def test_knn_radii_hold_one_chunk_of_distances_at_a_time():
    """The radii of n rows cost memory linear in n: one chunk's distance matrix at a time
    (with the chunks' matrices kept alive, 20,000 rows took 20 of them, 3.3 GB)."""
    import tracemalloc

    from wardrobe.metrics import _CHUNK

    rows = gaussian(20_000)
    chunk_bytes = _CHUNK * len(rows) * 8
    tracemalloc.start()
    try:
        radii = knn_radii(rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert radii.shape == (len(rows),) and np.all(radii > 0)
    assert peak < 6 * chunk_bytes, (
        f"peak {peak / 2**20:.0f} MiB, a chunk {chunk_bytes / 2**20:.0f}"
    )
