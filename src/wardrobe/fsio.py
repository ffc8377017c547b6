"""Files and paths: atomic writes (a crash or an error leaves the previous output or none, never
half of one), file hashes, and the project's root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wardrobe import processes

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _owner() -> str:
    """This process, as temporary names beside an output record it: `<host>+<pid>`."""
    return f"{processes.host()}+{os.getpid()}"


def remove_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Clean what a killed process left beside `path`: its temporary files and directories
    (`.name.<host>+<pid>.*.tmp`) are removed; the previous output it had moved aside for a swap
    (`.name.<host>+<pid>.old`) is moved back when `path` is missing, else removed. Only names
    of this host whose process is gone are touched. Called before `path` is written again.
    Returns what was cleaned."""
    path = Path(path)
    pattern = re.compile(
        rf"\.{re.escape(path.name)}\.{re.escape(processes.host())}\+(\d+)\.(.+\.tmp|old)"
    )
    cleaned = []
    for sibling in path.parent.glob(f".{path.name}.*"):
        match = pattern.fullmatch(sibling.name)
        if match is None or processes.alive(int(match.group(1))):
            continue
        if match.group(2) == "old" and not path.exists():  # killed between the two renames
            os.replace(sibling, path)
            done = f"moved back to {path}"
        elif sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
            done = "removed"
        else:
            sibling.unlink(missing_ok=True)
            done = "removed"
        log.info("%s %s: left by a process that no longer runs", sibling, done)
        cleaned.append(sibling)
    return cleaned


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it takes `path`'s place.

    The old directory is moved aside before the new one is renamed in and removed after, so
    at every moment `path` is either the complete old tree or the complete new one (or, for
    an instant between the two renames, absent; a failure there moves the old one back).
    What a killed process left beside `path` is cleaned first (`remove_stale`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    )
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{_owner()}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_secret(path: Path) -> bool:
    """A random token in `path` (0600, in a 0700 directory made if missing), unless the file
    is there already; whether it was written."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return True


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    return _file_digest(path, hashlib.sha256())


def md5_file(path: str | os.PathLike[str]) -> str:
    """The MD5 DVC identifies a file by."""
    return _file_digest(path, hashlib.md5(usedforsecurity=False))


def _file_digest(path: str | os.PathLike[str], digest: Any) -> str:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The project's root: the directory holding dvc.yaml, outside any DVC temporary copy
    (`dvc exp run --temp` and `dvc queue` run stages under .dvc/tmp/exps/)."""
    path = Path(start or Path.cwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for candidate in (path, *path.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return path
