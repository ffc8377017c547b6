"""The claims read across a sweep's results file (reports/sweeps/*.json): the grid from the
sweep's own axes, each point's seeds, the verdicts, the lines and tables, the figures."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT
from wardrobe import catalogue
from wardrobe.sweep.claims import ClaimsError, load_grid, reading, table

BETAS, LATENTS, SEEDS = (50, 500, 5000), (2, 8), (42, 1, 2)
# a seed's offset, shared by both models at that seed (the seed's classifier scores both)
OFFSET = {42: 0.0, 1: 0.004, 2: -0.003}


def point_metrics(base: dict, beta: float, z: int, seed: int) -> dict:
    metrics = copy.deepcopy(base)
    ae, vae = metrics["ae"]["test"], metrics["vae"]["test"]
    ae["bce"] = 0.3 - 0.01 * z + OFFSET[seed] / 10  # falls with the latent size
    vae["bce"] = 0.31 - 0.01 * z + 0.02 / beta + OFFSET[seed] / 10  # above the AE's
    ae["generation"]["coverage"] = 0.05 + OFFSET[seed]
    # the VAE's: clearly below the AE's at β 50, clearly above at 5000; at 500 the seeds
    # disagree
    vae["generation"]["coverage"] = {50: 0.02, 5000: 0.09}.get(beta, 0.05 + 3 * OFFSET[seed])
    vae["generation"]["coverage"] += OFFSET[seed] if beta != 500 else 0.0
    ae["generation"]["precision"] = 0.9 + 0.01 * z
    return metrics


def results_file(path, skip=None, seeds=SEEDS, axis=None):
    """A results file as `make sweep` writes it: every point's params and metrics (the
    committed metrics, with the values the assertions read set per point). `axis`: a sweep
    over (key, values) alone instead of β by latent size."""
    base = json.loads((ROOT / "reports" / "metrics.json").read_text())
    points = []
    grid = [(b, z) for b in BETAS for z in LATENTS] if axis is None else axis[1]
    for at in grid:
        for seed in seeds:
            if axis is None:
                beta, z = at
                params = {"vae.beta": beta, "ae.latent_dim": z, "vae.latent_dim": z}
                name = f"claims-beta{beta}-z{z}-seed{seed}"
                metrics = point_metrics(base, beta, z, seed)
            else:
                params, name = {axis[0]: at}, f"lr-{at}-seed{seed}"
                metrics = point_metrics(base, 5000 if at > 0.001 else 50, 2, seed)
            params["seed"] = seed
            points.append({
                "point": name, "status": "done", "node": "n", "seconds": 1.0, "error": None,
                "metrics": {} if name == skip else metrics, "ran": [],
                "started": 0.0, "ended": 1.0, "params": params,
            })  # fmt: skip
    path.write_text(json.dumps({"sweep": "sweeps/claims.yaml", "commit": "0" * 40,
                                "seconds": 1.0, "points": points}))  # fmt: skip
    return path


def claim(name):
    return next(c for c in catalogue.CLAIMS if c.name == name)


def test_the_grid_comes_from_the_sweep_s_axes_with_each_point_s_seeds(tmp_path):
    grid = load_grid(results_file(tmp_path / "claims.json", skip="claims-beta50-z8-seed1"))
    assert [a.keys for a in grid.axes] == [("vae.beta",), ("ae.latent_dim", "vae.latent_dim")]
    assert [a.name for a in grid.axes] == ["β", "latent size"]
    assert len(grid.cells) == len(BETAS) * len(LATENTS)
    assert sorted(grid.cell((50, 8)).runs) == [2, 42]  # the point without metrics is left out
    assert sorted(grid.cell((500, 2)).runs) == [1, 2, 42]
    bce = next(m for m in catalogue.CATALOGUE if m.key == "bce")
    mean, sd, n = grid.cell((500, 2)).stats("vae", bce)
    offset = sum(OFFSET.values()) / 3 / 10
    assert n == 3 and mean == pytest.approx(0.31 - 0.02 + 0.02 / 500 + offset) and sd > 0
    # the AE does not move with β: its runs are pooled over a latent size's points
    assert grid.ae_constant(bce, along=0) and not grid.ae_constant(bce, along=1)
    assert grid.ae_pool(bce, (50, 2))[2] == 3


def test_each_claim_is_one_line_and_a_table_marked_by_the_seeds_verdicts(tmp_path):
    grid = load_grid(results_file(tmp_path / "claims.json"))
    found = {c.name: (line, rows) for c, line, rows in reading(grid)}
    assert list(found) == [c.name for c in catalogue.CLAIMS]
    assert all(len(line) <= 700 for line, _ in found.values())
    line, rows = found["vae_prior"]
    # coverage: worse at β 50 (both latent sizes), better at 5000, not resolved at 500
    assert "coverage holds at 2 of 6 points, fails at 2 (β/latent size 50/2, 50/8), 2 not " \
        "resolved" in line  # fmt: skip
    lines = rows.splitlines()
    assert lines[0] == "| metric | latent size | β 50 | β 500 | β 5000 | AE |"
    coverage = [r for r in lines if "0.020" in r or r.startswith("| generated images: cov")]
    assert coverage[0].startswith("| generated images: coverage (test images' balls reached) "
                                  "(higher is better) | 2 | 0.020 ± 0.004 ▼ | ")  # fmt: skip
    assert "▲" in coverage[0].split(" | ")[4] and "○" in coverage[0].split(" | ")[3]
    assert coverage[0].endswith("| 0.050 ± 0.004 |")  # the AE's, pooled over its three seeds
    # claim 1: the AE better everywhere (the VAE's BCE is above it by 0.02/β + 0.01), and
    # better with a larger latent size
    line = found["reconstruction"][0]
    assert "BCE holds at 6 of 6 points" in line
    assert "along latent size, BCE is better at 3 of 3 steps for the VAE, 1 of 1 steps for " \
        "the AE" in line  # fmt: skip


def test_the_lecture_s_point_takes_the_noise_file_s_other_seeds(tmp_path):
    """The point the noise was measured at (β 500, latent size 2) is judged on every seed
    measured there: its 3 and the noise file's others."""
    noise = json.loads((ROOT / "reports" / "noise.json").read_text())
    noise["params"] = {**noise["params"], "vae.beta": 500, "vae.latent_dim": 2,
                       "ae.latent_dim": 2}  # fmt: skip
    grid = load_grid(results_file(tmp_path / "claims.json"), noise)
    assert grid.lecture == (500, 2) and grid.merged == 2  # seeds 3 and 4
    assert sorted(grid.cell((500, 2)).runs) == [1, 2, 3, 4, 42]
    assert sorted(grid.cell((50, 2)).runs) == [1, 2, 42]
    line = dict((c.name, ln) for c, ln, _ in reading(grid, noise))["vae_prior"]
    assert "At the lecture's point (β 500, latent size 2; 5 seeds) the VAE's KL" in line
    other = {**noise, "params": {**noise["params"], "vae.beta": 7}}
    assert load_grid(results_file(tmp_path / "claims.json"), other).merged == 0


def test_a_sweep_over_another_key_is_read_and_drawn_the_same_way(tmp_path):
    """The axes come from the sweep: a sweep over vae.learning_rate alone gets a table with
    a column per learning rate, and its figures."""
    path = results_file(tmp_path / "lr.json", axis=("vae.learning_rate", (0.0001, 0.01)))
    grid = load_grid(path)
    assert [a.keys for a in grid.axes] == [("vae.learning_rate",)]
    rows = table(grid, claim("vae_prior"))
    assert (
        rows.splitlines()[0]
        == "| metric | vae.learning_rate 0.0001 | vae.learning_rate 0.01 | AE |"
    )
    assert "| 0.020 ± 0.004 ▼ | 0.090 ± 0.004 ▲ |" in rows
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep.claims", str(path), "--out", str(out),
         "--noise", str(tmp_path / "absent.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {p.stem for p in out.iterdir()} == {c.name for c in catalogue.CLAIMS}
    assert "**Claim 3: the VAE's prior**" in done.stdout


def test_the_figures_are_drawn_per_claim_with_each_point_s_spread(tmp_path):
    results = results_file(tmp_path / "claims.json")
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep.claims", str(results), "--out", str(out),
         "--noise", str(ROOT / "reports" / "noise.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for c in catalogue.CLAIMS:
        with Image.open(out / f"{c.name}.png") as image:
            panels = len(catalogue.of_claim(c.name))
            assert image.width == 500 * panels and image.height == 450
    assert "- **" not in done.stdout and "**Claim 2: the AE's gaps**" in done.stdout


def test_a_results_file_without_axes_or_metrics_is_one_line(tmp_path):
    path = tmp_path / "quick.json"
    path.write_text(json.dumps({"points": [
        {"point": f"q-{s}", "params": {"seed": s}, "metrics": {"ae": {"test": {"bce": 1}}}}
        for s in (1, 2)
    ]}))  # fmt: skip
    with pytest.raises(ClaimsError, match=r"its points vary no params but seed"):
        load_grid(path)
    path.write_text(json.dumps({"points": [{"point": "q", "params": {}, "metrics": {}}]}))
    with pytest.raises(ClaimsError, match=r"no point has metrics; run the sweep to its end"):
        load_grid(path)
    with pytest.raises(
        ClaimsError, match=r"not found; run `make sweep SWEEP=sweeps/claims\.yaml`"
    ):
        load_grid(tmp_path / "missing.json")


def test_the_readme_section_reads_the_claims_and_links_their_figures(tmp_path):
    """`make results`' part from the claims sweep: per claim its line, its table and its
    figure, drawn into the docs directory and linked relative to the README; nothing without
    the sweep."""
    from wardrobe.report import design_space_section

    results = results_file(tmp_path / "claims.json")
    noise = json.loads((ROOT / "reports" / "noise.json").read_text())
    docs = tmp_path / "docs" / "figures"
    text = design_space_section(results, noise, docs, tmp_path)
    assert text.startswith("### The claims across β and latent size\n")
    for c, line, rows in reading(load_grid(results, noise), noise):
        assert f"- {line}\n\n{rows}\n\n![{c.title}" in text
        assert f"](docs/figures/claims/{c.name}.png)" in text
        assert (docs / "claims" / f"{c.name}.png").is_file()
    assert max(len(line) for line in text.splitlines()) <= 700
    assert design_space_section(tmp_path / "absent.json", noise, docs, tmp_path) == ""


def test_a_metric_added_to_the_catalogue_is_in_the_table_the_gate_and_the_claims(
    tmp_path, monkeypatch
):
    """Adding a metric is its computation and one catalogue entry: the test coverage of the
    reconstructions, computed but not catalogued, is added, and the README's table, the
    registry's gate and the claims show it."""
    from wardrobe import promote, report

    key = "reconstructions.coverage"
    assert key not in {m.key for m in catalogue.CATALOGUE}
    added = catalogue.Metric(
        key, "test reconstructions: coverage", 3, "higher",
        shown=frozenset({catalogue.TABLE, catalogue.GATE}), claim="reconstruction",
        short="reconstructions' coverage",
    )  # fmt: skip
    monkeypatch.setattr(catalogue, "CATALOGUE", (*catalogue.CATALOGUE, added))
    metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
    shares = json.loads((ROOT / "reports" / "class_shares.json").read_text())
    ae, vae = (metrics[m]["test"]["reconstructions"]["coverage"] for m in ("ae", "vae"))
    shown = report.metrics_table(metrics, shares).splitlines()
    assert f"| test reconstructions: coverage | higher | {ae:.3f} | {vae:.3f} |" in shown
    assert promote.gate_metrics()["test.reconstructions.coverage"] == "higher"
    grid = load_grid(results_file(tmp_path / "claims.json"))
    line, rows = next((ln, r) for c, ln, r in reading(grid) if c.name == "reconstruction")
    assert "reconstructions' coverage holds at" in line
    assert "| test reconstructions: coverage (higher is better) | 2 |" in rows
    assert dataclasses.replace(added, shown=frozenset()) not in catalogue.shown(catalogue.TABLE)
    monkeypatch.undo()
    assert "test.reconstructions.coverage" not in promote.gate_metrics()


def test_the_committed_sweep_and_single_point_readings_agree_at_the_lecture_s_point():
    """reports/: at β 500 and latent size 2 the claims table's cell and the README's single-
    point reading compare the same five seeds of each model, and give the same verdict."""
    from wardrobe.report import _versus

    noise = json.loads((ROOT / "reports" / "noise.json").read_text())
    grid = load_grid(ROOT / "reports" / "sweeps" / "claims.json", noise)
    assert grid.lecture is not None
    cell = grid.cell(grid.lecture)
    assert sorted(cell.runs) == sorted(r["seed"] for r in noise["runs"])
    compared = {}
    for claim in catalogue.CLAIMS:
        for metric in catalogue.of_claim(claim.name):
            single = _versus(noise, metric.dotted("vae"), metric.dotted("ae"))
            swept = cell.vae_vs_ae(metric, noise)
            if single is not None:
                assert swept is not None, metric.name
                compared[metric.key] = (swept.word, single.word)
    assert all(a == b for a, b in compared.values()), compared
    assert {"generation.kid", "generation.frechet_distance", "bce"} <= set(compared), compared
