"""`make push` / `make pull` (python -m wardrobe.remote) with real DVC: a remote missing or
unknown, an S3 endpoint where nothing listens, and a local remote passed through to DVC. The
team stack's S3 store, its wrong keys and its stop mid-push are in test_stack.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, commit, dvc, repo_env


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with DVC and one tracked file, its code the checkout's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    assert dvc(repo, "init", "-q").returncode == 0
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 100)
    assert dvc(repo, "add", "-q", "blob.bin").returncode == 0
    commit(repo, "blob")
    return repo


def remote(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "wardrobe.remote", *args], cwd=repo,
        env=repo_env(ROOT, env), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def only_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_remote_and_an_unknown_remote_are_one_line(repo):
    assert only_line(remote(repo, "push")) == (
        "remote: error: no default DVC remote is configured; `make stack` configures the team "
        "stack's, or run `dvc remote add --default NAME URL`"
    )
    assert dvc(repo, "remote", "add", "-d", "shared", str(repo.parent / "store")).returncode == 0
    assert only_line(remote(repo, "pull", "-r", "nope")) == (
        "remote: error: there is no DVC remote named 'nope' (configured: shared); "
        "`dvc remote list` shows them"
    )


def test_an_s3_endpoint_where_nothing_listens_is_one_line(repo, closed_port_url):
    endpoint = closed_port_url.rstrip("/")
    assert dvc(repo, "remote", "add", "-d", "team", "s3://bucket/wardrobe").returncode == 0
    assert dvc(repo, "remote", "modify", "team", "endpointurl", endpoint).returncode == 0
    keys = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    line = only_line(remote(repo, "push", env=keys))
    assert line.startswith(
        f"remote: error: DVC remote 'team' (s3://bucket/wardrobe at {endpoint}) is unreachable "
        f'(Could not connect to the endpoint URL: "{endpoint}/bucket?list-type=2'
    ), line
    assert line.endswith(
        "start the store (`make stack` for the team stack's) or fix its endpointurl "
        "(`dvc remote modify --local team endpointurl URL`)"
    ), line


def test_a_local_remote_is_passed_to_dvc(repo, tmp_path):
    store = tmp_path / "store"
    assert dvc(repo, "remote", "add", "-d", "shared", str(store)).returncode == 0
    commit(repo, "remote")
    pushed = remote(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == "1 file pushed"
    assert any(p.is_file() for p in store.rglob("*"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    pulled = remote(clone, "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "blob.bin").read_bytes() == (repo / "blob.bin").read_bytes()
    # DVC's own failure (the remote and the cache lost the object) is one line too
    for path in [*store.rglob("*"), *(clone / ".dvc" / "cache").rglob("*")]:
        if path.is_file():
            path.unlink()
    (clone / "blob.bin").unlink()
    line = only_line(remote(clone, "pull"))
    assert line.startswith("remote: error: dvc pull failed: failed to pull data from the cloud")
    log = Path(line.rsplit("DVC's output: ", 1)[1].rstrip(")"))
    assert "ERROR" in log.read_text()
