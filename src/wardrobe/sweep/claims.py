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
from wardrobe.noise import read_noise
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


# Metrics that span orders of magnitude across the grid (the VAE's KL near 0, the AE's ~100)
LOG_Y = {"latent.kl_from_standard_normal"}


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


def tolerance(noise: Mapping[str, Any] | None, model: str, key: str) -> float:
    """The 99% bound on the difference of two runs of one metric at the lecture's point
    (reports/noise.json), or 0 when it was not measured."""
    if noise is None:
        return 0.0
    if key == "generation.unlike_share":  # 1 - precision: precision's spread
        key = "generation.precision"
    entry = noise.get("files", {}).get("reports/metrics.json", {}).get(f"{model}.test.{key}")
    return 0.0 if entry is None else float(entry["tolerance"])


def noise_band(noise: Mapping[str, Any] | None, model: str, key: str) -> float | None:
    """Half the width of one run's 99% band at the lecture's point: the tolerance (which
    bounds the difference of two runs) over sqrt(2); None when not measured."""
    band = tolerance(noise, model, key) / math.sqrt(2)
    return band or None


def at_lecture_beta(points: Sequence[Point]) -> list[Point]:
    """The points at the lecture's β, by latent size."""
    return sorted((p for p in points if p.beta == LECTURE[BETA]), key=lambda p: p.latent)


def by_latent_size(points: Sequence[Point]) -> dict[int, list[Point]]:
    """Each latent size's points, by β, the sizes in order."""
    return {z: sorted((p for p in points if p.latent == z), key=lambda p: p.beta)
            for z in sorted({p.latent for p in points})}  # fmt: skip


def ae_value(points: Sequence[Point], key: str) -> float:
    """The AE's value of a metric among one latent size's points (the AE does not depend on
    β: every point restores the same one), NaN when none has it."""
    return next((v for p in points if not math.isnan(v := p.value("ae", key))), math.nan)


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
    colours = {z: f"C{i % 10}" for i, z in enumerate(latents)}  # matplotlib's cycle
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
            for latent, rows in by_latent_size(points).items():
                ax.plot([p.beta for p in rows], [p.value("vae", key) for p in rows], "o-",
                        color=colours[latent], label=f"VAE, latent {latent}")  # fmt: skip
                ae = ae_value(rows, key)
                if not math.isnan(ae):
                    ax.axhline(ae, color=colours[latent], linestyle="--", linewidth=1,
                               label=f"AE, latent {latent}")  # fmt: skip
            _mark_lecture(ax, lecture, noise, "vae", key, LECTURE[BETA])
            if key in LOG_Y:
                ax.set_yscale("log")
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


def _series(pairs: Sequence[tuple[float, float]], fmt: str, at: str = "") -> str:
    """'0.253 at 2, 0.214 at 8': values at their axis' points."""
    return ", ".join(f"{value:{fmt}} at {at}{x:g}" for x, value in pairs)


def _steps(pairs: Sequence[tuple[float, float]], tol: float, at: str = "") -> str:
    """How a curve moves from point to point, a step within tol counting as no move; runs
    of steps that move the same way are told as one ("is flat from β 50 to β 1500, rises
    from β 1500 to β 5000")."""
    runs: list[list] = []  # [word, from, to]
    for (x0, v0), (x1, v1) in itertools.pairwise(pairs):
        word = "falls" if v1 < v0 - tol else "rises" if v1 > v0 + tol else "is flat"
        if runs and runs[-1][0] == word:
            runs[-1][2] = x1
        else:
            runs.append([word, x0, x1])
    if not runs:
        return "one point"
    if len(runs) == 1:
        return f"{runs[0][0]} at every step"
    return ", ".join(f"{w} from {at}{a:g} to {at}{b:g}" for w, a, b in runs)


def _where(
    xs: Sequence[float], signs: Sequence[int], words: tuple[str, str], margin: float, at: str = ""
) -> str:
    """Where a curve is above (+1), within the noise of (0) and below (-1) a reference, in
    words: words are what above and below mean ("above the AE's", "below the AE's")."""
    parts = []
    for sign, word in ((1, words[0]), (0, f"within the noise (±{margin:.3g})"), (-1, words[1])):
        hit = [f"{at}{x:g}" for x, v in zip(xs, signs, strict=True) if v == sign]
        if hit:
            parts.append(f"{word} at {', '.join(hit)}")
    return "; ".join(parts)


def _beyond(a: float, b: float, margin: float) -> int:
    """+1 when a is above b by more than margin, -1 when below, 0 when within it."""
    return 1 if a > b + margin else -1 if a < b - margin else 0


def reading(points: Sequence[Point], noise: Mapping[str, Any] | None = None) -> str:
    """Where each claim holds and where it fails, with numbers, in Markdown. A difference
    counts when it is beyond the noise measured at the lecture's point (noise.json's
    tolerances: the 99% bound on two runs' difference, for two models the root mean square
    of theirs); without noise, every difference counts."""

    def margin(key: str, *models: str) -> float:
        tols = [tolerance(noise, m, key) for m in (models * 2)[:2]]
        return math.sqrt((tols[0] ** 2 + tols[1] ** 2) / 2)

    at_500 = at_lecture_beta(points)
    lines = []
    if at_500:
        zs = [p.latent for p in at_500]

        def curve(model: str, key: str) -> list[tuple[float, float]]:
            return [(p.latent, p.value(model, key)) for p in at_500]

        def ae_vs_vae(key: str, words: tuple[str, str]) -> str:
            m = margin(key, "ae", "vae")
            signs = [_beyond(p.value("ae", key), p.value("vae", key), m) for p in at_500]
            return _where(zs, signs, words, m)

        worse = ("worse than the VAE's", "better than the VAE's")  # a BCE above is worse
        bce, gain = ({m: curve(m, k) for m in ("ae", "vae")} for k in ("bce", "bce_gain"))
        lines.append(
            "- **Claim 1** (a larger latent space reconstructs better, and the AE better than "
            f"the VAE): the AE's test BCE {_series(bce['ae'], '.4f')} "
            f"({_steps(bce['ae'], margin('bce', 'ae'))}), closing "
            f"{_series(gain['ae'], '.1%')} of the gap from the mean image to a perfect one; "
            f"the VAE's at β 500 {_series(bce['vae'], '.4f')} "
            f"({_steps(bce['vae'], margin('bce', 'vae'))}), closing "
            f"{_series(gain['vae'], '.1%')}. The AE's BCE is {ae_vs_vae('bce', worse)}."
        )
        far, unlike = "generation.latent_far_share", "generation.unlike_share"
        above = ("above the VAE's", "below the VAE's")
        lines.append(
            "- **Claim 2** (the AE's latent space has gaps, so uniform draws often decode to "
            "poor images): the AE's uniform draws far from every test embedding "
            f"{_series(curve('ae', far), '.1%')} ({_steps(curve('ae', far), margin(far, 'ae'))})"
            f" against the VAE's {_series(curve('vae', far), '.1%')} at β 500: "
            f"{ae_vs_vae(far, above)}. The AE's samples unlike every test image "
            f"{_series(curve('ae', unlike), '.1%')} against the VAE's "
            f"{_series(curve('vae', unlike), '.1%')}: {ae_vs_vae(unlike, above)}."
        )
    for z, ps in by_latent_size(points).items():

        def against_ae(key: str, ps: Sequence[Point] = ps) -> str:
            values = [(p.beta, p.value("vae", key)) for p in ps]
            ae, m = ae_value(ps, key), margin(key, "vae", "ae")
            signs = [_beyond(v, ae, m) for _, v in values]
            where = _where([b for b, _ in values], signs, ("above the AE's", "below the AE's"),
                           m, "β ")  # fmt: skip
            return f"{_series(values, '.3g', 'β ')} against the AE's {ae:.3g}: {where}"

        kl = "latent.kl_from_standard_normal"
        kls = [(p.beta, p.value("vae", kl)) for p in ps]
        lines.append(
            f"- **Claim 3 at latent size {z}** (the KL term keeps the VAE's codes near N(0, I), "
            "so that its samples cover the data and favour no class): the KL of its codes' "
            f"fitted Gaussian from N(0, I) {against_ae(kl)} (as β grows, it "
            f"{_steps(kls, margin(kl, 'vae'), 'β ')}); coverage "
            f"{against_ae('generation.coverage')}; recall {against_ae('generation.recall')}; "
            f"the top class's share of the samples {against_ae('generation.top_class_share')} "
            "(even: 10%)."
        )
        lines.append(
            f"- **Generation at latent size {z}**: Frechet distance "
            f"{against_ae('generation.frechet_distance')}; KID {against_ae('generation.kid')}."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="reports/sweeps/<name>.json (make sweep)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/claims"))
    parser.add_argument("--noise", type=Path, default=Path("reports/noise.json"))
    args = parser.parse_args(argv)
    points = load_points(args.results)
    noise = read_noise(args.noise)
    for path in draw(points, noise, args.out):
        print(f"claims: {path} written")
    print(reading(points, noise))


if __name__ == "__main__":
    from wardrobe.cli import run_stage

    run_stage("claims", main)
