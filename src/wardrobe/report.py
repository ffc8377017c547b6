"""The results section of the README, generated from `reports/metrics.json`,
`reports/class_shares.json` and the figures of stage `plots` (`make results`), never written by
hand; with `reports/noise.json` (`make noise`), each value carries its spread over seeds and
each comparison says in how many seeds it holds.

    python -m wardrobe.report --readme README.md

replaces the text between the README's `<!-- results:begin -->` and `<!-- results:end -->`
markers with a table of the metrics and links to the key figures, which it copies to
`docs/figures/` (the figures under `reports/` are DVC outputs, outside git).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wardrobe import catalogue
from wardrobe.cli import run_stage
from wardrobe.dataset import CLASS_NAMES
from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_file
from wardrobe.metrics import class_key
from wardrobe.noise import (
    CONFIDENCE,
    Verdict,
    judge,
    other_params,
    params_of,
    read_noise,
    tolerance,
)
from wardrobe.params import parse

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
KEY_FIGURES = (  # (model, figure, caption)
    ("ae", "latent_by_class", "AE latent space of test images, coloured by class"),
    ("ae", "generated", "AE: images decoded from points drawn uniformly in the embeddings' box"),
    ("ae", "latent_grid", "AE: a grid decoded across the embeddings' range"),
    ("vae", "latent_pvalues", "VAE latent space and the same points as p-values"),
    ("vae", "generated", "VAE: images decoded from z ~ N(0, I)"),
    ("vae", "latent_grid", "VAE: a grid of normal quantiles, decoded"),
)


# The claims sweep's results (make sweep SWEEP=sweeps/claims.yaml).
CLAIMS_RESULTS = Path("reports/sweeps/claims.json")


class ReportError(WardrobeError):
    """The metrics or the README cannot be used to write the report."""


def _get(metrics: Mapping[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _num(value: Any, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _spread(noise: Mapping[str, Any] | None, dotted: str) -> dict[str, Any] | None:
    """The noise file's entry for a key of reports/metrics.json, if measured."""
    files = (noise or {}).get("files", {})
    return files.get("reports/metrics.json", {}).get(dotted)


def _cell(value: Any, digits: int, spread: Mapping[str, Any] | None) -> str:
    if value is None or not spread:
        return _num(value, digits)
    return f"{value:.{digits}f} ± {spread['sd']:.{digits}f}"


def _pair(stats: Mapping[str, float] | None, digits: int = 2) -> str:
    if not stats:
        return "—"
    return "(" + ", ".join(f"{v:.{digits}f}" for v in stats.values()) + ")"


def _top_class(shares: Mapping[str, float] | None) -> str:
    if not shares:
        return "—"
    names = {class_key(n): n for n in CLASS_NAMES}
    key = max(shares, key=shares.get)
    return f"{shares[key]:.1%} ({names.get(key, key)})"


QUALITY = ("precision", "recall", "density", "coverage", "kid")


def metrics_table(
    metrics: Mapping[str, Any],
    class_shares: Mapping[str, Any],
    noise: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown table of both models' test metrics (± their standard deviation over the
    noise file's seeds), and a line on the classifier."""
    lines = ["| metric | better | AE | VAE |", "|---|---|---:|---:|"]
    for metric in catalogue.shown(catalogue.TABLE):
        ae, vae = (
            _cell(_get(metrics, metric.dotted(m)), metric.digits, _spread(noise, metric.dotted(m)))
            for m in ("ae", "vae")
        )
        lines.append(f"| {metric.label} | {metric.better or ''} | {ae} | {vae} |")
    for label, key in (("latent mean (z0, z1)", "mean"), ("latent std (z0, z1)", "std")):
        ae, vae = (_get(metrics, f"{m}.test.latent.{key}") for m in ("ae", "vae"))
        lines.append(f"| {label} | | {_pair(ae)} | {_pair(vae)} |")
    ae, vae = (class_shares.get(m) for m in ("ae", "vae"))
    lines.append(f"| most common generated class | | {_top_class(ae)} | {_top_class(vae)} |")
    classifier = _get(metrics, "classifier.test") or {}
    lines += [
        "",
        f"The scoring classifier's test accuracy is {_num(classifier.get('accuracy'), 4)}; "
        "the Frechet distance between train images and the test images, the floor for real "
        f"images, is {_num(classifier.get('frechet_distance_train'), 2)}.",
    ]
    reference = classifier.get("train_reference")
    if reference:
        scores = ", ".join(f"{k} {_num(reference.get(k), 3)}" for k in QUALITY)
        lines[-1] += f" Real train images against the test images score {scores}."
    if noise:
        lines += ["", spread_note(noise)]
    return "\n".join(lines)


def spread_note(noise: Mapping[str, Any]) -> str:
    """What the table's ± is, and which differences it makes meaningful."""
    runs = noise.get("runs", [])
    n = len(runs)
    seeds = ", ".join(str(r.get("seed")) for r in runs)
    confidence = float(noise.get("confidence", CONFIDENCE))
    factor = tolerance(1.0, 0.0, n, confidence)
    return (
        f"± is the standard deviation over {n} runs that differ only in seed ({seeds}; "
        f"`reports/noise.json`, `make noise`). Two runs of the same params differ by chance "
        f"by up to {factor:.1f} times it ({confidence:.0%}; the factor allows for so few runs). "
        "Chance alone explains a smaller difference between two runs, on two machines or at "
        "two commits; `make compare` flags the larger ones."
    )


def _versus(noise: Mapping[str, Any] | None, a: str, b: str) -> Verdict | None:
    """The noise file's runs of metric a against those of metric b (dotted keys of
    reports/metrics.json, seed by seed), as the catalogue says a's metric is compared:
    noise.judge's verdict; None when not measured."""
    x, y = _spread(noise, a), _spread(noise, b)
    if not (x and y) or len(x["values"]) != len(y["values"]):
        return None
    seeds = [run.get("seed") for run in (noise or {}).get("runs", [])]
    paired = (seeds, seeds) if len(seeds) == len(x["values"]) else None
    metric = catalogue.by_dotted()[a]
    return judge(x["values"], y["values"], metric.better, seeds=paired, log=metric.log)


def _over(verdict: Verdict | None, who: str = "the VAE against the AE") -> str:
    """'; the VAE against the AE over 5 seeds: better by 0.29 (±0.11; 5 of 5 seeds agree)'."""
    if verdict is None:
        return ""
    return f"; {who} over {verdict.runs[0]} seeds: {verdict}"


def _pct(value: float) -> str:
    return f"{value:.0%}"


def claims(
    metrics: Mapping[str, Any],
    class_shares: Mapping[str, Any],
    noise: Mapping[str, Any] | None = None,
) -> str:
    """What the metrics say about the lecture's claims 1 to 3, as Markdown bullets whose
    every number comes from the metrics, and every comparison, where the noise file's runs
    measured both sides, is noise.judge's verdict over those seeds; empty when the metrics
    lack the keys."""
    ae, vae = _get(metrics, "ae.test"), _get(metrics, "vae.test")
    reference = _get(metrics, "classifier.test.train_reference")
    needed = ("bce_gain", "reconstructions", "generation", "latent")
    if not (ae and vae and reference and all(k in ae and k in vae for k in needed)):
        return ""
    gen_ae, gen_vae = ae["generation"], vae["generation"]
    rec_ae, rec_vae = ae["reconstructions"], vae["reconstructions"]
    kl_ae, kl_vae = (m["latent"]["kl_from_standard_normal"] for m in (ae, vae))
    fd_ae, fd_vae = gen_ae["frechet_distance"], gen_vae["frechet_distance"]
    top = {m: _top_class(class_shares.get(m)) for m in ("ae", "vae")}
    v = {key: _versus(noise, f"vae.test.{key}", f"ae.test.{key}") for key in (
        "bce_gain", "generation.latent_far_share", "latent.kl_from_standard_normal",
        "generation.coverage", "generation.frechet_distance", "generation.kid",
    )}  # fmt: skip
    v["gaps"] = _versus(noise, "ae.test.generation.precision", "ae.test.reconstructions.precision")

    def lower(verdict: Verdict | None, this_run: bool) -> bool | None:
        """Whether the first side is below the second: by the verdict over seeds, else by
        this run; None when the seeds do not resolve it."""
        if verdict is None:
            return this_run
        return None if not verdict.decided else verdict.difference < 0

    gaps_cost = lower(v["gaps"], gen_ae["precision"] < rec_ae["precision"])
    covers_less = lower(v["generation.coverage"], gen_vae["coverage"] < gen_ae["coverage"])
    fd_vae_lower = lower(v["generation.frechet_distance"], fd_vae < fd_ae)
    kid_vae_lower = lower(v["generation.kid"], gen_vae["kid"] < gen_ae["kid"])

    def closer(vae_lower: bool | None) -> str:
        return {
            True: "puts the VAE's samples closer to the test images",
            False: "puts the AE's samples closer to the test images",
            None: "does not tell the two models' samples apart, by these seeds",
        }[vae_lower]

    stray = {
        True: "decoded from the gaps, images stray from the data more often",
        False: "decoded from the gaps, images stray from the data no more often",
        None: "whether images from the gaps stray more often, these seeds do not resolve",
    }[gaps_cost]
    covers = {True: "less", False: "more", None: "neither more nor less"}[covers_less]
    samples = "the AE's samples against its reconstructions"
    narrow = (
        min(gen_ae["precision"], gen_vae["precision"]) >= reference["precision"]
        and max(gen_ae["coverage"], gen_vae["coverage"]) < reference["coverage"] / 2
    )
    bullets = [
        f"- **Reconstruction (claim 1).** Of the BCE gap between giving every input the mean "
        f"training image ({ae['bce_mean_image']:.4f}) and a perfect reconstruction "
        f"({ae['bce_floor']:.4f}: grey pixels cost even then), the AE closes "
        f"{_pct(ae['bce_gain'])} and the VAE {_pct(vae['bce_gain'])}"
        f"{_over(v['bce_gain'])}. Their reconstructions "
        f"have a precision of {rec_ae['precision']:.2f} and {rec_vae['precision']:.2f} "
        f"against the test images; real train images reach {reference['precision']:.2f}.",
        f"- **The AE's uniform samples land in gaps (claim 2).** "
        f"{_pct(gen_ae['latent_far_share'])} of the points drawn uniformly in the AE's "
        f"embedding box lie outside every test embedding's 5-nearest-neighbour ball, against "
        f"{_pct(gen_vae['latent_far_share'])} of the VAE's draws from N(0, I)"
        f"{_over(v['generation.latent_far_share'])}. Of the images "
        f"they decode to, {1 - gen_ae['precision']:.1%} are unlike every test image "
        f"(1 - precision), against {1 - rec_ae['precision']:.1%} of the AE's "
        f"reconstructions and {1 - gen_vae['precision']:.1%} of the VAE's samples: "
        f"{stray}{_over(v['gaps'], samples)}.",
        f"- **Centring and coverage (claim 3).** A Gaussian fitted to the VAE's embeddings is "
        f"{kl_vae:.2f} nats from N(0, I) (the AE's: {kl_ae:.2f}"
        f"{_over(v['latent.kl_from_standard_normal'])}). The VAE's samples reach "
        f"{_pct(gen_vae['coverage'])} of the test images' neighbourhoods (coverage; recall "
        f"{gen_vae['recall']:.2f}), the AE's {_pct(gen_ae['coverage'])} (recall "
        f"{gen_ae['recall']:.2f}): the VAE covers {covers} of the data"
        f"{_over(v['generation.coverage'])}; both far less than real train "
        f"images do ({_pct(reference['coverage'])}, recall {reference['recall']:.2f}). The "
        f"most common generated class takes {top['vae']} for the VAE and {top['ae']} for the "
        "AE.",
        f"- **One distance against two measures.** The Frechet distance "
        f"{closer(fd_vae_lower)} (the AE {fd_ae:.1f}, the "
        f"VAE {fd_vae:.1f}{_over(v['generation.frechet_distance'])}); KID "
        f"{closer(kid_vae_lower)} (the AE {gen_ae['kid']:.3f} ± {gen_ae['kid_std']:.3f} over "
        f"subsets, the VAE {gen_vae['kid']:.3f} ± {gen_vae['kid_std']:.3f}"
        f"{_over(v['generation.kid'])}). "
        + (
            "By precision, both models' samples are as plausible as real images (k-NN "
            "precision favours blurry images in the dense middle of each class); by "
            "coverage, both are narrow: what separates them from real images is coverage, "
            "not quality."
            if narrow
            else "Precision and coverage above say which part of each distance is quality "
            "and which is coverage."
        ),
    ]
    intro = (
        "What these numbers say about the lecture's claims ([the metrics](docs/evaluation.md)):"
    )
    return "\n".join([intro, "", *bullets])


def _link(path: Path, readme_dir: Path) -> str:
    """A figure's path as the README links it: relative to the README's directory."""
    return Path(os.path.relpath(path.resolve(), readme_dir.resolve())).as_posix()


def results_section(
    table: str,
    figures_dir: Path,
    docs_dir: Path,
    readme_dir: Path,
    reading: str = "",
    noise: bool = False,
) -> str:
    """The README's results section; copies the key figures into docs_dir."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    spreads = ", the spreads from `reports/noise.json` (`make noise`)" if noise else ""
    parts = [
        "Generated by `make results` from `reports/metrics.json`, `reports/class_shares.json` "
        f"and `reports/figures/` (stages evaluate, collect and plots){spreads}.",
        "",
        table,
        "",
    ]
    if reading:
        parts += [reading, ""]
    for model, name, caption in KEY_FIGURES:
        source = figures_dir / model / f"{name}.png"
        if not source.is_file():
            raise ReportError(f"{source}: not found; run `dvc repro plots` first")
        target = docs_dir / f"{model}_{name}.png"
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
        parts += [f"![{caption}]({_link(target, readme_dir)})", ""]
    return "\n".join(parts).rstrip("\n")


def design_space_section(
    results: Path,
    noise: Mapping[str, Any] | None,
    docs_dir: Path,
    readme_dir: Path,
    seed: Any = None,
) -> str:
    """The lecture's claims across the claims sweep's axes (`sweep.claims`): for each claim
    one line, its table and its figure, drawn into docs_dir/claims; empty when the sweep has
    not been run. `seed` is the one of points that do not set theirs (params.yaml's)."""
    from wardrobe.sweep import claims as sweep_claims

    if not results.is_file():
        return ""
    try:
        grid = sweep_claims.load_grid(results, noise, seed)
        drawn = {p.stem: p for p in sweep_claims.draw(grid, noise, docs_dir / "claims")}
    except sweep_claims.ClaimsError as exc:
        raise ReportError(str(exc)) from None
    runs = sorted({len(c.runs) for c in grid.cells})
    seeds = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]} to {runs[-1]}"
    lecture = ""
    if grid.lecture is not None and grid.merged:
        lecture = (
            f" The lecture's point also takes the {grid.merged} runs of `reports/noise.json` "
            "at seeds the sweep did not run."
        )
    parts = [
        f"### The claims across {' and '.join(a.name for a in grid.axes)}",
        "",
        f"From `{results.as_posix()}` ({len(grid.cells)} points of `make sweep "
        f"SWEEP=sweeps/claims.yaml` at the lecture's training settings, {seeds} seeds each)."
        f"{lecture} {sweep_claims.LEGEND}",
        "",
    ]
    for claim, line, table in sweep_claims.reading(grid, noise):
        parts += [f"- {line}", "", table, ""]
        if claim.name in drawn:
            link = _link(drawn[claim.name], readme_dir)
            parts += [f"![{claim.title}: {claim.says}]({link})", ""]
    return "\n".join(parts).rstrip("\n")


def split_readme(readme: Path) -> tuple[str, str]:
    """The README's text before the results section's begin marker and from its end marker."""
    try:
        text = readme.read_text()
    except OSError as exc:
        raise ReportError(
            f"{readme}: unreadable ({exc.strerror}); pass --readme README.md"
        ) from None
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReportError(f"{readme}: needs one {BEGIN} line followed by one {END} line")
    head, rest = text.split(BEGIN)
    return head, rest[rest.index(END) :]


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: not found; run `dvc repro collect` first") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable ({exc}); run `dvc repro -f -s collect`") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", default="reports/metrics.json", type=Path)
    parser.add_argument("--class-shares", default="reports/class_shares.json", type=Path)
    parser.add_argument("--figures", default="reports/figures", type=Path)
    parser.add_argument("--docs", default="docs/figures", type=Path, help="where figures go")
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument(
        "--noise",
        default="reports/noise.json",
        type=Path,
        help="the spreads over seeds (make noise); left out when missing",
    )
    parser.add_argument(
        "--sweep",
        default=CLAIMS_RESULTS,
        type=Path,
        help="the claims sweep's results (make sweep SWEEP=sweeps/claims.yaml); left out when "
        "missing",
    )
    parser.add_argument("--readme", type=Path, help="rewrite this README's results section")
    args = parser.parse_args(argv)
    metrics, class_shares = read_json(args.metrics), read_json(args.class_shares)
    noise = read_noise(args.noise)
    differ = other_params(noise, params_of(args.params)) if noise is not None else []
    if differ:
        print(
            f"report: {args.noise} was measured at other params "
            f"({', '.join(differ[:4])}); the values are "
            "shown without their spreads (make noise measures them anew)",
            file=sys.stderr,
        )
        noise = None
    table = metrics_table(metrics, class_shares, noise)
    if args.readme is None:
        print(table)
        return
    head, tail = split_readme(args.readme)
    reading = claims(metrics, class_shares, noise)
    section = results_section(
        table, args.figures, args.docs, args.readme.parent, reading, noise is not None
    )
    seed = (parse(args.params.read_text()) or {}).get("seed") if args.params.is_file() else None
    across = design_space_section(args.sweep, noise, args.docs, args.readme.parent, seed)
    if across:
        section += f"\n\n{across}"
    else:
        print(
            f"report: {args.sweep} not found; the claims across β and latent size are left out "
            "(make sweep SWEEP=sweeps/claims.yaml makes them)",
            file=sys.stderr,
        )
    with atomic_file(args.readme) as tmp:
        tmp.write_text(f"{head}{BEGIN}\n{section}\n{tail}")
    print(f"{args.readme}: results section regenerated; figures copied to {args.docs}")


if __name__ == "__main__":
    run_stage("report", main)
