"""Every params value the rules allow runs: the whole pipeline at the lowest value of every key
the rules bound from below, and at the highest of every key bounded from above, each in one
`dvc repro` on the real data."""

from __future__ import annotations

import json
import math

import pytest

from conftest import PIPELINE, dvc, project_repo, ran_stages, repo_env, write_params  # noqa: F401

pytestmark = pytest.mark.slow

# The lowest value the rules allow, for every key that has a lower bound (and the other side
# of each switch); the facts about the data (counts, pixel ranges) stay what they are.
TINY = 1e-12  # "greater than 0"
LOWEST = {
    "data": {"timeout_s": 0.1, "retries": 0},
    "preprocess": {"limit_train": 10, "limit_test": 10},
    "checks": {"examples": 0, "class_count_tolerance": 0.0},
    "ae": {"latent_dim": 2, "filters": [1], "loss": "mse", "learning_rate": TINY, "epochs": 1,
           "batch_size": 1, "deterministic": False},
    "vae": {"latent_dim": 2, "filters": [1], "beta": TINY, "learning_rate": TINY, "epochs": 1,
            "batch_size": 1, "deterministic": False},
    "classifier": {"filters": [1], "features": 1, "dropout": 0.0, "learning_rate": TINY,
                   "epochs": 1, "batch_size": 1, "min_accuracy": 0.0, "deterministic": False},
    "evaluate": {"generated": 6, "batch_size": 1},
    "plots": {"reconstructions": 1, "scatter_points": 1, "samples": 1, "grid_size": 2, "dpi": 20},
}  # fmt: skip


# The highest value the rules allow, for every key that has an upper bound, except those whose
# cost only grows with them: epochs (1000), filters (five of 1024) and evaluate.generated
# (100,000) run for hours, not into an error. A learning rate of 1 diverges, which stops the
# training with its one line (test_training). The AE's and VAE's latent size needs more test
# images than dimensions (a params rule), so the test split keeps 520.
HIGHEST = {
    "data": {"timeout_s": 3600, "retries": 10},
    "preprocess": {"limit_train": 10, "limit_test": 520},
    "checks": {"examples": 1000, "class_count_tolerance": 1e9},
    "ae": {"latent_dim": 512, "epochs": 1, "batch_size": 60_000},
    "vae": {"latent_dim": 512, "beta": 1e6, "epochs": 1, "batch_size": 60_000},
    "classifier": {"features": 4096, "dropout": 0.999999, "epochs": 1, "batch_size": 60_000,
                   "min_accuracy": 0.0},
    "evaluate": {"generated": 6, "batch_size": 60_000},
    "plots": {"reconstructions": 50, "scatter_points": 10_000, "samples": 100, "grid_size": 50,
              "dpi": 600},
}  # fmt: skip


@pytest.mark.parametrize(
    "sections, seed", [(LOWEST, 0), (HIGHEST, 2**32 - 1)], ids=["lowest", "highest"]
)
def test_the_pipeline_runs_with_every_key_at_its_bound(tmp_path, sections, seed):
    repo = project_repo(tmp_path / "project")
    params = write_params(repo, repo / "params.yaml", **sections)
    raw = params.read_text()
    import yaml

    assert yaml.safe_load(raw)["seed"] == 42
    params.write_text(raw.replace("seed: 42", f"seed: {seed}", 1))
    from wardrobe.params import load

    load(params)  # the rules allow every value here
    ran = dvc(repo, "repro")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert ran_stages(ran.stdout) == PIPELINE, ran.stdout
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())

    def values(tree):
        for value in tree.values():
            yield from values(value) if isinstance(value, dict) else [value]

    numbers = [v for v in values(metrics) if isinstance(v, int | float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    figures = list((repo / "reports" / "figures").rglob("*.png"))
    assert len(figures) == 11, figures
    from wardrobe.figures import FIGURE_SIZES

    # the PNG's size (its IHDR chunk) is the figure's at the dpi asked for
    header = (repo / "reports" / "figures" / "ae" / "reconstructions.png").read_bytes()[16:24]
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
    inches = FIGURE_SIZES["reconstructions"]
    assert (width, height) == (round(inches[0] * sections["plots"]["dpi"]),
                               round(inches[1] * sections["plots"]["dpi"]))  # fmt: skip
