"""The lecture's architectures, the VAE's loss and sampling, and saving/loading."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import objective_and_its_sample
from wardrobe.models.autoencoder import build_autoencoder
from wardrobe.models.vae import VAE, Sampling, build_vae

FILTERS = (32, 64, 128)


def test_autoencoder_parameter_counts_and_shapes():
    autoencoder, encoder, decoder = build_autoencoder(2, FILTERS)
    assert encoder.count_params() == 96_770
    assert decoder.count_params() == 246_273
    assert autoencoder.count_params() == 96_770 + 246_273
    assert [layer.count_params() for layer in encoder.layers] == [0, 320, 18_496, 73_856, 0, 4_098]
    assert [layer.count_params() for layer in decoder.layers] == [
        0, 6_144, 0, 147_584, 73_792, 18_464, 289,
    ]  # fmt: skip
    assert encoder.output_shape == (None, 2)
    assert decoder.output_shape == (None, 32, 32, 1)
    assert decoder.layers[-1].activation.__name__ == "sigmoid"


def test_vae_parameter_counts():
    vae, encoder, decoder = build_vae(2, FILTERS, beta=500.0, seed=0)
    assert encoder.count_params() == 100_868
    assert decoder.count_params() == 246_273
    assert [o.shape for o in encoder.outputs] == [(None, 2)] * 3
    assert vae.count_params() == 100_868 + 246_273


def test_latent_dim_and_filters_are_params():
    _, encoder, decoder = build_autoencoder(8, (16, 32))
    assert encoder.output_shape == (None, 8)
    assert decoder.layers[1].output.shape == (None, 8 * 8 * 32)  # 32 / 2**2 = 8
    assert decoder.output_shape == (None, 32, 32, 1)


def test_sampling_is_the_reparameterization_trick():
    z_mean = np.full((20_000, 2), [1.0, -2.0], np.float32)
    z_log_var = np.full((20_000, 2), [0.0, np.log(4.0)], np.float32)
    z = keras.ops.convert_to_numpy(Sampling(seed=3)([z_mean, z_log_var]))
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 2.0], rtol=0.03)


@pytest.mark.parametrize("beta", [1.0, 500.0, 2000.0])
def test_vae_objective_matches_the_formula(beta):
    """total = beta x BCE(images, decoder(z)) + KL, with z the sample the objective drew: the
    sampler's state is put back and z drawn again, so every term is recomputed exactly."""
    vae, _, decoder = build_vae(2, FILTERS, beta=beta, seed=0)
    images = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    (total, reconstruction, kl), (z_mean, z_log_var, z) = objective_and_its_sample(vae, images)
    decoded = np.clip(keras.ops.convert_to_numpy(decoder(z)), 1e-7, 1 - 1e-7)
    bce = -np.mean(images * np.log(decoded) + (1 - images) * np.log(1 - decoded))
    assert reconstruction == pytest.approx(beta * bce, rel=1e-4)
    expected_kl = np.mean(np.sum(-0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)), axis=1))
    assert kl == pytest.approx(expected_kl, rel=1e-4, abs=1e-6)
    assert total == pytest.approx(beta * bce + expected_kl, rel=1e-4)


def test_a_few_vae_train_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    vae, _, _ = build_vae(2, FILTERS, beta=500.0, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(0.001))
    images = np.zeros((32, 32, 32, 1), np.float32)
    images[:, 8:24, 8:24] = 1.0  # one simple garment, easy to learn
    before = vae.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    vae.fit(images, epochs=15, batch_size=32, verbose=0)
    after = vae.evaluate(images, batch_size=32, verbose=0, return_dict=True)
    assert set(before) == {"total_loss", "reconstruction_loss", "kl_loss"}
    assert after["total_loss"] < 0.8 * before["total_loss"]


def test_vae_fits_with_the_books_validation_tuple():
    vae, _, _ = build_vae(2, FILTERS, beta=500.0, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(0.001))
    x = np.random.default_rng(0).random((20, 32, 32, 1)).astype(np.float32)
    history = vae.fit(x, epochs=1, batch_size=10, validation_data=(x, x), verbose=0)
    assert {"val_total_loss", "val_reconstruction_loss", "val_kl_loss"} <= set(history.history)


LOAD_AND_PREDICT = """
import sys, numpy as np, keras
import wardrobe.models.vae  # registers the custom classes
x = np.load(sys.argv[1])
out = {}
for name in sys.argv[2:]:
    model = keras.models.load_model(f"{name}.keras")
    if name == "encoder":
        out[name] = np.asarray(model.predict(x, verbose=0)[0])  # z_mean
    elif name == "vae":
        z_mean = model.encoder.predict(x, verbose=0)[0]
        out[name] = np.asarray(model.decoder.predict(z_mean, verbose=0))
    else:
        inputs = x[:, :2, 0, 0] if name == "decoder" else x
        out[name] = np.asarray(model.predict(inputs, verbose=0))
np.savez("loaded.npz", **out)
"""


def test_save_and_load_in_a_new_process_gives_identical_outputs(tmp_path):
    vae, encoder, decoder = build_vae(2, FILTERS, beta=123.0, seed=0)
    x = np.random.default_rng(1).random((3, 32, 32, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for name, model in {"vae": vae, "encoder": encoder, "decoder": decoder}.items():
        model.save(tmp_path / f"{name}.keras")
    subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, "x.npy", "vae", "encoder", "decoder"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    loaded = np.load(tmp_path / "loaded.npz")
    z_mean = np.asarray(encoder.predict(x, verbose=0)[0])
    np.testing.assert_array_equal(loaded["encoder"], z_mean)
    np.testing.assert_array_equal(loaded["vae"], decoder.predict(z_mean, verbose=0))
    np.testing.assert_array_equal(loaded["decoder"], decoder.predict(x[:, :2, 0, 0], verbose=0))
    reloaded = keras.models.load_model(tmp_path / "vae.keras")
    assert isinstance(reloaded, VAE) and reloaded.beta == 123.0
