"""Tolerances from the noise between seeds (python -m wardrobe.noise): Student's bound checked by
simulation, the noise file from commits and DVC experiments (made by `dvc exp save`) of a real
git repository, what it refuses, the comparison's verdicts, and `measure` running the noise
sweep's seeds of the quick pipeline on the sweep engine."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import t

from conftest import ROOT, VENV_BIN, commit, dvc, repo_env
from wardrobe import noise


def test_the_tolerance_bounds_99_percent_of_differences_between_two_runs():
    n = 5
    assert noise.tolerance(1.0, 0.0, n) == pytest.approx(t.ppf(0.995, n - 1) * math.sqrt(2))
    # No spread at all: a millionth of the value, for another CPU's arithmetic.
    assert noise.tolerance(0.0, 250.0, n) == pytest.approx(250.0 * noise.REL_FLOOR)
    # Simulated: n runs estimate the spread, then two new runs differ by chance alone.
    rng = np.random.default_rng(0)
    trials = 40_000
    measured = rng.normal(3.0, 0.7, size=(trials, n))
    sd = measured.std(axis=1, ddof=1)
    pair = rng.normal(3.0, 0.7, size=(trials, 2))
    tolerances = np.array([noise.tolerance(s, 3.0, n) for s in sd])
    beyond = np.mean(np.abs(pair[:, 0] - pair[:, 1]) > tolerances)
    assert beyond == pytest.approx(0.01, abs=0.003)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def write_run(repo: Path, seed: int, bce: float, fd: float, shares: dict, **params) -> None:
    (repo / "reports").mkdir(exist_ok=True)
    raw = {"seed": seed, "ae": {"epochs": 5, "filters": [32, 64]}, **params}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    metrics = {"ae": {"test": {"bce": bce, "generation": {"frechet_distance": fd}}}}
    (repo / "reports" / "metrics.json").write_text(json.dumps(metrics))
    (repo / "reports" / "class_shares.json").write_text(json.dumps({"ae": shares}))


RUNS = (  # seed, ae.test.bce, ae.test.generation.frechet_distance, class share of trousers
    (42, 0.2530, 82.7, 0.23),
    (1, 0.2540, 77.7, 0.21),
    (2, 0.2525, 90.1, 0.25),
    (3, 0.2534, 85.0, 0.22),
)


def save_experiment(repo: Path, name: str, run: tuple) -> str:
    """`dvc exp save -n name` of the run's files on HEAD (the workspace restored after);
    returns the experiment's commit."""
    write_run(repo, run[0], run[1], run[2], {"trouser": run[3]})
    saved = subprocess.run(
        [str(VENV_BIN / "dvc"), "exp", "save", "-n", name], cwd=repo, capture_output=True,
        text=True, env=repo_env(repo),
    )  # fmt: skip
    assert saved.returncode == 0, saved.stdout + saved.stderr
    git(repo, "checkout", "--", ".")
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:  # HEAD's experiments: {baseline: [(name, commit)]}
        [listed] = dvc_repo.experiments.ls().values()
    return dict(listed)[name]


@pytest.fixture
def runs_repo(tmp_path) -> Path:
    """A DVC project in git whose main branch holds the seed-42 run, with the other seeds as a
    branch, a tag and a DVC experiment of main (`dvc exp save`)."""
    repo = tmp_path / "runs"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([str(VENV_BIN / "dvc"), "init", "-q"], cwd=repo, check=True, env=repo_env(repo))
    for seed, bce, fd, trousers in RUNS:
        if seed == 3:
            continue
        if seed != 42:
            git(repo, "checkout", "-q", "-b", f"seed-{seed}", "main")
        write_run(repo, seed, bce, fd, {"trouser": trousers})
        commit(repo, f"seed {seed}")
        if seed == 2:
            git(repo, "tag", "seed-2-tag")
        git(repo, "checkout", "-q", "main")
    save_experiment(repo, "noise-seed-3", RUNS[3])
    return repo


def test_the_noise_file_holds_each_metrics_spread_and_tolerance(runs_repo):
    revs = ["main", "seed-1", "seed-2-tag", "noise-seed-3"]
    summary = noise.summarise([noise.load_run(runs_repo, rev) for rev in revs])
    assert [r["seed"] for r in summary["runs"]] == [42, 1, 2, 3]
    assert [r["rev"] for r in summary["runs"]] == revs
    assert summary["params"] == {"ae.epochs": 5, "ae.filters": "[32, 64]"}  # as MLflow logs it
    fd = summary["files"]["reports/metrics.json"]["ae.test.generation.frechet_distance"]
    values = [r[2] for r in RUNS]
    assert fd["values"] == values
    assert fd["mean"] == pytest.approx(np.mean(values))
    assert fd["sd"] == pytest.approx(np.std(values, ddof=1))
    assert fd["tolerance"] == pytest.approx(t.ppf(0.995, 3) * math.sqrt(2) * fd["sd"])
    shares = summary["files"]["reports/class_shares.json"]["ae.trouser"]
    assert shares["values"] == [r[3] for r in RUNS]


def test_summarise_refuses_what_is_not_one_set_of_params(runs_repo):
    load = [noise.load_run(runs_repo, rev) for rev in ("main", "seed-1", "seed-2-tag")]
    with pytest.raises(noise.NoiseError, match="2 runs cannot estimate a spread"):
        noise.summarise(load[:2])
    with pytest.raises(noise.NoiseError, match=r"seeds repeat \(\[42, 1, 42\]\)"):
        noise.summarise([*load[:2], load[0]])
    # Another epoch count is another experiment, not noise.
    git(runs_repo, "checkout", "-q", "-b", "longer")
    write_run(runs_repo, 7, 0.25, 80.0, {"trouser": 0.2}, vae={"epochs": 9})
    (runs_repo / "params.yaml").write_text(
        (runs_repo / "params.yaml").read_text().replace("epochs: 5", "epochs: 6")
    )
    commit(runs_repo, "other params")
    with pytest.raises(
        noise.NoiseError, match=r"longer and main differ in ae\.epochs, vae\.epochs"
    ):
        noise.summarise([*load, noise.load_run(runs_repo, "longer")])
    with pytest.raises(noise.NoiseError, match="'nope' is neither a commit nor a DVC experiment"):
        noise.load_run(runs_repo, "nope")


def test_a_name_measured_at_two_commits_means_heads(runs_repo):
    """DVC names an experiment once per baseline: after a new commit, `noise-seed-3` of the
    old baseline and of HEAD coexist, and HEAD's is the one meant."""
    old = noise.resolve(runs_repo, "noise-seed-3")
    assert noise.load_run(runs_repo, "noise-seed-3").seed == 3
    write_run(runs_repo, 42, 0.2531, 82.0, {"trouser": 0.23})
    commit(runs_repo, "a new baseline")
    new = save_experiment(runs_repo, "noise-seed-3", RUNS[1])
    assert noise.resolve(runs_repo, "noise-seed-3") == new != old
    assert noise.load_run(runs_repo, "noise-seed-3").seed == 1
    git(runs_repo, "checkout", "-q", "seed-2-tag")  # a third baseline; HEAD is none of them
    save_experiment(runs_repo, "noise-seed-3", RUNS[2])
    git(runs_repo, "checkout", "-q", "main~1")
    assert noise.resolve(runs_repo, "noise-seed-3") == old  # HEAD's, of three
    git(runs_repo, "checkout", "-q", "seed-1")
    with pytest.raises(noise.NoiseError, match="'noise-seed-3' names 3 DVC experiments"):
        noise.resolve(runs_repo, "noise-seed-3")


def test_a_broken_noise_file_or_a_nan_is_not_taken_for_noise(runs_repo, tmp_path):
    path = tmp_path / "noise.json"
    path.write_text(json.dumps({"files": {}, "runs": [{"seed": 1}]}))
    with pytest.raises(noise.NoiseError, match="not a noise file of three runs or more"):
        noise.read_noise(path)
    assert noise.read_noise(tmp_path / "absent.json") is None
    path.write_text("[]")
    with pytest.raises(noise.NoiseError, match=r"noise.json: not a JSON object; regenerate it"):
        noise.read_noise(path)
    assert noise.Change("x", 1.0, 2.0, None).beyond  # no tolerance: every change counts
    within = noise.judge([1.4], [1.0], "lower", {"tolerance": 0.5})
    assert not noise.Change("x", 1.0, 1.4, within).beyond


def good_noise() -> dict:
    entry = {"values": [0.25, 0.251, 0.252], "mean": 0.251, "sd": 0.001, "tolerance": 0.007}
    return {
        "runs": [{"seed": s} for s in (1, 2, 3)], "confidence": 0.99,
        "files": {"reports/metrics.json": {"ae.test.bce": entry}},
    }  # fmt: skip


@pytest.mark.parametrize("field, value, expected", [
    ("tolerance", math.nan, "NaN, not a finite number >= 0"),
    ("tolerance", -0.01, "-0.01, not a finite number >= 0"),
    ("tolerance", math.inf, "Infinity, not a finite number >= 0"),
    ("tolerance", "0.1", '"0.1", not a finite number >= 0'),
    ("sd", None, "null, not a finite number >= 0"),
    ("values", [0.25, math.nan], "[0.25, NaN], not a list of finite numbers"),
])  # fmt: skip
def test_a_noise_file_with_a_bad_tolerance_is_one_line_naming_the_key(
    tmp_path, field, value, expected
):
    """NaN would make every difference "within the noise"; a negative tolerance would call a
    worse candidate better: each is refused, naming the key, wherever noise.json is read."""
    path = tmp_path / "noise.json"
    path.write_text(json.dumps(good_noise()))
    assert noise.read_noise(path)["files"]["reports/metrics.json"]["ae.test.bce"]["sd"] == 0.001
    broken = good_noise()
    broken["files"]["reports/metrics.json"]["ae.test.bce"][field] = value
    path.write_text(json.dumps(broken))
    with pytest.raises(noise.NoiseError) as refused:
        noise.read_noise(path)
    assert str(refused.value) == (
        f"{path}: files.reports/metrics.json.ae.test.bce.{field} is {expected}; measure the "
        "noise again (make noise) or restore the file from git"
    )
    broken = good_noise() | {"confidence": 1.5}
    path.write_text(json.dumps(broken))
    with pytest.raises(noise.NoiseError, match=r"confidence is 1\.5, not a number between 0"):
        noise.read_noise(path)


def test_measure_refuses_uncommitted_pipeline_changes(runs_repo):
    (runs_repo / "params.yaml").write_text("seed: 42\nae: {epochs: 9}\n")
    with pytest.raises(noise.NoiseError, match=r"^params\.yaml changed since HEAD: the exp"):
        noise.measure(runs_repo, [1])


def summary_of(repo: Path) -> dict:
    revs = ("main", "seed-1", "seed-2-tag", "noise-seed-3")
    return noise.summarise([noise.load_run(repo, rev) for rev in revs])


def test_the_comparison_tells_a_move_from_noise(runs_repo):
    summary = summary_of(runs_repo)
    tol = summary["files"]["reports/metrics.json"]["ae.test.bce"]["tolerance"]
    base = noise.metrics_at(runs_repo, noise.resolve(runs_repo, "main"), "main")
    now = json.loads(json.dumps(base))
    now["reports/metrics.json"]["ae.test.bce"] += 3 * tol  # moved
    now["reports/metrics.json"]["ae.test.generation.frechet_distance"] += 1.0  # within its noise
    now["reports/metrics.json"]["ae.test.kid"] = 2.0  # a new metric: no base, no tolerance
    del now["reports/class_shares.json"]["ae.trouser"]  # gone
    params = {**summary["params"], "ae.epochs": 1}
    text = noise.report(base, now, summary, "`main`", params)
    lines = text.splitlines()
    assert lines[0].startswith("**3 of 4 metrics moved beyond their noise** against `main`;")
    assert "1 changed within it" in lines[0] and "(4 seeds from " in lines[0]
    assert "measured at other params (ae.epochs 5 → 1)" in text
    moved = text.split("<details>")[0]
    assert (
        f"| ae.test.bce | 0.253 | {0.253 + 3 * tol:.6g} | +{3 * tol:.3g} | {tol:.3g} | worse |"
        in moved
    )  # the catalogue says lower is better
    assert "| ae.test.kid | — | 2 | — | not measured |" in moved
    assert "| class_shares.ae.trouser | 0.23 | — | — |" in moved
    within = text.split("<details>")[1]
    assert "1 changed within their noise" in within
    assert "| ae.test.generation.frechet_distance | 82.7 | 83.7 | +1 |" in within
    assert within.rstrip().splitlines()[-3].endswith("| within the noise |")
    # Nothing changed; and without a noise file every change is listed, unweighed.
    assert noise.report(base, base, summary, "`main`").endswith("No metric changed.")
    bare = noise.report(base, now, None, "`main`")
    assert bare.startswith("**4 of 4 metrics differ from `main`**; no tolerances")
    assert "| ae.test.bce |" in bare and "<details>" not in bare


def run_noise(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "wardrobe.noise", *args], cwd=repo,
        env=repo_env(ROOT), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def test_the_command_line_summarises_and_compares(runs_repo):
    made = run_noise(runs_repo, "summarise", "main", "seed-1", "seed-2-tag", "noise-seed-3")
    assert made.returncode == 0, made.stderr
    written = json.loads((runs_repo / "reports" / "noise.json").read_text())
    assert written["files"] == summary_of(runs_repo)["files"]
    assert "written from 4 runs" in made.stderr
    # The workspace's metrics moved in BCE only.
    metrics = runs_repo / "reports" / "metrics.json"
    payload = json.loads(metrics.read_text())
    payload["ae"]["test"]["bce"] = 0.30
    metrics.write_text(json.dumps(payload))
    compared = run_noise(runs_repo, "compare", "--base", "seed-1")
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.startswith("**1 of 3 metrics moved beyond their noise** against")
    assert "| ae.test.bce | 0.254 | 0.3 | +0.046 |" in compared.stdout
    assert "2 changed within their noise" in compared.stdout  # the FD and the share
    # A base that does not exist: one line, exit 1.
    bad = run_noise(runs_repo, "compare", "--base", "nope")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("noise: error: 'nope' is neither a commit nor a DVC experiment")
    too_few = run_noise(runs_repo, "summarise", "main", "seed-1")
    assert too_few.returncode == 1
    assert "2 runs cannot estimate a spread; give three at least" in too_few.stderr


@pytest.mark.slow
def test_measure_runs_each_seed_as_an_experiment_and_leaves_the_workspace(retrained_copy):
    """`python -m wardrobe.noise measure --seeds 1 2` on a committed quick pipeline (a copy of
    CI's quick retrain): the noise sweep's two seeds as real DVC experiments, run by the sweep
    engine, HEAD's run as the third, and the workspace as it was; measured again, nothing
    runs and the noise file is the same."""
    repo = retrained_copy
    (repo / "reports" / "noise.json").unlink(missing_ok=True)
    commit(repo, "quick run and its results")
    before = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
    ).stdout
    measured = run_noise(repo, "measure", "--seeds", "1", "2")
    assert measured.returncode == 0, measured.stdout[-3000:] + measured.stderr[-3000:]
    summary = json.loads((repo / "reports" / "noise.json").read_text())
    assert [(r["rev"], r["seed"]) for r in summary["runs"]] == [
        ("HEAD", 42), ("noise-seed1", 1), ("noise-seed2", 2),
    ]  # fmt: skip
    metrics = summary["files"]["reports/metrics.json"]
    head = json.loads((repo / "reports" / "metrics.json").read_text())
    bce = metrics["ae.test.bce"]
    assert bce["values"][0] == head["ae"]["test"]["bce"]
    assert len(set(bce["values"])) == 3 and bce["sd"] > 0  # other seeds, other weights
    # The data's facts do not move with the seed: the floor of the BCE is the same in all.
    assert len(set(metrics["ae.test.bce_floor"]["values"])) == 1
    assert summary["params"]["ae.epochs"] == 1
    # Each seed trained and evaluated its models, and drew neither figures nor the page's files.
    sweep = json.loads((repo / "reports" / "sweeps" / "noise.json").read_text())
    for point in sweep["points"]:
        assert {"train_ae", "train_vae", "collect"} <= set(point["ran"]), point
        assert not {"plots@ae", "plots@vae", "explore"} & set(point["ran"]), point
    # The workspace is untouched but for the new noise file.
    after = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
    ).stdout
    # (and the sweep's own results file, reports/sweeps/noise.json)
    assert after.replace("?? reports/noise.json\n", "").replace(
        "?? reports/sweeps/noise.json\n", ""
    ) == (before)
    assert yaml.safe_load((repo / "params.yaml").read_text())["seed"] == 42
    # The measured tolerances weigh the workspace against HEAD: nothing moved.
    compared = run_noise(repo, "compare")
    assert compared.returncode == 0 and compared.stdout.endswith("No metric changed.\n")
    again = run_noise(repo, "measure", "--seeds", "1", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    for seed in (1, 2):
        assert f"noise-seed{seed} skipped: its experiment is already on the git remote" in (
            again.stderr
        )
    assert json.loads((repo / "reports" / "noise.json").read_text()) == summary
    # A seed's experiment applies: its lock holds the commit's figures and page files, which
    # `dvc status` names out of date (`dvc repro` draws them for that seed), and nothing else.
    applied = dvc(repo, "exp", "apply", "noise-seed1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert yaml.safe_load((repo / "params.yaml").read_text())["seed"] == 1
    status = dvc(repo, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert sorted(json.loads(status.stdout)) == ["explore", "plots@ae", "plots@vae"], status.stdout


def test_one_verdict_rests_on_the_runs_of_both_sides():
    """noise.judge: one run against one is held to the measured tolerance; runs at the same
    seeds are paired (Student on the differences), other runs by Welch, each at 99%; what the
    runs cannot decide is "not resolved", not "within the noise"."""
    measured = {"tolerance": 0.5, "values": [1.0, 1.2, 1.1]}
    assert noise.judge([1.0], [1.6], "lower", measured).word == "better"
    assert noise.judge([1.0], [1.6], "higher", measured).word == "worse"
    assert noise.judge([1.0], [1.4], "lower", measured).word == "within the noise"
    assert noise.judge([1.0], [1.4], "lower", measured).bound == 0.5  # the tolerance itself
    # paired by seed: a shared offset per seed cancels; unpaired, the same values do not decide
    a, b, seeds = [1.0, 2.0, 3.0], [1.1, 2.1, 3.12], [1, 2, 3]
    paired = noise.judge(a, b, "lower", seeds=(seeds, seeds))
    assert paired.word == "better" and paired.counts() == "3 of 3 seeds"
    differences = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    assert paired.bound == pytest.approx(t.ppf(0.995, 2) * sd / math.sqrt(3))
    unpaired = noise.judge(a, b, "lower")
    assert unpaired.word == "not resolved" and str(unpaired).startswith("not resolved by 3 runs")
    # Welch's bound: unequal spreads, unequal counts
    a, b = [0.0, 0.1, 0.2, 0.3], [1.0, 1.5, 2.0]
    welch = noise.judge(a, b, "lower")
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert welch.bound == pytest.approx(t.ppf(0.995, df) * math.sqrt(va + vb))
    assert welch.runs == (4, 3) and welch.pairs == 12 and welch.agree == 12
    # a ratio metric compares logarithms: 100x apart with a spread of a factor of 2 decides
    log = noise.judge([0.01, 0.02, 0.015], [1.0, 2.0, 1.5], "lower", log=True)
    assert log.word == "better" and "by a factor of 100" in str(log)
    assert noise.judge([1.0], [2.0], None, {"tolerance": 0.5}).word == "below"
    with pytest.raises(noise.NoiseError, match="a run on each side"):
        noise.judge([], [1.0], "lower")


def test_a_seed_by_seed_difference_far_beyond_chance_is_decided_at_99_percent():
    """Simulated: two sets of 3 seeds whose means differ by 10 standard deviations of the
    difference are called different nearly always; two of the same mean in about 1% of draws."""
    rng = np.random.default_rng(0)
    seeds = ([1, 2, 3], [1, 2, 3])
    same = sum(
        noise.judge(list(rng.normal(0, 1, 3)), list(rng.normal(0, 1, 3)), "lower").decided
        for _ in range(4000)
    )
    assert same / 4000 < 0.02
    apart = sum(
        noise.judge(list(x + 10), list(x + rng.normal(0, 0.5, 3)), "lower", seeds=seeds).decided
        for x in (rng.normal(0, 1, 3) for _ in range(500))
    )
    assert apart / 500 > 0.9
