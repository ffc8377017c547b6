"""What of the pipeline differs from the commit: the one check behind every command that
stands for a commit (make noise, make promote, make sweep)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from wardrobe.errors import WardrobeError

# What decides a run's results: its params, stages, code and pinned dependencies.
PIPELINE = ("params.yaml", "dvc.yaml", "dvc.lock", "src", "pipeline", "pyproject.toml",
            "requirements.lock")  # fmt: skip


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git ARGS` in `root`, its output captured, its exit status left to the caller."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def head(root: Path) -> str | None:
    """The commit checked out in `root`, or None outside a git repository with commits."""
    done = git(root, "rev-parse", "HEAD")
    return done.stdout.strip() if done.returncode == 0 else None


def changed(root: Path, paths: Sequence[str] = PIPELINE) -> list[str]:
    """The paths under `paths` that differ from HEAD: modified, staged, deleted or untracked
    (not ignored)."""
    done = git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    if done.returncode != 0:  # a path outside the repository, no repository: never "clean"
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        raise WardrobeError(f"git status in {root} failed: {lines[-1]}")
    return [line[3:] for line in done.stdout.splitlines()]
