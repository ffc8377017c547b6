"""The collect stage: the per-model evaluation files of `reference` and `evaluate@<model>`
(reports/evaluation/<name>.json) merged into the reports every reader uses: the DVC metrics
(reports/metrics.json, `classifier`, `ae` and `vae` sections), the generated images' class
shares per model (reports/class_shares.json) and the evaluation runs' ids
(reports/evaluation_runs.json, for `make promote`). No TensorFlow: it only reads JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wardrobe.errors import DataError
from wardrobe.fsio import write_json
from wardrobe.processes import uninterrupted

# Each evaluation file and the stage that writes it, in the order of reports/metrics.json.
SOURCES = {"classifier": "reference", "ae": "evaluate@ae", "vae": "evaluate@vae"}


def read_evaluation(path: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    """One evaluation file: {"metrics": {"test": ...}, "run": {"run_id", "run_name"} or None,
    and for a model "class_shares"}; a DataError naming the stage to re-run otherwise."""
    fix = f"run `dvc repro {stage}`"
    try:
        found = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {fix}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); {fix}") from None
    run = found.get("run") if isinstance(found, dict) else None
    if (
        not isinstance(found, dict)
        or not isinstance(found.get("metrics"), dict)
        or "test" not in found["metrics"]
        or "run" not in found
        or not (run is None or (isinstance(run, dict) and "run_id" in run))
        or (stage != SOURCES["classifier"] and not isinstance(found.get("class_shares"), dict))
    ):
        raise DataError(f"{path}: not what {stage} writes; {fix}")
    return found


def collect(
    evaluations_dir: str | os.PathLike[str],
    metrics_path: str | os.PathLike[str],
    class_shares_path: str | os.PathLike[str],
    runs_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Merge evaluations_dir/<name>.json of every SOURCES entry into the three reports, written
    together; return the metrics."""
    found = {
        name: read_evaluation(Path(evaluations_dir) / f"{name}.json", stage)
        for name, stage in SOURCES.items()
    }
    metrics = {name: evaluation["metrics"] for name, evaluation in found.items()}
    shares = {name: e["class_shares"] for name, e in found.items() if "class_shares" in e}
    runs = {name: evaluation["run"] for name, evaluation in found.items()}
    with uninterrupted("writing the reports"):  # all three, or none
        write_json(class_shares_path, shares)
        write_json(metrics_path, metrics)
        write_json(runs_path, runs)
    return metrics
