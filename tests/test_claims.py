"""The claims' curves and their reading, from a sweep's results file (reports/sweeps/*.json)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT
from wardrobe.sweep.claims import ClaimsError, load_points, reading

BETAS, LATENTS = (50, 500, 5000), (2, 8)


def results_file(path, skip_metrics_of=None):
    """A results file as `make sweep` writes it: every point's params and metrics (the
    committed metrics, with the values the assertions read set per point)."""
    base = json.loads((ROOT / "reports" / "metrics.json").read_text())
    points = []
    for beta in BETAS:
        for z in LATENTS:
            metrics = copy.deepcopy(base)
            metrics["ae"]["test"]["bce"] = 0.3 - 0.01 * z  # falls with the latent size
            metrics["vae"]["test"]["bce"] = 0.31 - 0.01 * z + 0.02 / beta
            metrics["ae"]["test"]["generation"]["coverage"] = 0.05
            metrics["vae"]["test"]["generation"]["coverage"] = 0.04 if beta < 5000 else 0.06
            metrics["ae"]["test"]["generation"]["precision"] = 0.9 + 0.01 * z
            name = f"claims-beta{beta}-z{z}"
            points.append({
                "point": name, "status": "done", "node": "n", "seconds": 1.0, "error": None,
                "metrics": {} if name == skip_metrics_of else metrics, "ran": [],
                "started": 0.0, "ended": 1.0,
                "params": {"vae.beta": beta, "ae.latent_dim": z, "vae.latent_dim": z},
            })  # fmt: skip
    path.write_text(json.dumps({"sweep": "sweeps/claims.yaml", "commit": "0" * 40,
                                "seconds": 1.0, "points": points}))  # fmt: skip
    return path


def test_the_reading_says_where_each_claim_holds_with_the_numbers(tmp_path):
    points = load_points(results_file(tmp_path / "claims.json", "claims-beta50-z8"))
    assert len(points) == len(BETAS) * len(LATENTS) - 1  # the point without metrics is left out
    text = reading(points).splitlines()
    assert [line.split("**")[1] for line in text] == [
        "Claim 1", "Claim 2", "Claim 3 at latent size 2", "Generation at latent size 2",
        "Claim 3 at latent size 8", "Generation at latent size 8",
    ]  # fmt: skip
    assert "AE's test BCE 0.2800 at 2, 0.2200 at 8 (falls at every step)" in text[0]
    assert text[0].endswith("The AE's BCE is better than the VAE's at 2, 8.")
    assert "samples unlike every test image 8.0% at 2, 2.0% at 8" in text[1]
    assert text[1].endswith("above the VAE's at 2; below the VAE's at 8.")
    assert ("coverage 0.04 at β 50, 0.04 at β 500, 0.06 at β 5000 against the AE's 0.05: "
            "above the AE's at β 5000; below the AE's at β 50, β 500;") in text[2]  # fmt: skip
    # latent size 8 has no point at β 50: its curves start at 500
    assert "coverage 0.04 at β 500, 0.06 at β 5000 against" in text[4]


def test_the_reading_counts_only_differences_beyond_the_noise(tmp_path):
    """With the measured noise, a difference within the bound on two runs' difference (the
    root mean square of the two models' tolerances) is read as no difference."""
    points = load_points(results_file(tmp_path / "claims.json"))
    noise = json.loads((ROOT / "reports" / "noise.json").read_text())
    tolerances = noise["files"]["reports/metrics.json"]
    ae, vae = (tolerances[f"{m}.test.generation.coverage"]["tolerance"] for m in ("ae", "vae"))
    margin = math.sqrt((ae**2 + vae**2) / 2)
    assert margin > 0.02  # the test's coverages differ by 0.01 and 0.01 from the AE's
    text = reading(points, noise).splitlines()
    assert (f"against the AE's 0.05: within the noise (±{margin:.3g}) at β 50, β 500, "
            "β 5000;") in text[2]  # fmt: skip
    # the AE's BCE is better by 0.01 at each latent size, beyond both models' noise (< 0.01)
    assert text[0].endswith("The AE's BCE is better than the VAE's at 2, 8.")


def test_the_figures_are_drawn_with_the_lecture_s_point(tmp_path):
    results = results_file(tmp_path / "claims.json")
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, "-m", "wardrobe.sweep.claims", str(results), "--out", str(out),
         "--noise", str(ROOT / "reports" / "noise.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = {"reconstruction", "ae_gaps", "vae_prior", "generation"}
    assert {p.stem for p in out.iterdir()} == names
    for name in names:
        with Image.open(out / f"{name}.png") as image:
            assert image.width >= 1000 and image.height == 450
    assert "- **Claim 2**" in done.stdout


def test_a_results_file_without_the_claims_axes_is_one_line(tmp_path):
    path = tmp_path / "quick.json"
    path.write_text(json.dumps({"points": [
        {"point": "q-beta1", "params": {"vae.beta": 1}, "metrics": {"ae": {"test": {"bce": 1}}}}
    ]}))  # fmt: skip
    with pytest.raises(ClaimsError, match=r"does not set vae.beta and vae.latent_dim"):
        load_points(path)
    with pytest.raises(
        ClaimsError, match=r"not found; run `make sweep SWEEP=sweeps/claims\.yaml`"
    ):
        load_points(tmp_path / "missing.json")


def test_the_readme_section_reads_the_claims_and_links_their_figures(tmp_path):
    """`make results`' part from the claims sweep: the reading and the four figures, drawn
    into the docs directory and linked relative to the README; nothing without the sweep."""
    from wardrobe.report import design_space_section

    results = results_file(tmp_path / "claims.json")
    noise = json.loads((ROOT / "reports" / "noise.json").read_text())
    docs = tmp_path / "docs" / "figures"
    text = design_space_section(results, noise, docs, tmp_path)
    assert text.startswith("### The claims across β and latent size\n")
    assert reading(load_points(results), noise) in text
    for name in ("reconstruction", "ae_gaps", "vae_prior", "generation"):
        assert f"](docs/figures/claims/{name}.png)" in text
        assert (docs / "claims" / f"{name}.png").is_file()
    assert design_space_section(tmp_path / "absent.json", noise, docs, tmp_path) == ""
