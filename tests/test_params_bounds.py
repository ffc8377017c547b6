"""Every params value the rules allow runs: the whole pipeline at the lowest value of every key
the rules bound from below, and at the highest of every key bounded from above, each on the
real data. The promise is about values, not DVC (tests/test_pipeline_e2e.py runs `dvc repro`):
each stage's command from dvc.yaml runs in one Python process, which loads TensorFlow once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from conftest import PIPELINE, ROOT, project_repo, repo_env, write_params

# The lowest and highest value the rules allow, derived from params.py's own rules (a new or
# changed bound is run without a change here). Not derived: what is no rule's bound but is
# tried all the same (the other side of each switch; a tolerance far past any count), and the
# keys whose extreme would only cost time or fail by design:
TINY = 1e-12  # "greater than 0"
EXTRA_LOWEST = {"ae.loss": "mse", "ae.deterministic": False, "vae.deterministic": False,
                "classifier.deterministic": False}  # fmt: skip
EXTRA_HIGHEST = {"checks.class_count_tolerance": 1e9}
# Facts about the data (its counts and pixel ranges) stay what they are; epochs (1000),
# filters (five of 1024) and evaluate.generated (100,000) run for hours, not into an error; a
# learning rate of 1 diverges, and a min_accuracy of 1 fails the classifier's gate, each with
# its one line (test_training); the AE's and VAE's latent size needs more test images than
# dimensions (a params rule), so the test split keeps 520, and the training split stays small.
FIXED = ("seed", "checks.raw_train_count", "checks.raw_test_count", "data.mirror", "data.urls")
NOT_HIGHEST = {"ae.epochs": 1, "vae.epochs": 1, "classifier.epochs": 1, "evaluate.generated": 6,
               "ae.learning_rate": None, "vae.learning_rate": None,
               "classifier.learning_rate": None, "classifier.min_accuracy": 0.0,
               "preprocess.limit_train": 10, "preprocess.limit_test": 520,
               "ae.filters": None, "vae.filters": None, "classifier.filters": None}  # fmt: skip


# The stages named, in that order, each as dvc.yaml's command says (`python pipeline/<s>.py
# ARGS`, a foreach stage's ${item} filled in): its script's main(ARGS), in this one process.
IN_ONE_PROCESS = r"""
import importlib.util, shlex, sys
import yaml
stages = {}
for name, stage in yaml.safe_load(open("dvc.yaml"))["stages"].items():
    if "foreach" in stage:
        for item in stage["foreach"]:
            stages[f"{name}@{item}"] = stage["do"]["cmd"].replace("${item}", item)
    else:
        stages[name] = stage["cmd"]
for name in sys.argv[1:]:
    python, script, *args = shlex.split(stages[name])
    assert python == "python", stages[name]
    spec = importlib.util.spec_from_file_location(f"stage_{name.replace('@', '_')}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(args)
    print(f"ran {name}", flush=True)
"""

Bound = tuple[object, object]  # (the value at the edge, one just past it)


def rule_bounds() -> dict[str, tuple[Bound | None, Bound | None]]:
    """{dotted key: (its lowest, its highest)} as params.py's rules allow them, each the value
    at the edge and one just past it (None where a side is unbounded); filters at their lowest
    are one filter of the narrowest width."""
    from annotated_types import Ge, Gt, Le, Lt, MinLen
    from pydantic import BaseModel

    from wardrobe.params import Params

    def sides(field: Any) -> tuple[Bound | None, Bound | None]:
        whole = field.annotation is int  # a float field's bound may be written as an int
        low = high = None
        for rule in field.metadata:
            if isinstance(rule, Ge | Gt):
                inclusive = isinstance(rule, Ge)
                d = 1 if whole else (max(abs(rule.ge) * 1e-6, 1e-9) if inclusive else TINY)
                edge = rule.ge if inclusive else rule.gt + d
                low = (edge if whole else float(edge), edge - d)  # (the edge, just past it)
            elif isinstance(rule, Le | Lt):
                inclusive = isinstance(rule, Le)
                d = 1 if whole else (max(abs(rule.le) * 1e-6, 1e-9) if inclusive else 1e-6)
                edge = rule.le if inclusive else rule.lt - d
                high = (edge if whole else float(edge), edge + d)
            elif isinstance(rule, MinLen):
                low = ([1] * rule.min_length, [1] * (rule.min_length - 1))
        return low, high

    found = {}
    for name, field in Params.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key, inner in model.model_fields.items():
                found[f"{name}.{key}"] = sides(inner)
        else:
            found[name] = sides(field)
    for key in ("preprocess.limit_train", "preprocess.limit_test"):  # Subset: ge=10, or None
        found[key] = ((10, 9), None)
    return found


def extreme(end: int) -> dict[str, object]:
    """{dotted key: value}: every bounded key at its lowest (end 0) or highest (1)."""
    values = {k: b[end][0] for k, b in rule_bounds().items()
              if b[end] is not None and k not in FIXED}  # fmt: skip
    if end == 0:
        return values | EXTRA_LOWEST
    values |= EXTRA_HIGHEST | {k: v for k, v in NOT_HIGHEST.items() if v is not None}
    return {k: v for k, v in values.items() if k not in NOT_HIGHEST or NOT_HIGHEST[k] is not None}


def sections(values: dict[str, object]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for key, value in values.items():
        section, name = key.split(".")
        found.setdefault(section, {})[name] = value
    return found


LOWEST, HIGHEST = sections(extreme(0)), sections(extreme(1))


def test_the_bounds_run_are_the_rules_own():
    """Each value the pipeline test runs at a bound is allowed, and one just past it is not:
    the bounds come from params.py, so a new or changed bound is run as it is."""
    from wardrobe.errors import ParamsError
    from wardrobe.params import parse, validate
    from wardrobe.sweep.spec import with_values

    base = parse((ROOT / "params.yaml").read_text())
    bounds = rule_bounds()
    assert {"vae.beta", "ae.latent_dim", "plots.dpi", "classifier.dropout"} <= set(bounds)
    for end, values in ((0, extreme(0)), (1, extreme(1))):
        validate(with_values(base, values), f"the {('lowest', 'highest')[end]} values")
        for key in values:
            bound = bounds.get(key, (None, None))[end]
            if bound is None or key in NOT_HIGHEST:
                continue
            with pytest.raises(ParamsError, match=key.split(".")[-1]):
                validate(with_values(base, {**values, key: bound[1]}), f"{key} past its bound")


@pytest.mark.slow
@pytest.mark.parametrize(
    "at, seed", [(LOWEST, 0), (HIGHEST, 2**32 - 1)], ids=["lowest", "highest"]
)
def test_the_pipeline_runs_with_every_key_at_its_bound(tmp_path, at, seed):
    repo = project_repo(tmp_path / "project")
    params = write_params(repo, repo / "params.yaml", **at)
    raw = params.read_text()
    import yaml

    assert yaml.safe_load(raw)["seed"] == 42
    params.write_text(raw.replace("seed: 42", f"seed: {seed}", 1))
    from wardrobe.params import load

    load(params)  # the rules allow every value here
    ran = subprocess.run(
        [sys.executable, "-c", IN_ONE_PROCESS, *PIPELINE], cwd=repo, env=repo_env(repo),
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert [x for x in ran.stdout.splitlines() if x.startswith("ran ")] == [
        f"ran {name}" for name in PIPELINE
    ], ran.stdout[-3000:]
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
    assert (width, height) == (round(inches[0] * at["plots"]["dpi"]),
                               round(inches[1] * at["plots"]["dpi"]))  # fmt: skip
