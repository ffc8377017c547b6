"""The lecture's claims read across a sweep (reports/sweeps/<name>.json, written by `make
sweep`): for each claim of the catalogue (wardrobe.catalogue.CLAIMS), one line that says where
it holds and where it fails, a table of its metrics at every point, and a figure.

    python -m wardrobe.sweep.claims reports/sweeps/claims.json --out docs/figures/claims

The axes are the params the sweep's points vary (keys that always move together, such as
`ae.latent_dim` and `vae.latent_dim`, are one axis); `seed` is not an axis but the runs of a
point, whose values are shown as mean ± standard deviation over its seeds. The tables' columns
are the first axis, their rows the others; each cell marks the VAE against the AE at that
point by noise.judge's verdict over the point's seeds. The point whose params are those
reports/noise.json was measured at (the lecture's) also takes the noise file's runs of seeds
the sweep did not run, so that it is judged on every seed measured there, as the README's
single-point reading is.
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

from wardrobe import catalogue
from wardrobe.catalogue import Claim, Metric
from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_file
from wardrobe.noise import FILES, Verdict, judge, read_noise
from wardrobe.tracking.runs import flatten

SEED = "seed"
# How an axis is named in tables and figures; any other key is named by itself.
AXIS_NAMES = {"vae.beta": "β", "vae.latent_dim": "latent size", "ae.latent_dim": "latent size"}
MARKS = {"better": "▲", "worse": "▼"}  # the VAE against the AE; otherwise "○"
LEGEND = (
    "Each cell: the VAE's mean ± standard deviation over the point's seeds, marked ▲ where it "
    "is better than the AE's, ▼ where worse, ○ where its seeds do not resolve the difference "
    "(noise.judge at 99%: paired by seed)."
)


class ClaimsError(WardrobeError):
    """The sweep's results cannot be read or drawn."""


@dataclass(frozen=True)
class Axis:
    keys: tuple[str, ...]  # params keys that move together
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return next((AXIS_NAMES[k] for k in self.keys if k in AXIS_NAMES), self.keys[-1])

    def show(self, value: Any) -> str:
        return (
            f"{self.name} {value:g}" if isinstance(value, int | float) else f"{self.name} {value}"
        )


@dataclass(frozen=True)
class Cell:
    """A point of the grid: its axes' values and its runs, {seed: flattened metrics}."""

    at: tuple[Any, ...]  # one value per axis
    runs: Mapping[Any, Mapping[str, float]]

    def values(self, model: str, metric: Metric) -> tuple[list[Any], list[float]]:
        """The seeds and values of a model's metric, over the runs that have it."""
        found = [(s, m[metric.dotted(model)]) for s, m in self.runs.items()
                 if metric.dotted(model) in m]  # fmt: skip
        return [s for s, _ in found], [v for _, v in found]

    def stats(self, model: str, metric: Metric) -> tuple[float, float | None, int]:
        """Mean, standard deviation (None for one run) and number of runs; NaN for none."""
        return _stats(self.values(model, metric)[1])

    def vae_vs_ae(self, metric: Metric, noise: Mapping[str, Any] | None) -> Verdict | None:
        (sa, a), (sb, b) = self.values("vae", metric), self.values("ae", metric)
        if not (a and b):
            return None
        return judge(a, b, metric.better, _measured(noise, metric), (sa, sb), metric.log)


@dataclass(frozen=True)
class Grid:
    axes: tuple[Axis, ...]
    cells: tuple[Cell, ...]
    lecture: tuple[Any, ...] | None = None  # the point noise.json was measured at
    merged: int = 0  # the noise file's runs added to it

    def cell(self, at: Sequence[Any]) -> Cell | None:
        return next((c for c in self.cells if c.at == tuple(at)), None)

    @property
    def columns(self) -> Axis:
        return self.axes[0]

    def rows(self) -> list[tuple[Any, ...]]:
        """Each row's values of the axes after the first."""
        return list(itertools.product(*(a.values for a in self.axes[1:])))

    def row_label(self, row: tuple[Any, ...]) -> str:
        return ", ".join(a.show(v) for a, v in zip(self.axes[1:], row, strict=True)) or "all"

    def ae_runs(self, metric: Metric, at: Sequence[Any]) -> dict[Any, float]:
        """The AE's runs of a metric at a point, {seed: value}, pooled over the axes the AE
        does not move along (a β sweep trains one AE per latent size and seed)."""
        fixed = [i for i in range(len(self.axes)) if not self.ae_constant(metric, i)]
        by_seed: dict[Any, float] = {}
        for cell in self.cells:
            if all(cell.at[i] == at[i] for i in fixed):
                by_seed.update(zip(*cell.values("ae", metric), strict=True))
        return by_seed

    def ae_pool(self, metric: Metric, at: Sequence[Any]) -> tuple[float, float | None, int]:
        """Mean, standard deviation and number of the AE's runs at a point (ae_runs)."""
        return _stats(list(self.ae_runs(metric, at).values()))

    def ae_constant(self, metric: Metric, along: int = 0) -> bool:
        """Whether the AE's runs of a metric are the same across axis `along`'s values (the
        AE's params do not move with it)."""
        groups: dict[tuple, set] = {}
        for cell in self.cells:
            rest = cell.at[:along] + cell.at[along + 1 :]
            for seed, value in zip(*cell.values("ae", metric), strict=True):
                groups.setdefault((rest, seed), set()).add(value)
        return bool(groups) and all(len(v) == 1 for v in groups.values())


def _frozen(value: Any) -> Any:
    """A params value as a dictionary key: lists (filters) as tuples."""
    return tuple(map(_frozen, value)) if isinstance(value, list) else value


def _stats(values: Sequence[float]) -> tuple[float, float | None, int]:
    if not values:
        return math.nan, None, 0
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None, 1
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, sd, len(values)


def _shown(metric: Metric, stats: tuple[float, float | None, int]) -> str:
    mean, sd, n = stats
    if n == 0:
        return "—"
    return metric.format(mean) + ("" if sd is None else f" ± {metric.format(sd)}")


def _measured(noise: Mapping[str, Any] | None, metric: Metric) -> Mapping[str, Any] | None:
    # a derived metric without its own entry (1 - precision) has its source's spread
    files = (noise or {}).get("files", {}).get(FILES[0], {})
    entry = files.get(metric.dotted("vae"))
    if entry is None and metric.key == "generation.unlike_share":
        entry = files.get("vae.test.generation.precision")
    return entry


def _axes(params: Sequence[Mapping[str, Any]]) -> tuple[Axis, ...]:
    """The keys the points vary, grouped into keys that always move together, in their first
    appearance's order; seed left out."""
    keys = [k for k in dict.fromkeys(k for p in params for k in p) if k != SEED]
    varying = [k for k in keys if len({json.dumps(p.get(k)) for p in params}) > 1]
    axes: list[Axis] = []
    for key in varying:
        column = [json.dumps(p.get(key)) for p in params]
        for i, axis in enumerate(axes):
            if [json.dumps(p.get(axis.keys[0])) for p in params] == column:
                axes[i] = Axis((*axis.keys, key), axis.values)
                break
        else:
            values = sorted({json.dumps(p.get(key)) for p in params},
                            key=lambda v: (not isinstance(json.loads(v), int | float),
                                           json.loads(v) if isinstance(json.loads(v), int | float)
                                           else 0, v))  # fmt: skip
            axes.append(Axis((key,), tuple(_frozen(json.loads(v)) for v in values)))
    return tuple(axes)


def load_grid(path: Path, noise: Mapping[str, Any] | None = None, seed: Any = None) -> Grid:
    """The results file's points with metrics, as a grid of cells over the sweep's axes; a
    point that does not set `seed` ran at `seed` (params.yaml's)."""
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClaimsError(
            f"{path}: not found; run `make sweep SWEEP=sweeps/claims.yaml`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClaimsError(f"{path}: unreadable ({exc}); run the sweep again") from None
    points = [p for p in results.get("points", []) if isinstance(p, dict) and p.get("metrics")]
    if not points:
        raise ClaimsError(f"{path}: no point has metrics; run the sweep to its end")
    params = [p.get("params") or {} for p in points]
    axes = _axes(params)
    if not axes:
        raise ClaimsError(
            f"{path}: its points vary no params but {SEED}; the claims are read across a "
            "sweep's axes (sweeps/claims.yaml)"
        )
    runs: dict[tuple, dict[Any, dict[str, float]]] = {}
    for entry, values in zip(points, params, strict=True):
        at = tuple(_frozen(values.get(axis.keys[0])) for axis in axes)
        flat = {k: float(v) for k, v in flatten(entry["metrics"]).items()
                if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
        runs.setdefault(at, {})[values.get(SEED, seed)] = catalogue.derived(flat)
    lecture, merged = _merge_noise(runs, axes, params, noise)
    order = [{v: k for k, v in enumerate(a.values)} for a in axes]
    ats = sorted(runs, key=lambda at: [o[v] for o, v in zip(order, at, strict=True)])
    return Grid(axes, tuple(Cell(at, runs[at]) for at in ats), lecture, merged)


def _merge_noise(runs, axes, params, noise) -> tuple[tuple | None, int]:
    """Add the noise file's runs to the cell whose params are the noise's (seeds the sweep
    did not run): that cell and the number added."""
    if not noise:
        return None, 0
    measured = noise.get("params", {})
    keys = {k for p in params for k in p if k != SEED}
    for at, by_seed in runs.items():
        sample = next(p for p in params if tuple(_frozen(p.get(a.keys[0])) for a in axes) == at)
        if any(measured.get(k) != sample.get(k) for k in keys):
            continue
        table = noise.get("files", {}).get(FILES[0], {})
        added = 0
        for i, run in enumerate(noise.get("runs", [])):
            seed = run.get("seed")
            if seed in by_seed:
                continue
            flat = {k: e["values"][i] for k, e in table.items() if i < len(e["values"])}
            by_seed[seed] = catalogue.derived(flat)
            added += 1
        return at, added
    return None, 0


def _cell_text(cell: Cell | None, metric: Metric, noise) -> str:
    if cell is None:
        return "—"
    text = _shown(metric, cell.stats("vae", metric))
    verdict = cell.vae_vs_ae(metric, noise)
    return text if verdict is None else f"{text} {MARKS.get(verdict.word, '○')}"


def table(grid: Grid, claim: Claim, noise: Mapping[str, Any] | None = None) -> str:
    """The claim's metrics at every point: a row per metric and row value, a column per value
    of the first axis, and the AE's where it does not move along that axis."""
    cols = grid.columns
    rows_named = [", ".join(a.name for a in grid.axes[1:])] if len(grid.axes) > 1 else []
    head = ["metric", *rows_named, *(cols.show(v) for v in cols.values), "AE"]
    align = ["---"] * (1 + len(rows_named)) + ["---:"] * (len(cols.values) + 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for metric in catalogue.of_claim(claim.name):
        constant = grid.ae_constant(metric)
        label = f"{metric.label} ({metric.better} is better)" if metric.better else metric.label
        for row in grid.rows():
            cells = [grid.cell((v, *row)) for v in cols.values]
            present = [c for c in cells if c is not None]
            if not present:
                continue
            first = [label, *([_row_value(grid, row)] if rows_named else [])]
            label = ""  # once per metric
            ae = _shown(metric, grid.ae_pool(metric, present[0].at)) if constant else "below"
            lines.append("| " + " | ".join(
                [*first, *(_cell_text(c, metric, noise) for c in cells), ae]) + " |")  # fmt: skip
            if not constant:
                ae_cells = [
                    _shown(metric, grid.ae_pool(metric, c.at)) if c else "—" for c in cells
                ]
                lines.append("| " + " | ".join(
                    ["the AE", *first[1:], *ae_cells, ""]) + " |")  # fmt: skip
    return "\n".join(lines)


def _row_value(grid: Grid, row: tuple[Any, ...]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, int | float) else str(v) for v in row)


def _where(grid: Grid, cell: Cell) -> str:
    return ", ".join(a.show(v) for a, v in zip(grid.axes, cell.at, strict=True))


def _points(grid: Grid, cells: Sequence[Cell], most: int = 4) -> str:
    """'β/latent size 50/8, 150/8 and 2 more'."""
    shown = ", ".join("/".join(_row_value(grid, (v,)) for v in c.at) for c in cells[:most])
    more = f" and {len(cells) - most} more" if len(cells) > most else ""
    return f"{'/'.join(a.name for a in grid.axes)} {shown}{more}"


def line(grid: Grid, claim: Claim, noise: Mapping[str, Any] | None = None) -> str:
    """One line: the claim, and per metric at how many points it holds (the VAE's verdict
    against the AE is the claim's), where it fails, at how many the seeds do not resolve it;
    then the first metric's verdict at the lecture's point."""
    parts = []
    for metric in catalogue.of_claim(claim.name):
        verdicts = [(c, c.vae_vs_ae(metric, noise)) for c in grid.cells]
        verdicts = [(c, v) for c, v in verdicts if v is not None]
        if not verdicts:
            continue
        holds = [c for c, v in verdicts if v.word == claim.expect]
        fails = [c for c, v in verdicts if v.decided and v.word != claim.expect]
        open_ = len(verdicts) - len(holds) - len(fails)
        text = f"{metric.name} holds at {len(holds)} of {len(verdicts)} points"
        if fails:
            text += f", fails at {len(fails)} ({_points(grid, fails, 3)})"
        if open_:
            text += f", {open_} not resolved"
        parts.append(text)
    if claim.trend:
        parts += [
            t for m in catalogue.of_claim(claim.name) if (t := _trend(grid, claim, m, noise))
        ]
    text = f"**{claim.title}** ({claim.says}): " + "; ".join(parts) + "."
    lecture = None if grid.lecture is None else grid.cell(grid.lecture)
    first = catalogue.of_claim(claim.name)[0]
    verdict = None if lecture is None else lecture.vae_vs_ae(first, noise)
    if verdict is not None:
        text += (
            f" At the lecture's point ({_where(grid, lecture)}; {len(lecture.runs)} seeds) "
            f"the VAE's {first.name} is {verdict}."
        )
    return text


def _trend(grid: Grid, claim: Claim, metric: Metric, noise: Mapping[str, Any] | None) -> str:
    """'along latent size, BCE is better at 10 of 12 steps for the VAE, 2 of 2 for the AE':
    each point against the next along the claim's axis, every other axis fixed."""
    i = next((i for i, a in enumerate(grid.axes) if claim.axis in a.keys), None)
    if i is None:
        return ""
    axis, counts = grid.axes[i], []
    for model in ("vae", "ae"):
        seen, better, steps = set(), 0, 0
        for cell in grid.cells:
            k = axis.values.index(cell.at[i])
            if k + 1 == len(axis.values):
                continue
            at = list(cell.at)
            at[i] = axis.values[k + 1]
            after = grid.cell(at)
            if after is None:
                continue
            if model == "vae":
                (sa, a), (sb, b) = after.values("vae", metric), cell.values("vae", metric)
            else:
                ra, rb = grid.ae_runs(metric, at), grid.ae_runs(metric, cell.at)
                if (key := (tuple(ra.items()), tuple(rb.items()))) in seen:
                    continue
                seen.add(key)
                (sa, a), (sb, b) = (list(ra), list(ra.values())), (list(rb), list(rb.values()))
            if a and b:
                verdict = judge(a, b, metric.better, _measured(noise, metric), (sa, sb),
                                metric.log)  # fmt: skip
                better += verdict.word == "better"
                steps += 1
        if steps:
            counts.append(f"{better} of {steps} steps for the {model.upper()}")
    if not counts:
        return ""
    return f"along {axis.name}, {metric.name} is better at " + ", ".join(counts)


def reading(grid: Grid, noise: Mapping[str, Any] | None = None) -> list[tuple[Claim, str, str]]:
    """(claim, its line, its table) for each claim of the catalogue that the grid has."""
    found = []
    for claim in catalogue.CLAIMS:
        if any(c.values("vae", m)[1] for m in catalogue.of_claim(claim.name) for c in grid.cells):
            found.append((claim, line(grid, claim, noise), table(grid, claim, noise)))
    return found


def draw(grid: Grid, noise: Mapping[str, Any] | None, out: Path) -> list[Path]:
    """Each claim's figure into out/<claim>.png: a panel per metric against the claim's axis
    (or the first), a VAE line per value of the other axes, the AE dashed; error bars are
    the standard deviation over each point's seeds. Returns their paths."""
    from wardrobe.figures import plt  # pyplot, under figures' files-only backend

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for claim in catalogue.CLAIMS:
        metrics = catalogue.of_claim(claim.name)
        x = next((i for i, a in enumerate(grid.axes) if claim.axis in a.keys), 0)
        axis = grid.axes[x]
        others = [a for i, a in enumerate(grid.axes) if i != x]
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5),
                                 layout="constrained", squeeze=False)  # fmt: skip
        for ax, metric in zip(axes[0], metrics, strict=True):
            ae_once = grid.ae_constant(metric, along=1 if x == 0 and others else 0)
            for j, rest in enumerate(itertools.product(*(a.values for a in others))):
                colour = f"C{j % 10}"
                label = ", ".join(a.show(v) for a, v in zip(others, rest, strict=True))
                for model, style in (("vae", "o-"), ("ae", "s--")):
                    if model == "ae" and ae_once and j > 0:
                        continue
                    xs, ys, es = [], [], []
                    for value in axis.values:
                        at = list(rest)
                        at.insert(x, value)
                        cell = grid.cell(at)
                        if cell is None:
                            continue
                        mean, sd, n = (cell.stats(model, metric) if model == "vae"
                                       else grid.ae_pool(metric, cell.at))  # fmt: skip
                        if n:
                            xs.append(value)
                            ys.append(mean)
                            es.append(sd or 0.0)
                    if not xs:
                        continue
                    name = model.upper() + (f", {label}" if label and not (
                        model == "ae" and ae_once) else "")  # fmt: skip
                    ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=3, label=name,
                                color="0.35" if model == "ae" and ae_once else colour,
                                linewidth=1 if model == "ae" else 1.5)  # fmt: skip
            _scale(ax, axis)
            if metric.log:
                ax.set_yscale("log")
            ax.set_ylabel(metric.title(), fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{claim.title}: {claim.says}", fontsize=9)
        written.append(_save(fig, out / f"{claim.name}.png"))
    return written


def _scale(ax, axis: Axis) -> None:
    numeric = all(isinstance(v, int | float) for v in axis.values)
    if numeric and min(axis.values) > 0 and max(axis.values) / min(axis.values) >= 10:
        ax.set_xscale("log")
        ax.set_xticks(axis.values, [f"{v:g}" for v in axis.values])
        ax.minorticks_off()
    ax.set_xlabel(axis.name)


def _save(fig, path: Path) -> Path:
    from wardrobe.figures import save

    with atomic_file(path) as tmp:
        save(fig, tmp, dpi=100)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="reports/sweeps/<name>.json (make sweep)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/claims"))
    parser.add_argument("--noise", type=Path, default=Path("reports/noise.json"))
    args = parser.parse_args(argv)
    noise = read_noise(args.noise)
    grid = load_grid(args.results, noise)
    for path in draw(grid, noise, args.out):
        print(f"claims: {path} written")
    for _, text, rows in reading(grid, noise):
        print(f"{text}\n\n{rows}\n")
    print(LEGEND)


if __name__ == "__main__":
    from wardrobe.cli import run_stage

    run_stage("claims", main)
