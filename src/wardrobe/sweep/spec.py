"""A sweep file (sweeps/*.yaml): its grid, the points it spans, and their names.

    name: claims                  # experiments are named claims-<axis><value>-...
    set:                          # params every point sets (optional)
      ae.epochs: 5
    grid:                         # the cross product of these axes, as `dvc exp run -S` takes
      vae.beta: [50, 500, 5000]   # one params key and its values
      z:                          # keys that move together: one axis, named z
        keys: [ae.latent_dim, vae.latent_dim]
        values: [2, 8]
    stages: [collect]             # what each point runs, with the stages upstream of it
                                  # (`dvc exp run`'s targets; optional, default: every stage)

spans six points, named `claims-beta50-z2`, `claims-beta50-z8`, ... in the grid's order (the
last axis moves fastest). `load` validates every point's params as params.yaml would be (the
same rules, `wardrobe.params.validate`) before anything runs: an unknown key, a bad value or a
malformed file is one line naming it.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wardrobe.errors import WardrobeError
from wardrobe.params import Params, parse, syntax_error, validate

NAME = re.compile(r"[a-z0-9][a-z0-9-]*")  # a sweep's name: part of every experiment's name
LABEL = re.compile(r"[a-z0-9_]+")  # an axis's name in a point's name


class SweepError(WardrobeError):
    """A sweep file that cannot be run, with the line that says why."""


@dataclass(frozen=True)
class Axis:
    label: str  # in the points' names
    keys: tuple[str, ...]  # dotted params keys set to the same value
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    name: str  # the DVC experiment's name
    values: Mapping[str, Any]  # dotted key -> value: the grid's and `set`'s

    def set_args(self) -> list[str]:
        """`dvc exp run`'s -S arguments for this point."""
        return [a for key, value in self.values.items() for a in ("-S", f"{key}={text(value)}")]


@dataclass(frozen=True)
class Sweep:
    path: Path
    name: str
    fixed: Mapping[str, Any]
    axes: tuple[Axis, ...]
    points: tuple[Point, ...]
    stages: tuple[str, ...] = ()  # `dvc exp run`'s targets; none: the whole pipeline

    @property
    def keys(self) -> list[str]:
        """Every params key the sweep sets, the grid's first."""
        grid = [k for axis in self.axes for k in axis.keys]
        return grid + [k for k in self.fixed if k not in grid]


def text(value: Any) -> str:
    """A value as `-S key=value` writes it: YAML that reads back as the same value."""
    plain = isinstance(value, str) and parse(value) == value
    return value if plain else json.dumps(value)


def name_part(value: Any) -> str:
    """A value in a point's name: 500, 0.001, 1e-05, 32x64, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(map(name_part, value))
    return re.sub(r"[^A-Za-z0-9._]+", "_", str(value))


def with_values(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml's mapping with each dotted key set (a missing section is created, so the
    rules name an unknown one)."""
    out = copy.deepcopy(dict(raw))
    for key, value in values.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SweepError(f"{key}: {part} is not a section of params.yaml")
            node = child
        node[last] = value
    return out


def _axes(grid: Any, where: str) -> tuple[Axis, ...]:
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{where}: grid must be a mapping of params keys to lists of values")
    axes = []
    for label, spec in grid.items():
        if isinstance(spec, dict):
            if set(spec) != {"keys", "values"}:
                raise SweepError(
                    f"{where}: grid.{label} must be a list of values, or keys: and values: "
                    f"(keys that move together), got {sorted(spec)}"
                )
            keys, values = spec["keys"], spec["values"]
            if not (isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys)):
                raise SweepError(f"{where}: grid.{label}.keys must be a list of params keys")
            if not LABEL.fullmatch(str(label)):
                raise SweepError(
                    f"{where}: grid.{label}: an axis's name must be lower-case letters, digits "
                    "or _"
                )
        else:
            keys, values = [str(label)], spec
        entry = f"grid.{label}"
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: {entry} must be a non-empty list of values")
        if len(set(map(name_part, values))) < len(values):
            raise SweepError(f"{where}: {entry} repeats a value: {values}")
        label = str(label) if isinstance(spec, dict) else str(label).rsplit(".", 1)[-1]
        axes.append(Axis(label, tuple(keys), tuple(values)))
    labels = [a.label for a in axes]
    if len(set(labels)) < len(labels):
        raise SweepError(f"{where}: two axes of the grid have one name: {labels}")
    keys = [k for a in axes for k in a.keys]
    if len(set(keys)) < len(keys):
        raise SweepError(f"{where}: a params key is on two axes of the grid: {keys}")
    return tuple(axes)


def pipeline_stages(dvc_yaml: Path) -> list[str]:
    """The stage names of a dvc.yaml, as `dvc exp run` takes them (`foreach` expanded:
    `evaluate@vae`)."""
    names = []
    for name, stage in (parse(dvc_yaml.read_text()).get("stages") or {}).items():
        items = stage.get("foreach") if isinstance(stage, dict) else None
        names += [f"{name}@{item}" for item in items] if items else [name]
    return names


def _stages(stages: Any, dvc_yaml: Path, where: str) -> tuple[str, ...]:
    if stages is None:
        return ()
    if not (isinstance(stages, list) and stages and all(isinstance(s, str) for s in stages)):
        raise SweepError(f"{where}: stages must be a non-empty list of dvc.yaml's stage names")
    try:
        known = pipeline_stages(dvc_yaml)
    except OSError as exc:
        raise SweepError(f"{where}: stages: {dvc_yaml}: {exc.strerror}") from None
    unknown = [s for s in stages if s not in known]
    if unknown:
        raise SweepError(
            f"{where}: stages: {unknown[0]} is not a stage of {dvc_yaml.name} (its stages: "
            f"{', '.join(known)})"
        )
    if len(set(stages)) < len(stages):
        raise SweepError(f"{where}: stages repeats a stage: {stages}")
    return tuple(stages)


def load(
    path: str | Path,
    params_path: str | Path = "params.yaml",
    grid: Mapping[str, Any] | None = None,
) -> Sweep:
    """The sweep in `path` (its grid replaced by `grid` when given), every point's params
    validated against `params_path`; SweepError (or ParamsError, naming the point) with one
    line otherwise."""
    path = Path(path)
    where = str(path)
    try:
        raw = parse(path.read_text())
    except FileNotFoundError:
        raise SweepError(
            f"{where}: not found; name a sweep file (e.g. sweeps/claims.yaml)"
        ) from None
    except IsADirectoryError:
        raise SweepError(
            f"{where}: a directory; name a sweep file in it (e.g. sweeps/claims.yaml)"
        ) from None
    except UnicodeDecodeError as exc:
        raise SweepError(
            f"{where}: not UTF-8 text (byte {exc.start}); a sweep file is YAML"
        ) from None
    except OSError as exc:
        raise SweepError(f"{where}: unreadable ({exc.strerror}); name a readable file") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{where}: {syntax_error(exc)}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: must be a mapping with name: and grid:")
    unknown = sorted(set(raw) - {"name", "set", "grid", "stages"})
    if unknown:
        raise SweepError(
            f"{where}: {unknown[0]} is not a known key (known: grid, name, set, stages)"
        )
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SweepError(
            f"{where}: name must be lower-case letters, digits and -, starting with a letter "
            f"or digit, got {name!r}"
        )
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        raise SweepError(f"{where}: set must be a mapping of params keys to values")
    axes = _axes(dict(grid) if grid is not None else raw.get("grid"), where)
    clash = sorted(set(fixed) & {k for a in axes for k in a.keys})
    if clash:
        raise SweepError(f"{where}: {clash[0]} is in set: and in the grid; keep one")
    stages = _stages(raw.get("stages"), Path(params_path).parent / "dvc.yaml", where)
    base = parse(Path(params_path).read_text())
    points = []
    for combo in itertools.product(*(a.values for a in axes)):
        chosen = list(zip(axes, combo, strict=True))
        point = "-".join([name, *(f"{a.label}{name_part(v)}" for a, v in chosen)])
        values = {str(k): v for k, v in fixed.items()}
        for axis, value in chosen:
            values.update((k, value) for k in axis.keys)
        try:
            validate(with_values(base, values), f"{where} (point {point})")
        except SweepError as exc:
            raise SweepError(f"{where} (point {point}): {exc}") from None
        points.append(Point(point, values))
    return Sweep(path, name, fixed, axes, tuple(points), stages)


def point_params(sweep: Sweep, point: Point, params_path: str | Path) -> Params:
    """The params a point runs with."""
    base = parse(Path(params_path).read_text())
    return validate(with_values(base, point.values), f"{sweep.path} (point {point.name})")
