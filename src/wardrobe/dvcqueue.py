"""`make queue` (python -m wardrobe.dvcqueue): `dvc queue status`, and one line when an
experiment was left "Running" by a queue worker that died.

DVC's queue workers (celery) keep no lease on their tasks: a worker killed with SIGKILL (or
the machine lost) leaves its experiment "Running" for good, with no worker. Its stages may
finish in their temporary workspace (`.dvc/tmp/exps/tmp*`) and log to MLflow, but nothing
collects the result, so it never reaches `dvc exp list`, and `dvc queue remove` refuses it
while it shows Running. The way back, which this prints: `dvc queue kill NAME` (which marks it
"Success"), `dvc queue remove NAME`, queue it again, `dvc queue start`. DVC's run cache
restores the stages the lost run finished, so they do not run again.
"""

from __future__ import annotations

import re
import subprocess
import sys

from wardrobe.errors import WardrobeError
from wardrobe.processes import environment_tool


def orphans(status: str) -> list[str]:
    """The names of the experiments `dvc queue status` shows Running while no worker is
    active."""
    workers = re.search(r"Worker status: (\d+) active", status)
    if workers is None or int(workers.group(1)) > 0:
        return []
    rows = (line.split() for line in status.splitlines())
    return [row[1] for row in rows if len(row) >= 4 and row[-1] == "Running"]


def check() -> str:
    """`dvc queue status`'s output, or a WardrobeError naming the orphaned experiments."""
    dvc = environment_tool("dvc")
    done = subprocess.run([dvc, "queue", "status"], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise WardrobeError(f"dvc queue status failed: {lines[-1] if lines else done.returncode}")
    lost = orphans(done.stdout)
    if lost:
        names = ", ".join(lost)
        raise WardrobeError(
            f"experiment {names} shows Running but no queue worker runs (a worker was killed): "
            f"its result will not arrive; run `dvc queue kill {' '.join(lost)}` (it then shows "
            f"Success, wrongly) and `dvc queue remove {' '.join(lost)}`, queue it again (`dvc "
            "exp run --queue -n NAME -S ...`) and `dvc queue start` (DVC's run cache restores "
            "the stages it finished); once no worker runs, `rm -rf .dvc/tmp/exps/tmp*` frees "
            "its workspace"
        )
    return done.stdout


def main() -> None:
    try:
        print(check(), end="")
    except WardrobeError as exc:
        print(f"queue: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
