"""Every params value the rules allow runs: the whole pipeline at the lowest value of every key
the rules bound from below, in one `dvc repro` on the real data."""

from __future__ import annotations

import json
import math

import pytest

from conftest import dvc, project_repo, ran_stages, repo_env, write_params  # noqa: F401

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


def test_the_pipeline_runs_with_every_key_at_its_lowest_allowed_value(tmp_path):
    repo = project_repo(tmp_path / "project")
    params = write_params(repo, repo / "params.yaml", **LOWEST)
    raw = params.read_text()
    import yaml

    assert yaml.safe_load(raw)["seed"] == 42
    params.write_text(raw.replace("seed: 42", "seed: 0", 1))
    from wardrobe.params import load

    load(params)  # the rules allow every value here
    ran = dvc(repo, "repro")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert len(ran_stages(ran.stdout)) == 8, ran.stdout
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())

    def values(tree):
        for value in tree.values():
            yield from values(value) if isinstance(value, dict) else [value]

    numbers = [v for v in values(metrics) if isinstance(v, int | float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    figures = list((repo / "reports" / "figures").rglob("*.png"))
    assert len(figures) == 11, figures
