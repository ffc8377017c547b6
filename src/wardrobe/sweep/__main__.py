"""`python -m wardrobe.sweep run SWEEP [--parallel N] [--address HEAD]` (make sweep) and
`python -m wardrobe.sweep points SWEEP` (the points' names and their -S arguments)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from wardrobe.errors import WardrobeError
from wardrobe.fsio import project_root

# A grid's axes multiply: past this many points, a typo in one (a list of 100 values where 10
# were meant) is likelier than intent, so the sweep asks for --allow-large.
MAX_POINTS = 200


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wardrobe.sweep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every point not yet on the git remote")
    run.add_argument("sweep", type=Path)
    run.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="trials at once (default: this machine's cores; a cluster's CPUs)",
    )
    run.add_argument(
        "--address",
        default=None,
        help="a Ray head (default: RAY_ADDRESS, else an embedded runtime)",
    )
    run.add_argument(
        "--allow-large",
        action="store_true",
        help=f"run a sweep of more than {MAX_POINTS} points (make sweep ALLOW_LARGE=1)",
    )
    points = commands.add_parser(
        "points", help="the sweep's points and their `dvc exp run` arguments (-S, the stages)"
    )
    points.add_argument("sweep", type=Path)
    args = parser.parse_args(argv)
    if getattr(args, "parallel", None) is not None and args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    root = project_root()
    from wardrobe.sweep import spec

    try:
        sweep = spec.load(args.sweep, root / "params.yaml")
        if args.command == "points":
            for point in sweep.points:
                print(point.name, shlex.join([*point.set_args(), *sweep.stages]))
            return
        if len(sweep.points) > MAX_POINTS and not args.allow_large:
            raise spec.SweepError(
                f"{args.sweep} spans {len(sweep.points)} points, more than {MAX_POINTS}: check "
                f"its grid (python -m wardrobe.sweep points {args.sweep}), or run it with "
                "--allow-large (make sweep ALLOW_LARGE=1)"
            )
        from wardrobe.sweep import engine

        outcomes = engine.run(root, sweep, args.parallel, args.address)
    except WardrobeError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum if hasattr(exc, "signum") else 1)  # stopped by a signal
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"sweep: error: {len(failed)} of {len(outcomes)} points failed: "
              f"{', '.join(o.point for o in failed)}", file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
