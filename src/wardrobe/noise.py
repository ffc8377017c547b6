"""How far each metric moves between runs that differ only by chance, and which differences
between two runs exceed that.

    python -m wardrobe.noise measure [--seeds 1 2 3 4]
    python -m wardrobe.noise summarise REV REV REV [...]
    python -m wardrobe.noise compare [--base REV]

`measure` runs the sweep sweeps/noise.yaml (a grid over `seed`, `--seeds` replacing its values)
on the sweep engine, as `make sweep` runs any sweep: one DVC experiment per seed, named
`noise-seedN`, each in a clone of HEAD, a seed already measured at HEAD not run again; the
workspace is left as it is. It then summarises HEAD and those experiments. `summarise` reads
the metrics files at each revision (a commit, a branch or an experiment's name), checks that
their params differ in `seed` only, and writes `reports/noise.json`: per metric the values,
their standard deviation and the tolerance. `compare` sets the workspace's metrics against
those committed at REV (default HEAD) and prints, in Markdown, which moved beyond their
tolerance.

A metric's tolerance bounds the difference between two runs that differ only by chance:
t * sqrt(2) * s, where s is the metric's standard deviation over the n measured runs and t is
Student's 99.5% quantile with n - 1 degrees of freedom (a two-sided 99% bound on the difference
of two independent runs, widened because s comes from few runs); at least a millionth of the
value, for arithmetic that depends on the CPU only. Another machine's arithmetic perturbs a
training the way another seed does, usually less, so a tolerance covers it too; each lets 1%
of chance differences through, so among many metrics an odd one may cross by chance. They are
measured at one set of params; at others they are a guide.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wardrobe import catalogue
from wardrobe.cli import run_stage
from wardrobe.errors import WardrobeError
from wardrobe.fsio import project_root, write_json
from wardrobe.gitstate import PIPELINE, changed, git
from wardrobe.params import parse
from wardrobe.tracking.runs import flatten

FILES = ("reports/metrics.json", "reports/class_shares.json")
NOISE = Path("reports/noise.json")
PARAMS = "params.yaml"
CONFIDENCE = 0.99
REL_FLOOR = 1e-6  # of the value: the arithmetic of another CPU, where runs do not vary at all
ABS_FLOOR = 1e-12
SWEEP = Path("sweeps/noise.yaml")


class NoiseError(WardrobeError):
    """The runs cannot be summarised or compared."""


def numbers(tree: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of a metrics file, by dotted key (as `dvc metrics diff` names them)."""
    return {
        key: float(value)
        for key, value in flatten(tree).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def resolve(root: Path, rev: str) -> str:
    """The commit of a Git revision or of a DVC experiment's name (as `dvc exp list
    --all-commits` lists them: where one name is an experiment of several baselines, HEAD's,
    as DVC itself prefers)."""
    found = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode == 0:
        return found.stdout.strip()
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        listed = repo.experiments.ls(all_commits=True)
    matches = {
        baseline: commit
        for baseline, experiments in listed.items()
        for name, commit in experiments
        if name == rev and commit
    }
    if len(matches) > 1:
        head = git(root, "rev-parse", "HEAD").stdout.strip()
        if head in matches:
            return matches[head]
        raise NoiseError(
            f"{rev!r} names {len(matches)} DVC experiments (of different baselines); pass the "
            "commit of the one you mean (`dvc exp show` lists them)"
        )
    if matches:
        return next(iter(matches.values()))
    raise NoiseError(
        f"{rev!r} is neither a commit nor a DVC experiment here; check the name "
        "(`dvc exp list`, `git log`)"
    )


def read_at(root: Path, commit: str, path: str) -> str | None:
    """A file's text at a commit; None when the commit does not hold it."""
    shown = git(root, "show", f"{commit}:{path}")
    return shown.stdout if shown.returncode == 0 else None


def _json(text: str, where: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise NoiseError(f"{where}: not JSON ({exc}); regenerate it") from None
    if not isinstance(payload, dict):
        raise NoiseError(f"{where}: not a JSON object; regenerate it")
    return payload


def metrics_at(root: Path, commit: str | None, label: str) -> dict[str, dict[str, float]]:
    """{file: {key: value}} of the metrics files at a commit, or in the workspace (None)."""
    found: dict[str, dict[str, float]] = {}
    for path in FILES:
        if commit is None:
            file = root / path
            text = file.read_text() if file.is_file() else None
        else:
            text = read_at(root, commit, path)
        if text is not None:
            found[path] = numbers(_json(text, f"{path} at {label}"))
    return found


@dataclass(frozen=True)
class Run:
    """One run's metrics, with the params that made it."""

    rev: str
    commit: str
    seed: Any
    params: dict[str, Any]  # every param but seed, flattened
    metrics: dict[str, dict[str, float]]


def load_run(root: Path, rev: str) -> Run:
    commit = resolve(root, rev)
    text = read_at(root, commit, PARAMS)
    if text is None:
        raise NoiseError(f"{rev}: holds no {PARAMS}; pass a commit of this project")
    params = flatten(parse(text) or {})
    metrics = metrics_at(root, commit, rev)
    if FILES[0] not in metrics:
        raise NoiseError(
            f"{rev}: holds no {FILES[0]}; pass commits and experiments whose `dvc repro` "
            "results were committed"
        )
    return Run(rev, commit, params.pop("seed", None), params, metrics)


def params_of(path: Path) -> dict[str, Any]:
    """A params file's keys, flattened, without `seed`: what a noise file was measured at."""
    try:
        params = flatten(parse(path.read_text()) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise NoiseError(f"{path}: unreadable ({exc}); fix it or pass --params") from None
    params.pop("seed", None)
    return params


def other_params(noise: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The params (dotted keys) whose values differ from those the noise was measured at."""
    return _differences(noise.get("params", {}), params)


def tolerance(sd: float, mean: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The largest difference between two runs that chance explains (see the module's text)."""
    spread = _t(n - 1, confidence) * math.sqrt(2) * sd
    return max(spread, REL_FLOOR * abs(mean), ABS_FLOOR)


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def summarise(runs: Sequence[Run], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The noise file's payload: per metrics file and key, the runs' values, mean, standard
    deviation and tolerance. The runs must differ in seed only, and be three at least."""
    if len(runs) < 3:
        raise NoiseError(
            f"{len(runs)} runs cannot estimate a spread; give three at least (five are better)"
        )
    first = runs[0]
    for run in runs[1:]:
        differ = _differences(first.params, run.params)
        if differ:
            raise NoiseError(
                f"{run.rev} and {first.rev} differ in {', '.join(differ[:5])}, not only in "
                "seed; measure the noise of one set of params"
            )
    seeds = [run.seed for run in runs]
    if len(set(map(str, seeds))) != len(seeds):
        raise NoiseError(f"the runs' seeds repeat ({seeds}); each run needs a seed of its own")
    files: dict[str, dict[str, Any]] = {}
    for path in FILES:
        keys = sorted(set.intersection(*(set(run.metrics.get(path, {})) for run in runs)))
        table = {}
        for key in keys:
            values = [run.metrics[path][key] for run in runs]
            mean = math.fsum(values) / len(values)
            sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
            table[key] = {
                "values": values,
                "mean": mean,
                "sd": sd,
                "tolerance": tolerance(sd, mean, len(values), confidence),
            }
        files[path] = table
    return {
        "about": (
            "Each metric's spread over runs that differ only in seed, and its tolerance: the "
            "largest difference between two such runs that chance explains (python -m "
            "wardrobe.noise; docs/evaluation.md)"
        ),
        "runs": [{"rev": r.rev, "commit": r.commit, "seed": r.seed} for r in runs],
        "confidence": confidence,
        "params": first.params,
        "files": files,
    }


def read_noise(path: Path) -> dict[str, Any] | None:
    """reports/noise.json, checked: None when there is none; a NoiseError naming the first key
    that is not what `make noise` writes (the gate must never move `champion` on a tolerance of
    NaN, or a negative one that calls a worse candidate better)."""
    if not path.is_file():
        return None
    noise = _json(path.read_text(), str(path))
    runs, files = noise.get("runs"), noise.get("files")
    if not (isinstance(files, dict) and isinstance(runs, list) and len(runs) >= 3):
        raise NoiseError(
            f"{path}: not a noise file of three runs or more; regenerate it (make noise)"
        )
    confidence = noise.get("confidence", CONFIDENCE)
    if not (_finite(confidence) and 0 < confidence < 1):
        _bad(path, "confidence", confidence, "a number between 0 and 1")
    for file, entries in files.items():
        if not isinstance(entries, dict):
            _bad(path, f"files.{file}", entries, "an object of metrics")
        for key, entry in entries.items():
            where = f"files.{file}.{key}"
            if not isinstance(entry, dict):
                _bad(path, where, entry, "an object with the metric's values and tolerance")
            for name in ("tolerance", "sd"):
                value = entry.get(name)
                if not (_finite(value) and value >= 0):
                    _bad(path, f"{where}.{name}", value, "a finite number >= 0")
            values = entry.get("values")
            if not (isinstance(values, list) and values and all(map(_finite, values))):
                _bad(path, f"{where}.values", values, "a list of finite numbers")
    noise.setdefault("params", {})
    return noise


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bad(path: Path, key: str, value: Any, expected: str) -> None:
    shown = json.dumps(value, allow_nan=True)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise NoiseError(
        f"{path}: {key} is {shown}, not {expected}; measure the noise again (make noise) or "
        "restore the file from git"
    )


@dataclass(frozen=True)
class Verdict:
    """One comparison of a metric between two sets of runs, `a` against `b`: better, worse,
    within the noise (single runs, against the spread `make noise` measured) or not resolved
    (several runs, against their own spread), with the bound the difference was held to and
    how many runs (seed by seed where both sides share seeds) agree with its sign."""

    word: str  # "better" | "worse" | "within the noise" | "not resolved"
    difference: float  # mean of a - mean of b
    bound: float  # the 99% bound chance puts on the difference
    runs: tuple[int, int]  # of a, of b
    agree: int  # seeds (or pairs of runs) in which a is on the side of the difference
    pairs: int
    log: bool = False  # difference and bound are of logarithms: shown as factors

    @property
    def decided(self) -> bool:
        return self.word not in ("within the noise", "not resolved")

    def counts(self) -> str:
        """'3 of 3 seeds': how many agree with the difference's sign."""
        return f"{self.agree} of {self.pairs} {'seeds' if self.pairs > 1 else 'seed'}"

    def __str__(self) -> str:
        """'better by 0.0123 (±0.004 at 99%; 3 of 3 seeds agree)', 'within the noise (+0.002,
        ±0.004)', 'not resolved by 3 runs (+0.002, ±0.009)'."""
        if self.log:  # as ratios
            size = f"a factor of {math.exp(abs(self.difference)):.3g}"
            bound = f"bound: a factor of {math.exp(self.bound):.3g}"
            spread = f"ratio {math.exp(self.difference):.3g}, {bound}"
        else:
            size, bound = f"{abs(self.difference):.3g}", f"±{self.bound:.3g}"
            spread = f"{self.difference:+.3g}, {bound}"
        if self.decided:
            return f"{self.word} by {size} ({bound}; {self.counts()} agree)"
        if self.word == "not resolved":
            na, nb = self.runs
            runs = f"{na} runs" if na == nb else f"{na} and {nb} runs"
            return f"not resolved by {runs} ({spread})"
        return f"{self.word} ({spread})"


def _t(df: float, confidence: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def _mean_var(x: Sequence[float]) -> tuple[float, float]:
    mean = math.fsum(x) / len(x)
    return mean, math.fsum((v - mean) ** 2 for v in x) / (len(x) - 1)


def judge(
    a: Sequence[float],
    b: Sequence[float],
    better: str | None,
    measured: Mapping[str, Any] | None = None,
    seeds: tuple[Sequence[Any], Sequence[Any]] | None = None,
    log: bool = False,
    confidence: float = CONFIDENCE,
) -> Verdict:
    """How a's runs of a metric compare with b's, at `confidence` (two-sided):
    - both sides run at the same seeds (two or more; `seeds` names them): Student's bound on
      the mean of the seed-by-seed differences. The seed draws the scoring classifier, the
      test samples and the weights of both sides alike, so pairing removes what they share;
    - two runs or more on each side otherwise: Welch's bound on the difference of the means,
      from each side's own spread;
    - a single run on a side: the measured noise (`measured`, the metric's entry of
      reports/noise.json), whose tolerance bounds one run against one.
    `log` compares logarithms (a metric that spans orders of magnitude, where a ratio is the
    difference that means something); the difference is then the log of the ratio of the
    geometric means. `better` ("lower", "higher", or None for "above"/"below") names the
    direction; a difference within the bound is "not resolved" by the runs' own spread, or
    "within the noise" measured."""
    if not a or not b:
        raise NoiseError("a comparison needs a run on each side")
    log = log and min(*a, *b) > 0
    x, y = ([math.log(v) for v in side] if log else list(side) for side in (a, b))
    na, nb = len(x), len(y)
    mean_a, mean_b = math.fsum(x) / na, math.fsum(y) / nb
    difference = mean_a - mean_b
    floor = max(REL_FLOOR * max(abs(mean_a), abs(mean_b)), ABS_FLOOR)
    shared = [] if seeds is None else [s for s in seeds[0] if s in set(seeds[1])]
    if shared:
        by_a, by_b = dict(zip(seeds[0], x, strict=True)), dict(zip(seeds[1], y, strict=True))
        signs = [by_a[s] - by_b[s] for s in shared]
    else:
        signs = [u - v for u in x for v in y]
    paired = len(shared) >= 2 and len(shared) == na == nb
    if paired:
        _, var_d = _mean_var(signs)
        bound = max(_t(na - 1, confidence) * math.sqrt(var_d / na), floor)
        undecided = "not resolved"
    elif na >= 2 and nb >= 2:
        (_, va), (_, vb) = _mean_var(x), _mean_var(y)
        se2 = va / na + vb / nb
        df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)) if se2 else 1
        bound, undecided = max(_t(df, confidence) * math.sqrt(se2), floor), "not resolved"
    elif measured is not None:
        # the tolerance bounds one run against one; n runs' mean against m's, by sqrt(1/n+1/m)
        scale = math.sqrt((1 / na + 1 / nb) / 2)
        tol = float(measured["tolerance"])
        if log:  # the measured runs' spread of logarithms
            logs = [math.log(v) for v in measured["values"] if v > 0]
            tol = math.inf
            if len(logs) >= 3:
                tol = tolerance(math.sqrt(_mean_var(logs)[1]), 0.0, len(logs), confidence)
        bound, undecided = tol * scale, "within the noise"
    else:
        bound, undecided = math.inf, "not resolved"
    agree = sum((d > 0) == (difference > 0) and d != 0 for d in signs)
    if not abs(difference) > bound:
        word = undecided
    elif better is None:
        word = "above" if difference > 0 else "below"
    else:
        word = "better" if (difference < 0) == (better == "lower") else "worse"
    return Verdict(word, difference, bound, (na, nb), agree, len(signs), log)


@dataclass(frozen=True)
class Change:
    key: str  # as shown: the dotted key, prefixed by the file's stem past the first file
    base: float | None
    now: float | None
    verdict: Verdict | None  # None: appeared or went, or no tolerance measured

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.now is None else self.now - self.base

    @property
    def beyond(self) -> bool:
        """True when chance does not explain the change (or no tolerance was measured)."""
        return self.verdict is None or self.verdict.word not in ("within the noise",)


def changes(
    base: Mapping[str, Mapping[str, float]],
    now: Mapping[str, Mapping[str, float]],
    noise: Mapping[str, Any] | None,
) -> tuple[list[Change], int]:
    """Every metric whose value differs between base and now (appeared, went or moved), and
    how many metrics were compared."""
    found, compared = [], 0
    for path in FILES:
        old, new = base.get(path, {}), now.get(path, {})
        measured = (noise or {}).get("files", {}).get(path, {})
        label = "" if path == FILES[0] else f"{Path(path).stem}."
        for key in sorted(old.keys() | new.keys()):
            compared += 1
            if old.get(key) == new.get(key):
                continue
            entry, before, after = measured.get(key), old.get(key), new.get(key)
            verdict = None
            if entry is not None and before is not None and after is not None:
                metric = catalogue.by_dotted().get(key) if not label else None
                better = metric.better if metric else None
                verdict = judge([after], [before], better, entry)
            found.append(Change(f"{label}{key}", before, after, verdict))
    return found, compared


def _value(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


def _rows(found: Sequence[Change]) -> list[str]:
    rows = [
        "| metric | base | now | change | tolerance | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in found:
        delta = "—" if c.delta is None else f"{c.delta:+.3g}"
        v = c.verdict
        tol = "not measured" if v is None else f"{v.bound:.3g}"
        word = "—" if v is None else v.word
        rows.append(f"| {c.key} | {_value(c.base)} | {_value(c.now)} | {delta} | {tol} | {word} |")
    return rows


def _measured_at(noise: Mapping[str, Any]) -> str:
    runs = noise["runs"]
    return f"{len(runs)} seeds from {str(runs[0].get('commit', '?'))[:7]}"


def report(
    base: Mapping[str, Mapping[str, float]],
    now: Mapping[str, Mapping[str, float]],
    noise: Mapping[str, Any] | None,
    base_label: str,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Markdown: which metrics moved beyond their tolerance against the base, and which
    changed within it. `params` (flattened, without seed) are the ones that made `now`."""
    found, compared = changes(base, now, noise)
    moved = [c for c in found if c.beyond]
    within = [c for c in found if not c.beyond]
    if noise is None:
        lines = [
            f"**{len(found)} of {compared} metrics differ from {base_label}**; no tolerances "
            f"to weigh them ({NOISE} is missing: `make noise` measures them).",
        ]
    else:
        percent = f"{float(noise.get('confidence', CONFIDENCE)):.0%}"
        lines = [
            f"**{len(moved)} of {compared} metrics moved beyond their noise** against "
            f"{base_label}; {len(within)} changed within it. A tolerance is the {percent} "
            f"bound on the difference of two runs that differ only in seed ({_measured_at(noise)}"
            f", `{noise.get('path', NOISE)}`).",
        ]
        if params is not None:
            differ = other_params(noise, params)
            if differ:
                shown = ", ".join(
                    f"{k} {noise.get('params', {}).get(k)!r} → {params.get(k)!r}"
                    for k in differ[:6]
                )
                lines += [
                    "",
                    f"The tolerances were measured at other params ({shown}): read them as a "
                    "guide.",
                ]
    if not found:
        return "\n".join([*lines, "", "No metric changed."])
    if moved:
        lines += ["", *_rows(moved)]
    if within:
        lines += [
            "",
            f"<details><summary>{len(within)} changed within their noise</summary>",
            "",
            *_rows(within),
            "",
            "</details>",
        ]
    return "\n".join(lines)


def measure(
    root: Path, seeds: Sequence[int] | None = None, parallel: int | None = None
) -> list[str]:
    """Run the noise sweep (sweeps/noise.yaml, its seeds replaced by `seeds` when given) on
    the sweep engine; the experiments' names."""
    from wardrobe.sweep import engine, spec

    differ = changed(root, PIPELINE)
    if differ:
        raise NoiseError(
            f"{', '.join(differ[:5])} changed since HEAD: the experiments would run the "
            "changes, HEAD's committed metrics do not; commit them with their `dvc repro` "
            "results (or stash them), then measure"
        )
    grid = {"seed": list(seeds)} if seeds else None
    sweep = spec.load(root / SWEEP, root / PARAMS, grid=grid)
    outcomes = engine.run(root, sweep, parallel)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise NoiseError(
            f"{', '.join(f'{o.point} ({o.error})' for o in failed)} failed; fix the cause and "
            "run make noise again (the seeds measured are kept)"
        )
    return [point.name for point in sweep.points]


def write_summary(root: Path, revs: Sequence[str], out: Path) -> None:
    noise = summarise([load_run(root, rev) for rev in revs])
    write_json(root / out, noise)
    metrics = noise["files"][FILES[0]]
    fixed = sum(entry["sd"] == 0 for entry in metrics.values())
    print(
        f"noise: {out} written from {len(revs)} runs ({', '.join(revs)}): {len(metrics)} "
        f"metrics, {fixed} of them the same in every run",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wardrobe.noise", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("measure", help="run other seeds as experiments, then summarise")
    run.add_argument("--seeds", type=int, nargs="+", help=f"instead of {SWEEP}'s seeds")
    run.add_argument("--parallel", type=int, help="experiments at once (default: the cores)")
    run.add_argument("--out", type=Path, default=NOISE)
    summ = sub.add_parser("summarise", help="write the noise file from runs already made")
    summ.add_argument("revs", nargs="+", help="commits or DVC experiment names")
    summ.add_argument("--out", type=Path, default=NOISE)
    comp = sub.add_parser("compare", help="the workspace's metrics against a commit's")
    comp.add_argument("--base", default="HEAD", help="a commit or experiment (default HEAD)")
    comp.add_argument("--noise", type=Path, default=NOISE)
    args = parser.parse_args(argv)
    root = project_root()
    if args.command == "measure":
        write_summary(root, ["HEAD", *measure(root, args.seeds, args.parallel)], args.out)
    elif args.command == "summarise":
        write_summary(root, args.revs, args.out)
    else:
        base = metrics_at(root, resolve(root, args.base), args.base)
        params = params_of(root / PARAMS)
        now = metrics_at(root, None, "the workspace")
        noise = read_noise(root / args.noise)
        if noise is not None:
            noise["path"] = str(args.noise)  # as given: relative to the project
        print(report(base, now, noise, f"`{args.base}`", params))


if __name__ == "__main__":
    run_stage("noise", main)
