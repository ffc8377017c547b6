"""The plots stage: the lecture's figures of one trained model, as PNG files under
reports/figures/<model>/ (DVC plots), logged as artifacts (`figures/`) of the model's
evaluation run. What each figure shows is drawn by `figures`; this module computes it."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
from scipy.stats import norm

from wardrobe.collect import read_evaluation
from wardrobe.dataset import load_split
from wardrobe.figures import (
    MODEL_TITLES,
    generated_figure,
    latent_by_class_figure,
    latent_grid_figure,
    latent_pvalues_figure,
    latent_scatter_figure,
    reconstructions_figure,
    save,
)
from wardrobe.fsio import atomic_dir
from wardrobe.params import PlotsParams
from wardrobe.processes import uninterrupted
from wardrobe.tracking.runs import log_to_recorded_run
from wardrobe.tracking.store import check_store
from wardrobe.trained import TrainedModel, load_trained

log = logging.getLogger(__name__)


def plot(
    params: PlotsParams,
    seed: int,
    name: str,
    models_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    evaluation_path: str | os.PathLike[str],
) -> list[Path]:
    """Draw every figure of one model (`name`: ae or vae) into out_dir, logged into the
    model's evaluation run (evaluation_path, written by `evaluate@<name>`); out_dir is
    replaced only once every figure is drawn and logged. Returns the paths."""
    check_store()  # fail before the work, not after
    run = read_evaluation(evaluation_path, f"evaluate@{name}")["run"]
    images, labels = load_split(Path(data_dir) / "test.npz")
    model = load_trained(models_dir, name)
    with contextlib.ExitStack() as writing, atomic_dir(out_dir) as staging:  # swaps in at the end
        drawn = draw_model_figures(model, images, labels, params, seed, staging)
        if run:  # None: the store lacks the training run; files only
            log_to_recorded_run(run, artifacts=staging, artifact_path="figures")
        writing.enter_context(uninterrupted("writing the figures"))  # the swap, whole
    out = Path(out_dir)
    log.info("%s: %s written to %s", name, ", ".join(p.name for p in drawn), out)
    return [out / p.name for p in drawn]


def grid_axes(model: TrainedModel, z: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates along z[0] and z[1]: the AE spans its embeddings' range; the VAE
    takes norm.ppf of evenly spaced probabilities (the quantiles of N(0, 1))."""
    if model.variational:
        q = norm.ppf((np.arange(size) + 0.5) / size)
        return q, q
    return (np.linspace(z[:, 0].min(), z[:, 0].max(), size),
            np.linspace(z[:, 1].min(), z[:, 1].max(), size))  # fmt: skip


def grid_points(model: TrainedModel, z: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The grid as latent points, row-major over (y, x). Dimensions beyond the first two sit
    at the prior's centre (VAE) or the embeddings' mean (AE)."""
    gx, gy = np.meshgrid(xs, ys)
    centre = np.zeros(model.latent_dim) if model.variational else z.mean(axis=0)
    points = np.tile(centre, (gx.size, 1)).astype(np.float32)
    points[:, 0], points[:, 1] = gx.ravel(), gy.ravel()
    return points


def draw_model_figures(
    model: TrainedModel,
    images: np.ndarray,
    labels: np.ndarray,
    params: PlotsParams,
    seed: int,
    out_dir: str | os.PathLike[str],
    batch_size: int = 500,
) -> list[Path]:
    """Draw every figure of `figure_names(model.name)` into out_dir; return the paths."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    head = MODEL_TITLES[model.name]
    n = min(params.scatter_points, len(images))
    codes = model.encode(images[:n], batch_size, rng)
    z, y = codes["z"], labels[:n]
    shown = min(params.reconstructions, n)
    recon_codes = codes.get("z_mean", z)[:shown]
    reconstructed = model.decode(recon_codes, batch_size)
    points = model.sample_latent(params.samples, rng, z)
    sampling = "z ~ N(0, I)" if model.variational else "uniform in the embeddings' box"
    xs, ys = grid_axes(model, z, params.grid_size)
    decoded_grid = model.decode(grid_points(model, z, xs, ys), batch_size)
    space = f"{n} test images" + (", sampled z" if model.variational else "")
    figures = {
        "reconstructions": reconstructions_figure(
            images[:shown], reconstructed, recon_codes,
            f"{head}: test images (top) and their reconstructions (bottom)"
            + (", decoded from z_mean" if model.variational else ""),
        ),
        "latent_scatter": latent_scatter_figure(z, f"{head}: latent space of {space}"),
        "latent_by_class": latent_by_class_figure(
            z, y, f"{head}: latent space of {space}, coloured by class"
        ),
        "generated": generated_figure(
            z, points, model.decode(points, batch_size),
            f"{head}: new images decoded from {params.samples} random latent points", sampling,
        ),
        "latent_grid": latent_grid_figure(
            z, y, xs, ys, decoded_grid,
            f"{head}: images decoded on a {params.grid_size} x {params.grid_size} latent grid"
            + (" (normal quantiles)" if model.variational else " (the embeddings' range)"),
        ),
    }  # fmt: skip
    if model.variational:
        figures["latent_pvalues"] = latent_pvalues_figure(
            z, y, f"{head}: {space} in latent space and in p-value space"
        )
    paths = []
    for kind, fig in figures.items():
        path = out / f"{kind}.png"
        save(fig, path, params.dpi)
        paths.append(path)
    return paths
