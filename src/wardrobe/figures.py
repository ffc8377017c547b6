"""Every figure of the lecture's AE and VAE sections, from arrays (no models, never shown).

Each figure function takes arrays and returns a matplotlib Figure of a fixed size
(`FIGURE_SIZES`, in inches), so a PNG saved at `dpi` is exactly size x dpi pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none used

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from wardrobe.dataset import CLASS_NAMES

MODEL_TITLES = {"ae": "Autoencoder", "vae": "VAE"}
FIGURE_SIZES = {  # inches
    "reconstructions": (12.0, 3.6),
    "latent_scatter": (8.0, 8.0),
    "latent_by_class": (10.0, 8.0),
    "generated": (16.0, 7.0),
    "latent_grid": (16.0, 8.0),
    "latent_pvalues": (16.0, 7.5),
}
VAE_ONLY = ("latent_pvalues",)
CLASS_COLORS = plt.get_cmap("tab10").colors


def figure_names(name: str) -> list[str]:
    """The figures drawn for model `name` ("ae" or "vae"), without the .png suffix."""
    return [f for f in FIGURE_SIZES if name == "vae" or f not in VAE_ONLY]


def new_figure(kind: str) -> Figure:
    return plt.figure(figsize=FIGURE_SIZES[kind], layout="constrained")


def axis_labels(ax, dims: tuple[int, int] = (0, 1), space: str = "z") -> None:
    ax.set_xlabel(f"{space}[{dims[0]}]")
    ax.set_ylabel(f"{space}[{dims[1]}]")


def coordinates(point: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in point[:2]) + "]"


def show_image(ax, image: np.ndarray) -> None:
    ax.imshow(np.squeeze(image), cmap="gray_r", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def class_scatter(
    ax, z: np.ndarray, labels: np.ndarray, size: float = 4.0, legend: bool = True
) -> None:
    """Points coloured by class, with a legend of class names."""
    for k, name in enumerate(CLASS_NAMES):
        mine = labels == k
        ax.scatter(z[mine, 0], z[mine, 1], s=size, alpha=0.6, color=CLASS_COLORS[k], label=name,
                   linewidths=0)  # fmt: skip
    if legend:
        ax.legend(title="class (never seen in training)", markerscale=4, fontsize=9,
                  title_fontsize=9, loc="best", framealpha=0.85)  # fmt: skip


# --- figures --------------------------------------------------------------------------------


def reconstructions_figure(
    originals: np.ndarray, reconstructed: np.ndarray, codes: np.ndarray, title: str
) -> Figure:
    """Test originals (top row) over their reconstructions (bottom row), each reconstruction
    captioned with the latent point it was decoded from."""
    n = len(originals)
    fig = new_figure("reconstructions")
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        show_image(axes[0, i], originals[i])
        show_image(axes[1, i], reconstructed[i])
        axes[1, i].set_xlabel(coordinates(codes[i]), fontsize=9)
    axes[0, 0].set_ylabel("original", fontsize=11)
    axes[1, 0].set_ylabel("reconstruction", fontsize=11)
    fig.suptitle(title, fontsize=13)
    return fig


def latent_scatter_figure(z: np.ndarray, title: str) -> Figure:
    """Embeddings as black dots, as the lecture first shows them."""
    fig = new_figure("latent_scatter")
    ax = fig.subplots()
    ax.scatter(z[:, 0], z[:, 1], c="black", alpha=0.5, s=3, linewidths=0)
    axis_labels(ax)
    ax.set_title(title, fontsize=13)
    return fig


def latent_by_class_figure(z: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    fig = new_figure("latent_by_class")
    ax = fig.subplots()
    class_scatter(ax, z, labels)
    axis_labels(ax)
    ax.set_title(title, fontsize=13)
    return fig


def generated_figure(
    z: np.ndarray, points: np.ndarray, images: np.ndarray, title: str, sampling: str
) -> Figure:
    """Left: the embeddings (grey) with the sampled points (blue, numbered). Right: the
    decoded images in a grid, each captioned with its number and coordinates."""
    fig = new_figure("generated")
    left, right = fig.subfigures(1, 2, width_ratios=(1, 1.35))
    ax = left.subplots()
    ax.scatter(z[:, 0], z[:, 1], c="black", alpha=0.25, s=3, linewidths=0, label="test images")
    ax.scatter(points[:, 0], points[:, 1], c="tab:blue", s=40, label=f"samples ({sampling})")
    for i, p in enumerate(points):
        ax.annotate(str(i + 1), p[:2], xytext=(4, 4), textcoords="offset points", fontsize=9,
                    color="tab:blue")  # fmt: skip
    axis_labels(ax)
    ax.legend(loc="best", fontsize=9)
    ax.set_title("sampled latent points", fontsize=11)
    cols = int(np.ceil(np.sqrt(len(points) * 2)))  # a wide grid: 18 -> 6 x 3
    rows = int(np.ceil(len(points) / cols))
    axes = right.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            show_image(ax, images[i])
            ax.set_xlabel(f"{i + 1}: {coordinates(points[i])}", fontsize=9)
        else:
            ax.axis("off")
    right.suptitle("decoded samples", fontsize=11)
    fig.suptitle(title, fontsize=13)
    return fig


def mosaic(tiles: np.ndarray) -> np.ndarray:
    """(rows, cols, H, W[, 1]) images -> one (rows * H, cols * W) image."""
    tiles = np.asarray(tiles)
    rows, cols, height, width = tiles.shape[:4]  # a trailing channel axis of 1 drops out
    grid = tiles.reshape(rows, cols, height, width).transpose(0, 2, 1, 3)
    return grid.reshape(rows * height, cols * width)


def latent_grid_figure(
    z: np.ndarray,
    labels: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    decoded: np.ndarray,
    title: str,
) -> Figure:
    """Left: the embeddings coloured by class with the grid's points in black. Right: the
    image decoded at each grid point, placed where the point is (top row = largest y)."""
    n = len(xs)
    fig = new_figure("latent_grid")
    left, right = fig.subplots(1, 2)
    class_scatter(left, z, labels, size=3)
    gx, gy = np.meshgrid(xs, ys)
    left.scatter(gx, gy, c="black", s=6, label="grid points")
    axis_labels(left)
    left.set_title("test images and the grid's points", fontsize=11)
    # decoded is in row-major order over (y ascending, x ascending); draw largest y on top.
    tiles = np.asarray(decoded).reshape(n, n, *np.asarray(decoded).shape[1:])[::-1]
    side = tiles.shape[2]
    right.imshow(mosaic(tiles), cmap="gray_r",
                 vmin=0.0, vmax=1.0)  # fmt: skip
    ticks = np.arange(n) * side + side / 2
    every = max(1, n // 8)
    right.set_xticks(ticks[::every], [f"{v:.2f}" for v in xs[::every]], fontsize=8)
    right.set_yticks(ticks[::every], [f"{v:.2f}" for v in ys[::-1][::every]], fontsize=8)
    axis_labels(right)
    right.set_title(f"decoded {n} x {n} grid", fontsize=11)
    fig.suptitle(title, fontsize=13)
    return fig


def latent_pvalues_figure(z: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """Left: z coloured by class. Right: the same points in p-value space, norm.cdf(z): with
    z ~ N(0, I), every class spreads evenly over the unit square."""
    fig = new_figure("latent_pvalues")
    left, right = fig.subplots(1, 2)
    class_scatter(left, z, labels, size=3)
    axis_labels(left)
    left.set_title("latent space z", fontsize=11)
    class_scatter(right, norm.cdf(z), labels, size=3, legend=False)
    axis_labels(right, space="Φ(z)")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_title("p-values Φ(z) (the standard normal CDF, same colours)", fontsize=11)
    fig.suptitle(title, fontsize=13)
    return fig


def save(fig: Figure, path: Path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
