"""Peak memory of the fetch stage on a gzip bomb in the mirror directory.

The mirror holds the three real canonical files and, as train-labels-idx1-ubyte.gz, a bomb:
`--megabytes` of gzip that decompresses to about 1,000 times as much zeros. The fetch stage
(`pipeline/fetch.py` of `--code`, default this checkout) runs in a child process on it; the
child's peak resident memory comes from wait4's rusage. The stage must reject the file either
way; what this measures is what rejecting it costs.

    python bench/fetch_gzip_bomb.py                      # this checkout, a 9 MB bomb
    git worktree add /tmp/old <commit> && python bench/fetch_gzip_bomb.py --code /tmp/old
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path("/usr/share/datasets/fashion-mnist")
BOMB_NAME = "train-labels-idx1-ubyte.gz"


def make_bomb(path: Path, megabytes: int) -> int:
    """Write about `megabytes` MB of gzip members of zeros; return the decompressed size."""
    member = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # ~255 KB each
    count = max(1, (megabytes << 20) // len(member))
    with open(path, "wb") as fh:
        for _ in range(count):
            fh.write(member)
    return count * (256 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="a checkout of Wardrobe")
    parser.add_argument("--megabytes", type=int, default=9, help="size of the gzip bomb")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mirror = work / "mirror"
        mirror.mkdir()
        for source in MIRROR.glob("*.gz"):
            if source.name != BOMB_NAME:
                shutil.copy(source, mirror / source.name)
        inflated = make_bomb(mirror / BOMB_NAME, args.megabytes)
        params = yaml.safe_load((args.code / "params.yaml").read_text())
        params["data"].update(mirror=str(mirror), urls=[])
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

        env = {**os.environ, "PYTHONPATH": str(args.code / "src")}
        command = [sys.executable, str(args.code / "pipeline" / "fetch.py"), "--out", "raw"]
        start = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        stderr = child.stderr.read().decode(errors="replace").strip().splitlines()
    print(
        json.dumps(
            {
                "code": str(args.code),
                "bomb_bytes": (args.megabytes << 20),
                "decompresses_to_bytes": inflated,
                "exit_status": os.waitstatus_to_exitcode(status),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "seconds": round(seconds, 1),
                "last_line": stderr[-1] if stderr else "",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
