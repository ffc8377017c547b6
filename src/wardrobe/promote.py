"""The model registry's gate: `make promote` (python -m wardrobe.promote) registers the
workspace's decoders as `dvc.lock` records them, moves `candidate` to them, and moves
`champion` only when the candidate is better than the champion beyond the measured noise.

For each model (AE, VAE):
1. refuse unless the workspace is a commit's: `dvc.lock`, `params.yaml` and the pipeline's
   code as committed, and `dvc status` showing the models and their evaluation up to date;
2. register the decoder that models/<model>/run.json names (the logged model of its training
   run) as a version of `wardrobe-<model>-decoder`, tagged with the git commit, dvc.lock's hash
   of models/<model> and the evaluation run, unless a version of that hash exists: the same
   model is registered once, however often it is promoted. Its ONNX decoder and the wardrobe
   page's data (stage explore) are logged to its training run, under explore/. Two
   promotions at once may both create one; each then keeps the lowest-numbered version of the
   hash and deletes the rest;
3. move `candidate` to that version;
4. compare its gate metrics (the catalogue's, gate_metrics) with the champion's, both read
   from their evaluation runs, by noise.judge against each metric's tolerance in
   reports/noise.json: `champion` moves when the candidate is nowhere worse beyond a
   tolerance and better beyond one somewhere. The first version of a model becomes champion.
   One table per model says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wardrobe import catalogue
from wardrobe.errors import WardrobeError
from wardrobe.gitstate import changed
from wardrobe.noise import judge
from wardrobe.processes import environment_tool

log = logging.getLogger(__name__)

MODELS = ("ae", "vae")
CANDIDATE, CHAMPION = "candidate", "champion"


# Gate metrics, as the evaluation runs log them (test.<key>), and which way is better: the
# catalogue's metrics shown in the gate. A tolerance is reports/noise.json's for
# `<model>.test.<key>`.
def gate_metrics() -> dict[str, str]:
    return {f"test.{m.key}": str(m.better) for m in catalogue.shown(catalogue.GATE)}


# What must be as committed: the models are then the ones the commit's dvc.lock describes.
COMMITTED = ("dvc.lock", "params.yaml", "dvc.yaml", "pipeline", "src")
STAGES = (
    "train_ae", "train_vae", "train_classifier", "reference", "evaluate", "collect", "explore",
)  # fmt: skip
NOISE = Path("reports/noise.json")
EXPLORE = Path("reports/explore")  # stage explore: the decoders as ONNX, for the wardrobe page
RUNS = Path("reports/evaluation_runs.json")
# Version tags
COMMIT_TAG, HASH_TAG, EVAL_TAG, TRAINING_TAG, EXPLORE_TAG = (
    "git_commit", "dvc_models_md5", "evaluation_run", "training_run", "explore_artifacts",
)  # fmt: skip


class PromotionError(WardrobeError):
    """The workspace cannot be promoted as it is."""


def registered_name(model: str) -> str:
    return f"wardrobe-{model}-decoder"


def _run(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)


def require_committed(root: Path) -> str:
    """The commit the workspace is, or PromotionError naming what differs from it."""
    head = _run(root, "git", "rev-parse", "HEAD")
    if head.returncode != 0:
        raise PromotionError(f"{root} is not a git commit ({head.stderr.strip()}); commit first")
    differ = changed(root, COMMITTED)
    if differ:
        paths = ", ".join(differ[:5])
        raise PromotionError(
            f"{paths} differ from commit {head.stdout.strip()[:7]}: a registered version names "
            "the commit that reproduces it; commit them (after `dvc repro`: `git add dvc.lock "
            "&& git commit`), then run make promote"
        )
    status = _run(root, environment_tool("dvc"), "status", "--json", *STAGES)
    if status.returncode != 0:
        raise PromotionError(f"dvc status failed: {status.stderr.strip()[:300]}")
    stale = json.loads(status.stdout or "{}")
    if stale:
        raise PromotionError(
            f"dvc status: {', '.join(sorted(stale))} out of date: the models or their "
            "evaluation are not what dvc.lock records; run `dvc repro` (or `dvc checkout`) "
            "and commit dvc.lock, then run make promote"
        )
    return head.stdout.strip()


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PromotionError(f"{path}: missing or unreadable ({exc}); {fix}") from None


def locked_hash(root: Path, model: str) -> str:
    """dvc.lock's hash of models/<model>."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    path = f"models/{model}"
    for out in stages.get(f"train_{model}", {}).get("outs", []):
        if out.get("path") == path:
            return str(out["md5"])
    raise PromotionError(f"dvc.lock records no {path}; run `dvc repro train_{model}`")


def tolerances(root: Path) -> dict[str, float]:
    """{"<model>.<metric>": tolerance} of reports/noise.json."""
    from wardrobe.noise import NoiseError, read_noise

    try:
        noise = read_noise(root / NOISE)
    except NoiseError as exc:
        raise PromotionError(str(exc)) from None
    if noise is None:
        raise PromotionError(f"{root / NOISE}: missing; measure the noise first (make noise)")
    found = noise["files"].get("reports/metrics.json", {})
    return {key: float(entry["tolerance"]) for key, entry in found.items()}


@dataclass(frozen=True)
class Row:
    metric: str
    champion: float | None
    candidate: float
    tolerance: float
    better: str  # "lower" | "higher"

    @property
    def verdict(self) -> str:
        """The candidate's run against the champion's (noise.judge), or "no champion"."""
        if self.champion is None:
            return "no champion"
        measured = {"tolerance": self.tolerance}
        return judge([self.candidate], [self.champion], self.better, measured).word


def gate(rows: Sequence[Row]) -> tuple[bool, str]:
    """Whether the candidate takes `champion`, and why."""
    worse = [r.metric for r in rows if r.verdict == "worse"]
    better = [r.metric for r in rows if r.verdict == "better"]
    if worse:
        return False, f"worse beyond the noise on {', '.join(worse)}"
    if better:
        return True, f"better beyond the noise on {', '.join(better)}, nowhere worse"
    return False, "no metric is better beyond the noise"


def table(rows: Sequence[Row]) -> str:
    lines = ["| metric | champion | candidate | tolerance | verdict |", "|---|---:|---:|---:|---|"]
    for r in rows:
        champion = "—" if r.champion is None else f"{r.champion:.6g}"
        lines.append(
            f"| {r.metric} ({r.better} is better) | {champion} | {r.candidate:.6g} | "
            f"{r.tolerance:.3g} | {r.verdict} |"
        )
    return "\n".join(lines)


def _version_with_hash(client: Any, name: str, md5: str) -> Any | None:
    """The lowest-numbered version of `name` tagged with `md5`; later ones (a promotion that
    ran at the same time) are deleted."""
    found = sorted(
        client.search_model_versions(f"name = '{name}' and tags.{HASH_TAG} = '{md5}'"),
        key=lambda v: int(v.version),
    )
    for duplicate in found[1:]:
        client.delete_model_version(name, duplicate.version)
        log.info("%s: deleted version %s, a duplicate of %s", name, duplicate.version,
                 found[0].version)  # fmt: skip
    return found[0] if found else None


def register(client: Any, model: str, record: Mapping[str, Any], tags: Mapping[str, str]) -> Any:
    """The version of the model's decoder for tags[HASH_TAG], registered if there is none."""
    from mlflow.exceptions import MlflowException

    name = registered_name(model)
    try:
        client.create_registered_model(
            name, description=f"The {model.upper()}'s decoder: latent vectors to images."
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = _version_with_hash(client, name, tags[HASH_TAG])
    if existing is not None:
        return existing
    [decoder] = [m for m in record["models"] if m["name"] == "decoder"]
    model_id = decoder["model_uri"].removeprefix("models:/")
    client.create_model_version(
        name, decoder["model_uri"], run_id=record["run_id"], tags=dict(tags), model_id=model_id
    )
    return _version_with_hash(client, name, tags[HASH_TAG])


def log_explore(client: Any, root: Path, model: str, version: Any) -> None:
    """Log the version's ONNX decoder and the wardrobe page's data (stage explore) to its
    training run, under explore/, and tag the version with where (make explore
    MODEL=champion reads them)."""
    files = [root / EXPLORE / f"{model}{suffix}" for suffix in (".onnx", ".json")]
    for file in files:
        if not file.is_file():
            raise PromotionError(f"{file}: not found; run `dvc repro explore`, commit dvc.lock")
        client.log_artifact(version.run_id, str(file), "explore")
    client.set_model_version_tag(version.name, version.version, EXPLORE_TAG, "explore")


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version `name@alias` names, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote_model(
    client: Any, root: Path, model: str, commit: str, tolerance: Mapping[str, float]
) -> tuple[str, str]:
    """Register, move `candidate`, gate `champion` for one model; return (its table, the
    line saying what moved and why)."""
    record = _read_json(root / "models" / model / "run.json", f"run `dvc repro train_{model}`")
    runs = _read_json(root / RUNS, "run `dvc repro collect`")
    evaluation = (runs.get(model) or {}).get("run_id")
    if not evaluation:
        raise PromotionError(
            f"{RUNS} names no evaluation run of {model} in {client.tracking_uri}; run "
            f"`dvc repro -f -s evaluate@{model}` against this store, then `dvc repro`, commit "
            "dvc.lock, then make promote"
        )
    name = registered_name(model)
    tags = {
        COMMIT_TAG: commit,
        HASH_TAG: locked_hash(root, model),
        EVAL_TAG: evaluation,
        TRAINING_TAG: str(record["run_id"]),
    }
    version = register(client, model, record, tags)
    if EXPLORE_TAG not in version.tags:
        log_explore(client, root, model, version)
    client.set_registered_model_alias(name, CANDIDATE, version.version)
    champion = alias_version(client, name, CHAMPION)
    candidate_metrics = client.get_run(version.tags[EVAL_TAG]).data.metrics
    champion_metrics = (
        client.get_run(champion.tags[EVAL_TAG]).data.metrics if champion is not None else {}
    )
    rows = []
    for metric, better in gate_metrics().items():
        key = f"{model}.{metric}"
        if key not in tolerance:
            raise PromotionError(f"{NOISE} has no tolerance for {key}; measure it (make noise)")
        if metric not in candidate_metrics:
            raise PromotionError(
                f"evaluation run {version.tags[EVAL_TAG]} has no {metric}; run `dvc repro -f -s "
                f"evaluate@{model}`, then `dvc repro`, commit dvc.lock, then make promote"
            )
        rows.append(
            Row(metric, champion_metrics.get(metric), candidate_metrics[metric],
                tolerance[key], better)
        )  # fmt: skip
    if champion is not None and champion.version == version.version:
        moved, why = False, f"version {version.version} is the champion already"
    elif champion is None:
        moved, why = True, "the first version promoted"
    else:
        moved, why = gate(rows)
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        line = f"{name}: champion -> version {version.version} ({why})"
    else:
        held = champion.version if champion is not None else "none"
        line = (
            f"{name}: champion stays version {held}; candidate version {version.version} ({why})"
        )
    return table(rows), line


def promote(root: Path, models: Sequence[str] = MODELS) -> list[str]:
    """Promote the workspace's models; print each model's table and line. Returns the lines."""
    import mlflow

    from wardrobe.tracking.store import check_store, store_errors

    commit = require_committed(root)
    tolerance = tolerances(root)
    uri = check_store()
    client = mlflow.MlflowClient(tracking_uri=uri)
    lines = []
    with store_errors(uri, "refused the promotion"):
        for model in models:
            rows, line = promote_model(client, root, model, commit, tolerance)
            print(f"\n{model} (commit {commit[:7]})\n\n{rows}\n\n{line}")
            lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    from wardrobe.cli import configure_logging

    parser = argparse.ArgumentParser(prog="python -m wardrobe.promote", description=__doc__)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args(argv)
    configure_logging()
    try:
        promote(Path.cwd(), args.models)
    except WardrobeError as exc:
        print(f"promote: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
