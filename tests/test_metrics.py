"""The metric math (pure NumPy) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wardrobe.metrics import (
    binary_crossentropy,
    class_distribution,
    class_key,
    entropy_bits,
    frechet_distance,
    gaussian_fit,
    gaussian_kl_from_standard_normal,
    kl_divergence,
    latent_statistics,
    mean_squared_error,
)


def test_binary_crossentropy_by_hand():
    targets = np.array([[0.0, 1.0], [1.0, 0.5]])
    predictions = np.array([[0.1, 0.8], [0.9, 0.5]])
    # -(log 0.9 + log 0.8 + log 0.9 + (0.5 log 0.5 + 0.5 log 0.5)) / 4
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.5)) / 4
    assert binary_crossentropy(targets, predictions) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.281753, abs=1e-6)


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
    # Agrees with the direct formula using a general matrix square root (scipy's sqrtm).
    from scipy import linalg

    direct = (mx - my) @ (mx - my) + np.trace(cx + cy - 2 * np.real(linalg.sqrtm(cx @ cy)))
    assert frechet_distance(mx, cx, my, cy) == pytest.approx(direct, rel=1e-9)


def test_frechet_distance_with_a_singular_covariance():
    # A feature that is always 0 (a dead ReLU unit) makes the covariance singular.
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=(500, 3)), np.zeros(500)]
    assert frechet_distance(*gaussian_fit(x), *gaussian_fit(x)) == pytest.approx(0, abs=1e-9)


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
