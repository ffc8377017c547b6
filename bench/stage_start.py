"""Each stage's fixed cost, before and after a change, as ratios measured side by side.

Checks out two revisions of the project (`--before`, default f995ac0: stages that imported
TensorFlow before reading their arguments, and keras' scikit-learn and matplotlib.pyplot in
every stage; `--after`, default HEAD) as git worktrees, builds in each the same tiny project
(200 training and 100 test images of noise, 1 epoch, batch 50), and runs, alternating the two
revisions, `rounds` times:
  help      `python pipeline/<stage>.py --help` of every TensorFlow stage;
  run       train_ae, train_vae, train_classifier, reference, evaluate (ae) and plots (ae) on
            the tiny project, each as DVC runs it (a new process, its MLflow run included),
and reports per stage the minimum wall time over rounds for each revision and their ratio.
On the tiny data a stage's time is its fixed cost: imports, the store, loading and saving.

    python bench/stage_start.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ("--data", "data", "--checks", "checks/summary.json")
EVALUATE = ("--models", "models", "--data", "data")
RUNS = {  # stage script -> its arguments on the tiny project, in the order they run
    "train_ae": (*TRAIN, "--out", "models/ae"),
    "train_vae": (*TRAIN, "--out", "models/vae"),
    "train_classifier": (*TRAIN, "--out", "models/classifier"),
    "reference": ("--classifier", "models/classifier", "--data", "data",
                  "--out", "reports/reference", "--report", "reports/classifier.json"),
    "evaluate": ("--model", "ae", *EVALUATE, "--reference", "reports/reference",
                 "--out", "reports/ae.json"),
    "plots": ("--model", "ae", *EVALUATE, "--out", "reports/figures/ae",
              "--evaluation", "reports/ae.json"),
}  # fmt: skip


def tiny_project(code: Path, where: Path) -> Path:
    """The tiny project in `where`, from the checkout `code`'s params.yaml."""
    sys.path.insert(0, str(code / "src"))
    try:
        from wardrobe.checks.verdict import CHECKED_KEY
        from wardrobe.dataset import data_digest, save_split
    finally:
        sys.path.pop(0)
    params = yaml.safe_load((code / "params.yaml").read_text())
    quick = {"epochs": 1, "batch_size": 50}
    params["ae"].update(quick)
    params["vae"].update(quick)
    params["classifier"].update(quick, min_accuracy=0.0)
    params["evaluate"].update(generated=300, batch_size=64)
    params["plots"].update(dpi=30, scatter_points=100, samples=6, grid_size=5, reconstructions=4)
    where.mkdir(parents=True)
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (where / "dvc.yaml").write_text("stages: {}\n")
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 100)):
        images = np.zeros((n, 32, 32, 1), np.float32)
        images[:, 2:30, 2:30] = rng.random((n, 28, 28, 1), dtype=np.float32) ** 3
        save_split(where / "data" / f"{split}.npz", images, np.arange(n, dtype=np.uint8) % 10)
    (where / "checks").mkdir()
    summary = {"success": True, CHECKED_KEY: data_digest(where / "data")}
    (where / "checks" / "summary.json").write_text(json.dumps(summary))
    subprocess.run(["git", "init", "-q"], cwd=where, check=True)
    return where


def timed(code: Path, project: Path, stage: str, args: tuple[str, ...]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_EXP"))}
    env["PYTHONPATH"] = str(code / "src")
    env["WARDROBE_WEB_ASSETS"] = str(ROOT / "tools" / "web-assets" / "node_modules")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(code / "pipeline" / f"{stage}.py"), *args],
                          cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{code.name}: {stage} {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="f995ac0")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wardrobe-stage-start-"))
    revisions = {"before": args.before, "after": args.after}
    try:
        code = {}
        for label, rev in revisions.items():
            code[label] = work / label
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(code[label]), rev],
                           cwd=ROOT, check=True)  # fmt: skip
        times: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for label in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                project = tiny_project(code[label], work / f"project-{label}-{round_}")
                for stage in RUNS:
                    key = (f"{stage} --help", label)
                    times.setdefault(key, []).append(
                        timed(code[label], project, stage, ("--help",))
                    )
                for stage, stage_args in RUNS.items():
                    times.setdefault((stage, label), []).append(
                        timed(code[label], project, stage, stage_args)
                    )
        print(f"stage start, minimum over {args.rounds} rounds: before {args.before}, after "
              f"{args.after}")  # fmt: skip
        print("| stage | before (s) | after (s) | after / before |\n|---|---:|---:|---:|")
        for name in dict.fromkeys(k for k, _ in times):
            before, after = min(times[(name, "before")]), min(times[(name, "after")])
            print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    finally:
        for label in revisions:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / label)],
                           cwd=ROOT, capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
