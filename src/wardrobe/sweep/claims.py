"""The lecture's claims as curves across a sweep over β and latent size, from the sweep's
results file (reports/sweeps/<name>.json, written by `make sweep`), with the lecture's own
point (β 500, latent size 2) marked with its noise band from reports/noise.json.

    python -m wardrobe.sweep.claims reports/sweeps/claims.json --out docs/figures/claims

Four figures, one per claim (SPEC.md), and the reading of each, with numbers, in Markdown:
- `reconstruction.png`: test BCE and the share of the gap from the mean image to a perfect
  reconstruction that each model closes (`bce_gain`), against latent size (claim 1);
- `ae_gaps.png`: the AE's gaps: uniform latent draws far from every test embedding, and
  samples unlike every test image (1 - precision), against latent size (claim 2);
- `vae_prior.png`: the VAE's centring (KL of the fitted Gaussian from N(0, I)), coverage,
  recall and top-class share against β, a line per latent size, the AE's as dashed lines
  (claim 3);
- `generation.png`: Frechet distance and KID against β, as vae_prior.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_file
from wardrobe.tracking.runs import flatten

LECTURE = {"vae.beta": 500, "vae.latent_dim": 2}
BETA, LATENT = "vae.beta", "vae.latent_dim"
# (figure, title, [(metric key without the model, label, model)]); the metrics sit under
# <model>.test.<key> in reports/metrics.json.
BY_LATENT = {
    "reconstruction": ("Claim 1: reconstruction against latent size", [
        ("bce", "test BCE (lower is better)"),
        ("bce_gain", "share of the gap mean image → perfect closed"),
    ]),
    "ae_gaps": ("Claim 2: the AE's gaps against latent size", [
        ("generation.latent_far_share", "uniform latent draws far from every test embedding"),
        ("generation.unlike_share", "samples unlike every test image (1 - precision)"),
    ]),
}  # fmt: skip
BY_BETA = {
    "vae_prior": ("Claim 3: the VAE's prior against β (dashed: the AE)", [
        ("latent.kl_from_standard_normal", "KL(fitted Gaussian ‖ N(0, I))"),
        ("generation.coverage", "coverage (higher is better)"),
        ("generation.recall", "recall (higher is better)"),
        ("generation.top_class_share", "top-class share of samples"),
    ]),
    "generation": ("Generation quality against β (dashed: the AE)", [
        ("generation.frechet_distance", "Frechet distance (lower is better)"),
        ("generation.kid", "KID (lower is better)"),
    ]),
}  # fmt: skip


class ClaimsError(WardrobeError):
    """The sweep's results cannot be drawn."""


@dataclass(frozen=True)
class Point:
    beta: float
    latent: int
    metrics: Mapping[str, float]  # flattened, with <model>.test.generation.unlike_share

    def value(self, model: str, key: str) -> float:
        return self.metrics.get(f"{model}.test.{key}", math.nan)


def load_points(path: Path) -> list[Point]:
    """The points of a results file that have metrics, each with its β and latent size."""
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClaimsError(
            f"{path}: not found; run `make sweep SWEEP=sweeps/claims.yaml`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClaimsError(f"{path}: unreadable ({exc}); run the sweep again") from None
    points = []
    for entry in results.get("points", []):
        params, metrics = entry.get("params", {}), flatten(entry.get("metrics") or {})
        if not metrics:
            continue
        if BETA not in params or LATENT not in params:
            raise ClaimsError(
                f"{path}: point {entry.get('point')} does not set {BETA} and {LATENT}; "
                "claims need a sweep over both (sweeps/claims.yaml)"
            )
        for model in ("ae", "vae"):
            precision = metrics.get(f"{model}.test.generation.precision")
            if precision is not None:
                metrics[f"{model}.test.generation.unlike_share"] = 1.0 - precision
        points.append(Point(float(params[BETA]), int(params[LATENT]), metrics))
    if not points:
        raise ClaimsError(f"{path}: no point has metrics; run the sweep to its end")
    return points


def noise_band(noise: Mapping[str, Any] | None, model: str, key: str) -> float | None:
    """Half the width of one run's 99% band at the lecture's point: the tolerance (which
    bounds the difference of two runs) over sqrt(2); None when not measured."""
    if noise is None:
        return None
    if key == "generation.unlike_share":  # 1 - precision: precision's spread
        key = "generation.precision"
    entry = noise.get("files", {}).get("reports/metrics.json", {}).get(f"{model}.test.{key}")
    return None if entry is None else entry["tolerance"] / math.sqrt(2)


def at_lecture_beta(points: Sequence[Point]) -> list[Point]:
    """The points at the lecture's β, by latent size."""
    return sorted((p for p in points if p.beta == LECTURE[BETA]), key=lambda p: p.latent)


def _lecture(points: Sequence[Point]) -> Point | None:
    return next((p for p in points if p.beta == LECTURE[BETA] and p.latent == LECTURE[LATENT]),
                None)  # fmt: skip


def draw(points: Sequence[Point], noise: Mapping[str, Any] | None, out: Path) -> list[Path]:
    """The four figures into out/; returns their paths."""
    from wardrobe.figures import plt  # pyplot, under figures' files-only backend

    out.mkdir(parents=True, exist_ok=True)
    latents = sorted({p.latent for p in points})
    betas = sorted({p.beta for p in points})
    lecture = _lecture(points)
    # the VAE at the lecture's β; the AE does not depend on β (one per latent size)
    by_latent = at_lecture_beta(points) or sorted(
        {p.latent: p for p in points}.values(), key=lambda p: p.latent
    )
    colours = dict(zip(latents, plt.get_cmap("viridis")(
        [i / max(len(latents) - 1, 1) for i in range(len(latents))]), strict=True))  # fmt: skip
    written = []
    for name, (title, panels) in BY_LATENT.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5),
                                 layout="constrained", squeeze=False)  # fmt: skip
        models = ("ae", "vae") if name == "reconstruction" else ("ae",)
        for ax, (key, label) in zip(axes[0], panels, strict=True):
            for model in models:
                shown = model.upper() + (" (β 500)" if model == "vae" else "")
                ax.plot([p.latent for p in by_latent], [p.value(model, key) for p in by_latent],
                        "o-", label=shown)  # fmt: skip
                _mark_lecture(ax, lecture, noise, model, key, LECTURE[LATENT])
            ax.set_xscale("log", base=2)
            ax.set_xticks(latents, [str(z) for z in latents])
            ax.set_xlabel("latent size")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        fig.suptitle(title)
        written.append(_save(fig, out / f"{name}.png"))
    for name, (title, panels) in BY_BETA.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5),
                                 layout="constrained", squeeze=False)  # fmt: skip
        for ax, (key, label) in zip(axes[0], panels, strict=True):
            for latent in latents:
                rows = sorted((p for p in points if p.latent == latent), key=lambda p: p.beta)
                ax.plot([p.beta for p in rows], [p.value("vae", key) for p in rows], "o-",
                        color=colours[latent], label=f"VAE, latent {latent}")  # fmt: skip
                ae = next((v for p in rows if not math.isnan(v := p.value("ae", key))), None)
                if ae is not None:
                    ax.axhline(ae, color=colours[latent], linestyle="--", linewidth=1,
                               label=f"AE, latent {latent}")  # fmt: skip
            _mark_lecture(ax, lecture, noise, "vae", key, LECTURE[BETA])
            ax.set_xscale("log")
            ax.set_xticks(betas, [f"{b:g}" for b in betas])
            ax.set_xlabel("β (weight of the reconstruction term)")
            ax.set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(title)
        written.append(_save(fig, out / f"{name}.png"))
    return written


def _mark_lecture(ax, lecture: Point | None, noise, model: str, key: str, x: float) -> None:
    if lecture is None:
        return
    band = noise_band(noise, model, key)
    yerr = None if band is None else [[band], [band]]
    label = "the lecture's point (99% noise band)" if model == "vae" else None
    ax.errorbar([x], [lecture.value(model, key)], yerr=yerr, fmt="*", color="red",
                markersize=11, capsize=5, zorder=5, label=label)  # fmt: skip


def _save(fig, path: Path) -> Path:
    from wardrobe.figures import save

    with atomic_file(path) as tmp:
        save(fig, tmp, dpi=100)
    return path


def reading(points: Sequence[Point]) -> str:
    """Where each claim holds and where it fails, with numbers, in Markdown."""
    latents = sorted({p.latent for p in points})
    lines = []
    by_latent = {z: [p for p in points if p.latent == z] for z in latents}
    at_500 = at_lecture_beta(points)
    # Claim 1: reconstruction improves with latent size, the AE's at least as good as the VAE's.
    rows = [(p.latent, p.value("ae", "bce"), p.value("vae", "bce")) for p in at_500]
    if rows:
        falls = all(b[1] < a[1] for a, b in itertools.pairwise(rows))
        lines.append(
            "- **Claim 1** (more latent dimensions reconstruct better): the AE's test BCE "
            + ", ".join(f"{ae:.4f} at {z}" for z, ae, _ in rows)
            + f" ({'falls at every step' if falls else 'does not fall at every step'}); "
            "the VAE's at β 500 " + ", ".join(f"{vae:.4f} at {z}" for z, _, vae in rows) + "."
        )
    gaps = ("generation.latent_far_share", "generation.unlike_share")
    rows = [(p.latent, *(p.value("ae", k) for k in gaps)) for p in at_500]
    if rows:
        lines.append(
            "- **Claim 2** (the AE's latent space has gaps): uniform draws far from every test "
            "embedding "
            + ", ".join(f"{far:.1%} at {z}" for z, far, _ in rows)
            + "; samples unlike every test image "
            + ", ".join(f"{un:.1%} at {z}" for z, _, un in rows)
            + "."
        )
    for z, ps in by_latent.items():
        ps = sorted(ps, key=lambda p: p.beta)
        ae_cov = ps[0].value("ae", "generation.coverage")
        better = [p for p in ps if p.value("vae", "generation.coverage") > ae_cov]
        lines.append(
            f"- **Claim 3 at latent size {z}** (the VAE's prior fills the space): KL from "
            "N(0, I) " + ", ".join(f"{p.value('vae', 'latent.kl_from_standard_normal'):.3g} at "
                                   f"β {p.beta:g}" for p in ps)
            + f"; coverage above the AE's {ae_cov:.3f} at "
            + (", ".join(f"β {p.beta:g} ({p.value('vae', 'generation.coverage'):.3f})"
                         for p in better) or "no β")
            + "."
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="reports/sweeps/<name>.json (make sweep)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/claims"))
    parser.add_argument("--noise", type=Path, default=Path("reports/noise.json"))
    args = parser.parse_args(argv)
    points = load_points(args.results)
    noise = json.loads(args.noise.read_text()) if args.noise.is_file() else None
    for path in draw(points, noise, args.out):
        print(f"claims: {path} written")
    print(reading(points))


if __name__ == "__main__":
    from wardrobe.cli import run_stage

    run_stage("claims", main)
