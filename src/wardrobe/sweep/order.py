"""Which points of a sweep wait for which: a point starts once every earlier point that first
computes one of its stages has finished, so that it restores that stage from the run cache
instead of computing it at the same time.

Two trials that compute the same stage at once both commit its outputs into the one DVC cache,
and one can fail: DVC finds the object the other is writing not yet in the cache and asks
before removing the file ("unable to remove ... without a confirmation"). And the second
computation is wasted work. A stage of a point is the same as another point's when the params
it reads, and those its upstream stages read, have the same values in both (the code and the
data are the sweep's commit's): on a grid of β x latent size, every point shares the data
stages with the first, and the AE with the first point of its latent size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from wardrobe.sweep.spec import Point


class Stage(NamedTuple):
    upstream: tuple[str, ...]  # the stages whose outputs it depends on, and theirs
    params: tuple[str, ...]  # the params entries it and its upstream stages read


def pipeline(root: Path) -> dict[str, Stage]:
    """Each stage of root's dvc.yaml as DVC resolves it (`foreach` expanded: `evaluate@vae`),
    with its upstream stages and the params entries (`ae`, `preprocess.limit_train`, `seed`)
    it and they read; the edges of DVC's graph run from a stage to those whose outputs it
    depends on."""
    import networkx as nx
    from dvc.dependency import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        own = {
            stage: [key for dep in stage.deps if isinstance(dep, ParamsDependency)
                    for key in dep.params]
            for stage in graph
        }  # fmt: skip
        found = {}
        for stage in graph:
            upstream = nx.descendants(graph, stage)
            entries = {e for s in {stage} | upstream for e in own[s]}
            found[stage.name] = Stage(tuple(sorted(s.name for s in upstream)),
                                      tuple(sorted(entries)))  # fmt: skip
        return found


def outside(stages: Mapping[str, Stage], targets: Sequence[str]) -> tuple[str, ...]:
    """The stages `dvc exp run TARGETS` does not reach: neither a target nor upstream of one
    (none when there are no targets: then every stage runs)."""
    if not targets:
        return ()
    reached = {s for t in targets for s in (t, *stages[t].upstream)}
    return tuple(s for s in stages if s not in reached)


def waits(points: Sequence[Point], stages: Mapping[str, Stage]) -> dict[str, set[str]]:
    """For each point, the earlier points it waits for: the first point with each of its
    stages (the same params for that stage and upstream), where that is another point."""
    first: dict[tuple[str, str], str] = {}
    found: dict[str, set[str]] = {}
    for point in points:
        found[point.name] = set()
        for stage, (_, entries) in stages.items():
            read = {k: v for k, v in point.values.items() if any(_reads(e, k) for e in entries)}
            owner = first.setdefault((stage, json.dumps(read, sort_keys=True)), point.name)
            if owner != point.name:
                found[point.name].add(owner)
    return found


def _reads(entry: str, key: str) -> bool:
    """Whether the params entry `entry` (a section or a key) covers the dotted key."""
    return key == entry or key.startswith(f"{entry}.")
